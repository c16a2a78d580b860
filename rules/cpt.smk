# Continued pre-training on the math domain (infinite_compute.cpt, math_data): from the selected
# run of a search cell, the default recipe at several math budgets (its L(D)), a smaller batch,
# more epochs at each weight decay of a grid (the best selected: a checkpoint), and an ensemble.
MATH = f"{DATA}/math"


rule math_corpus:
    """Seeded arithmetic and word problems; held-out questions never appear in training."""
    output:
        train=f"{MATH}/corpus/train.jsonl",
        validation=f"{MATH}/corpus/validation.jsonl",
        held_out=f"{MATH}/corpus/held_out.jsonl",
        info=f"{MATH}/corpus/info.json",
    params:
        problems=lambda wc: json.dumps(PLAN.cpt.problems, sort_keys=True),
        out=lambda wc, output: parent(output.info),
    log:
        "logs/cpt/math_corpus.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute math-corpus --params {params.problems:q} --out {params.out} > {log} 2>&1"


rule math_tokens:
    """The math corpus in the study's tokenizer: training stream (budgets are its prefixes) and held-out text."""
    input:
        corpus=rules.math_corpus.output,
        tokenizer=rules.train_tokenizer.output,
    output:
        train=f"{MATH}/tokens/train.npz",
        validation=f"{MATH}/tokens/validation.npz",
    params:
        corpus=lambda wc, input: parent(input.corpus[0]),
        train_tokens=lambda wc: max(PLAN.cpt.scaling),
    log:
        "logs/cpt/math_tokens.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute tokenize --corpus {params.corpus} --tokenizer {input.tokenizer} "
        "--train-tokens {params.train_tokens} --validation-tokens 0 "
        "--out-train {output.train} --out-validation {output.validation} > {log} 2>&1"


rule math_cache:
    """levanter's cache of one math budget (a prefix of the math stream)."""
    input:
        train=rules.math_tokens.output.train,
        validation=rules.math_tokens.output.validation,
        tokenizer=rules.train_tokenizer.output,
    output:
        directory(f"{DATA}/cache/math-d{{budget}}"),
    log:
        "logs/cpt/math_cache_d{budget}.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute cache --train {input.train} --validation {input.validation} "
        "--tokenizer {input.tokenizer} --budget {wildcards.budget} --out {output} > {log} 2>&1"


rule train_cpt:
    """A CPT run: levanter continues training the base cell's selected model on a math budget."""
    input:
        cache=lambda wc: cache_dir(wc.run),
        tokenizer=rules.train_tokenizer.output,
        base=lambda wc: model_files(selected_run(PLAN.spec(wc.run).init_from)["run_id"]),
    output:
        spec="results/cpt/models/{run}/spec.json",
        hf=directory("results/cpt/models/{run}/hf"),
        metrics="results/cpt/models/{run}/metrics.json",
    params:
        spec=run_spec,
        out=lambda wc, output: parent(output.spec),
        base=lambda wc, input: f"{parent(input.base[0])}/hf",
        checkpoints=CHECKPOINTS,
        settings=rules.train_model.params.settings,
    threads: config["resources"]["train_threads"]
    resources:
        mem_mb=config["resources"]["train_mem_mb"],
    log:
        "logs/cpt/train/{run}.log",
    benchmark:
        "benchmarks/cpt/train/{run}.tsv"
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute --threads {threads} train --spec {params.spec:q} --cache {input.cache} --tokenizer {input.tokenizer} "
        "--out {params.out} --checkpoints {params.checkpoints} --settings {params.settings:q} --init-from {params.base} > {log} 2>&1"


rule cpt_evaluate:
    """A CPT run's held-out math loss (per-token log-probs saved) and greedy answer accuracy."""
    input:
        model=lambda wc: cpt_model_files(wc.run),
        validation=rules.math_tokens.output.validation,
        held_out=rules.math_corpus.output.held_out,
        tokenizer=rules.train_tokenizer.output,
    output:
        eval="results/cpt/evals/{run}/eval.json",
        logprobs="results/cpt/evals/{run}/logprobs.npz",
    params:
        model=lambda wc, input: parent(input.model[0]),
        out=lambda wc, output: parent(output.eval),
        answer_tokens=lambda wc: PLAN.cpt.answer_tokens,
        batch_size=config["evaluation"]["batch_size"],
    threads: config["resources"]["eval_threads"]
    log:
        "logs/cpt/evaluate/{run}.log",
    benchmark:
        "benchmarks/cpt/evaluate/{run}.tsv"
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute --threads {threads} cpt-evaluate --model {params.model} --validation {input.validation} "
        "--held-out {input.held_out} --tokenizer {input.tokenizer} --answer-tokens {params.answer_tokens} "
        "--batch-size {params.batch_size} --out {params.out} > {log} 2>&1"


checkpoint cpt_select:
    """The regularized CPT recipe's weight decay: the grid's lowest held-out math loss."""
    input:
        evals=lambda wc: [cpt_eval(r) for r in PLAN.cpt.regularized],
    output:
        "results/cpt/selected.json",
    log:
        "logs/cpt/select.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute cpt-select --evals {input.evals} --out {output} > {log} 2>&1"


rule cpt_ensemble:
    """The selected regularized recipe's ensemble at K = 1..members: loss and answers of the mixture."""
    input:
        models=lambda wc: [f for r in cpt_members() for f in cpt_model_files(r)],
        evals=lambda wc: [cpt_eval(r) for r in cpt_members()],
        held_out=rules.math_corpus.output.held_out,
        tokenizer=rules.train_tokenizer.output,
    output:
        "results/cpt/ensemble.json",
    params:
        models=lambda wc, input: [parent(f) for f in input.models if f.endswith("spec.json")],
        evals=lambda wc, input: [parent(f) for f in input.evals],
        answer_tokens=lambda wc: PLAN.cpt.answer_tokens,
        batch_size=config["evaluation"]["batch_size"],
    threads: config["resources"]["eval_threads"]
    log:
        "logs/cpt/ensemble.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute --threads {threads} cpt-ensemble --models {params.models} --evals {params.evals} "
        "--held-out {input.held_out} --tokenizer {input.tokenizer} --answer-tokens {params.answer_tokens} "
        "--batch-size {params.batch_size} --out {output} > {log} 2>&1"


rule cpt_results:
    """The CPT table (every recipe's loss, accuracy and data-efficiency multiplier against the
    default recipe's math L(D)) and that law's fit."""
    input:
        plan="results/plan.json",
        evals=lambda wc: [cpt_eval(r) for r in PLAN.cpt.runs],
        selected="results/cpt/selected.json",
        ensemble=rules.cpt_ensemble.output,
    output:
        table="results/cpt.parquet",
        fits="results/cpt_fits.parquet",
    params:
        root=lambda wc, input: parent(input.plan),
        settings=json.dumps(
            {"bootstrap": config["fits"]["bootstrap"], "ci_level": config["fits"]["ci_level"], "seed": config["seed"]}
        ),
    log:
        "logs/cpt/results.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute cpt-results --plan {input.plan} --root {params.root} --selected {input.selected} "
        "--ensemble {input.ensemble} --settings {params.settings:q} --out-table {output.table} "
        "--out-fits {output.fits} > {log} 2>&1"
