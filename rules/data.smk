rule prepare_corpus:
    output:
        train=paths.CORPUS_TRAIN,
        validation=paths.CORPUS_VALIDATION,
        manifest=paths.CORPUS_MANIFEST,
    log:
        "logs/data/prepare_corpus.log",
    conda:
        "../envs/study.yaml"
    threads: config["resources"]["data_workers"]
    params:
        data=json.dumps(config["data"], sort_keys=True),
        seed=config["seed"],
        out=lambda wc, output: os.path.dirname(output.manifest),
    shell:
        "python -m infinite_compute corpus --data {params.data:q} --seed {params.seed} --out {params.out} "
        "--workers {threads} > {log} 2>&1"


if config["tokenizer"].get("path"):

    rule train_tokenizer:
        """The given Hugging Face tokenizer (`tokenizer.path`, e.g. Llama-3's), checked and copied."""
        output:
            directory(paths.TOKENIZER),
        log:
            "logs/data/train_tokenizer.log",
        conda:
            "../envs/study.yaml"
        params:
            path=config["tokenizer"]["path"],
        shell:
            "python -m infinite_compute copy-tokenizer --path {params.path:q} --out {output} > {log} 2>&1"

elif config["data"]["source"] == "synthetic":

    rule train_tokenizer:
        """One token per symbol of the synthetic source (its loss is then in nats per symbol)."""
        input:
            rules.prepare_corpus.output.manifest,
        output:
            directory(paths.TOKENIZER),
        log:
            "logs/data/train_tokenizer.log",
        conda:
            "../envs/study.yaml"
        shell:
            "python -m infinite_compute word-tokenizer --manifest {input} --out {output} > {log} 2>&1"

else:

    rule train_tokenizer:
        input:
            rules.prepare_corpus.output.train,
        output:
            directory(paths.TOKENIZER),
        log:
            "logs/data/train_tokenizer.log",
        conda:
            "../envs/study.yaml"
        params:
            vocab_size=config["tokenizer"]["vocab_size"],
            chars=config["tokenizer"]["training_chars"],
        shell:
            "python -m infinite_compute tokenizer --train {input} --vocab-size {params.vocab_size} "
            "--training-chars {params.chars} --out {output} > {log} 2>&1"


rule tokenize_corpus:
    input:
        train=rules.prepare_corpus.output.train,
        validation=rules.prepare_corpus.output.validation,
        tokenizer=rules.train_tokenizer.output,
    output:
        train=directory(paths.TOKENS_TRAIN),
        validation=directory(paths.TOKENS_VALIDATION),
    log:
        "logs/data/tokenize_corpus.log",
    conda:
        "../envs/study.yaml"
    threads: config["resources"]["data_workers"]
    params:
        train_tokens=max(PLAN.token_budgets),
        validation_tokens=config["data"]["validation_tokens"],
    shell:
        "python -m infinite_compute tokenize --train {input.train} --validation {input.validation} "
        "--tokenizer {input.tokenizer} --train-tokens {params.train_tokens} "
        "--validation-tokens {params.validation_tokens} "
        "--out-train {output.train} --out-validation {output.validation} --workers {threads} > {log} 2>&1"


rule build_cache:
    """levanter's token cache of one budget (a prefix of the stream), shared by all its runs."""
    input:
        train=rules.tokenize_corpus.output.train,
        validation=rules.tokenize_corpus.output.validation,
        tokenizer=rules.train_tokenizer.output,
    output:
        directory(paths.BUDGET_CACHE),
    log:
        "logs/data/build_cache_d{budget}.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute cache --train {input.train} --validation {input.validation} "
        "--tokenizer {input.tokenizer} --budget {wildcards.budget} --out {output} > {log} 2>&1"


rule benchmark_items:
    """The default study's multiple-choice items from held-out text, and their lm-eval task YAML."""
    input:
        rules.prepare_corpus.output.validation,
    output:
        questions=paths.BENCHMARK_ITEMS,
        tasks=directory(paths.LM_EVAL_TASKS),
    log:
        "logs/data/benchmark_items.log",
    conda:
        "../envs/study.yaml"
    params:
        benchmark=json.dumps({k: config["benchmark"][k] for k in BENCHMARK_ITEM_KEYS}, sort_keys=True),
        seed=config["seed"],
        # held out by source: its pieces join back into whole files, whatever max_document_chars cuts
        whole="--whole" if config["data"]["held_out_by"] == "source" else "",
    shell:
        "python -m infinite_compute benchmark-items --validation {input} --params {params.benchmark:q} "
        "--seed {params.seed} --out {output.questions} --tasks-dir {output.tasks} {params.whole} > {log} 2>&1"


rule benchmark_requests:
    """Every (context, continuation) pair lm-eval-harness asks of a model on `benchmark.tasks`:
    each evaluation job scores these, and the results job turns the scores into lm-eval's metrics."""
    input:
        questions=rules.benchmark_items.output.questions,
    output:
        paths.BENCHMARK_REQUESTS,
    log:
        "logs/data/benchmark_requests.log",
    conda:
        "../envs/study.yaml"
    params:
        settings=json.dumps(BENCHMARK_SETTINGS, sort_keys=True),
    shell:
        "python -m infinite_compute benchmark-requests --items {input.questions} --settings {params.settings:q} "
        "--out {output} > {log} 2>&1"
