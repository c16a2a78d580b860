rule prepare_corpus:
    output:
        train=f"{DATA}/corpus/train.jsonl",
        validation=f"{DATA}/corpus/validation.jsonl",
        manifest=f"{DATA}/corpus/manifest.json",
    params:
        data=json.dumps(config["data"], sort_keys=True),
        seed=config["seed"],
        out=lambda wc, output: parent(output.manifest),
    log:
        "logs/data/prepare_corpus.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute corpus --data {params.data:q} --seed {params.seed} --out {params.out} > {log} 2>&1"


if config["tokenizer"].get("path"):

    rule train_tokenizer:
        """The given Hugging Face tokenizer (`tokenizer.path`, e.g. Llama-3's), checked and copied."""
        output:
            directory(f"{DATA}/tokenizer"),
        params:
            path=config["tokenizer"]["path"],
        log:
            "logs/data/train_tokenizer.log",
        conda:
            "../envs/study.yaml"
        shell:
            "python -m infinite_compute copy-tokenizer --path {params.path:q} --out {output} > {log} 2>&1"

else:

    rule train_tokenizer:
        input:
            rules.prepare_corpus.output.train,
        output:
            directory(f"{DATA}/tokenizer"),
        params:
            corpus=lambda wc, input: parent(input[0]),
            vocab_size=config["tokenizer"]["vocab_size"],
            chars=config["tokenizer"]["training_chars"],
        log:
            "logs/data/train_tokenizer.log",
        conda:
            "../envs/study.yaml"
        shell:
            "python -m infinite_compute tokenizer --corpus {params.corpus} --vocab-size {params.vocab_size} "
            "--training-chars {params.chars} --out {output} > {log} 2>&1"


rule tokenize_corpus:
    input:
        corpus=rules.prepare_corpus.output,
        tokenizer=rules.train_tokenizer.output,
    output:
        train=f"{DATA}/tokens/train.npz",
        validation=f"{DATA}/tokens/validation.npz",
    params:
        corpus=lambda wc, input: parent(input.corpus[0]),
        train_tokens=max(PLAN.token_budgets),
        validation_tokens=config["data"]["validation_tokens"],
    log:
        "logs/data/tokenize_corpus.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute tokenize --corpus {params.corpus} --tokenizer {input.tokenizer} "
        "--train-tokens {params.train_tokens} --validation-tokens {params.validation_tokens} "
        "--out-train {output.train} --out-validation {output.validation} > {log} 2>&1"


rule build_cache:
    """levanter's token cache of one budget (a prefix of the stream), shared by all its runs."""
    input:
        train=rules.tokenize_corpus.output.train,
        validation=rules.tokenize_corpus.output.validation,
        tokenizer=rules.train_tokenizer.output,
    output:
        directory(f"{DATA}/cache/d{{budget}}"),
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
        questions=f"{DATA}/benchmark.jsonl",
        tasks=directory(f"{DATA}/lm_eval_tasks"),
    params:
        corpus=lambda wc, input: parent(input[0]),
        benchmark=json.dumps({k: config["benchmark"][k] for k in BENCHMARK_ITEM_KEYS}, sort_keys=True),
        seed=config["seed"],
    log:
        "logs/data/benchmark_items.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute benchmark-items --corpus {params.corpus} --params {params.benchmark:q} "
        "--seed {params.seed} --out {output.questions} --tasks-dir {output.tasks} > {log} 2>&1"


rule benchmark_requests:
    """Every (context, continuation) pair lm-eval-harness asks of a model on `benchmark.tasks`:
    each evaluation job scores these, and the results job turns the scores into lm-eval's metrics."""
    input:
        questions=rules.benchmark_items.output.questions,
    output:
        f"{DATA}/benchmark_requests.json",
    params:
        settings=json.dumps(BENCHMARK_SETTINGS, sort_keys=True),
    log:
        "logs/data/benchmark_requests.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute benchmark-requests --items {input.questions} --settings {params.settings:q} "
        "--out {output} > {log} 2>&1"
