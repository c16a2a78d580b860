# Continued pre-training on the math domain (infinite_compute.data.math_data, science.cpt): from the
# selected run of a search cell or a Hugging Face model directory (cpt.base.hf), the default recipe at
# several math budgets (its L(D)), a smaller batch, more epochs at each weight decay of a grid (the best
# selected: a checkpoint), an ensemble.


rule math_corpus:
    """Seeded arithmetic and word problems; held-out questions never appear in training."""
    output:
        train=paths.MATH_TRAIN,
        validation=paths.MATH_VALIDATION,
        held_out=paths.MATH_HELD_OUT,
        info=paths.MATH_INFO,
    log:
        "logs/cpt/math_corpus.log",
    conda:
        "../envs/study.yaml"
    params:
        problems=lambda wc: json.dumps(PLAN.cpt.problems, sort_keys=True),
        out=lambda wc, output: os.path.dirname(output.info),
    shell:
        "python -m infinite_compute math-corpus --params {params.problems:q} --out {params.out} > {log} 2>&1"


rule cpt_requests:
    """cpt.tasks' requests (every (context, continuation) pair lm-eval asks of a CPT model), and the
    items of the local heldout_math_choice: each CPT evaluation scores them, cpt_results turns the
    scores of each model and of the ensemble into lm-eval's metrics."""
    input:
        held_out=rules.math_corpus.output.held_out,
    output:
        choice_items=paths.MATH_CHOICE_ITEMS,
        requests=paths.CPT_REQUESTS,
    log:
        "logs/cpt/requests.log",
    conda:
        "../envs/study.yaml"
    params:
        settings=json.dumps(CPT_BENCHMARK_SETTINGS, sort_keys=True),
    shell:
        "python -m infinite_compute cpt-requests --held-out {input.held_out} --settings {params.settings:q} "
        "--out-items {output.choice_items} --out-requests {output.requests} > {log} 2>&1"


rule math_tokens:
    """The math corpus in the CPT tokenizer (the study's, or a Hugging Face base's own): training stream
    (budgets are its prefixes) and held-out text."""
    input:
        train=rules.math_corpus.output.train,
        validation=rules.math_corpus.output.validation,
        tokenizer=cpt_tokenizer_files,
    output:
        train=directory(paths.MATH_TOKENS_TRAIN),
        validation=directory(paths.MATH_TOKENS_VALIDATION),
    log:
        "logs/cpt/math_tokens.log",
    conda:
        "../envs/study.yaml"
    threads: config["resources"]["data_workers"]
    params:
        train_tokens=lambda wc: max(PLAN.cpt.scaling),
        tokenizer=cpt_tokenizer,
    shell:
        "python -m infinite_compute tokenize --train {input.train} --validation {input.validation} "
        "--tokenizer {params.tokenizer:q} --train-tokens {params.train_tokens} --validation-tokens 0 "
        "--out-train {output.train} --out-validation {output.validation} --workers {threads} > {log} 2>&1"


rule math_cache:
    """levanter's cache of one math budget (a prefix of the math stream)."""
    input:
        train=rules.math_tokens.output.train,
        validation=rules.math_tokens.output.validation,
        tokenizer=cpt_tokenizer_files,
    output:
        directory(paths.MATH_CACHE),
    log:
        "logs/cpt/math_cache_d{budget}.log",
    conda:
        "../envs/study.yaml"
    params:
        tokenizer=cpt_tokenizer,
    shell:
        "python -m infinite_compute cache --train {input.train} --validation {input.validation} "
        "--tokenizer {params.tokenizer:q} --budget {wildcards.budget} --out {output} > {log} 2>&1"


rule train_cpt:
    """A CPT run: levanter continues training the base (the base cell's selected model or a Hugging
    Face model) on a math budget."""
    input:
        cache=lambda wc: cache_dir(wc.run),
        tokenizer=cpt_tokenizer_files,
        base=cpt_base_files,
    output:
        spec=paths.CPT_MODEL_SPEC,
        hf=directory(paths.CPT_MODEL_HF),
        metrics=paths.CPT_MODEL_METRICS,
    log:
        "logs/cpt/train/{run}.log",
    benchmark:
        "benchmarks/cpt/train/{run}.tsv"
    conda:
        "../envs/study.yaml"
    threads: config["resources"]["train_threads"]
    resources:
        mem_mb=config["resources"]["train_mem_mb"],
    params:
        spec=run_spec,
        out=lambda wc: fill(paths.CPT_MODEL, run=wc.run),
        checkpoints=paths.CHECKPOINTS,
        settings=TRAIN_SETTINGS,
        tokenizer=cpt_tokenizer,
        base=cpt_base,
    shell:
        "python -m infinite_compute --threads {threads} train --spec {params.spec:q} --cache {input.cache} --tokenizer {params.tokenizer:q} "
        "--out {params.out} --checkpoints {params.checkpoints} --settings {params.settings:q} --init-from {params.base:q} > {log} 2>&1"


rule cpt_evaluate:
    """A CPT run's held-out math loss (per-token log-probs saved) and greedy answer accuracy."""
    input:
        spec=lambda wc: fill(paths.CPT_MODEL_SPEC, run=wc.run),
        hf=lambda wc: fill(paths.CPT_MODEL_HF, run=wc.run),
        validation=rules.math_tokens.output.validation,
        held_out=rules.math_corpus.output.held_out,
        requests=rules.cpt_requests.output.requests,
        tokenizer=cpt_tokenizer_files,
    output:
        eval=paths.CPT_EVAL,
        logprobs=paths.CPT_LOGPROBS,
    log:
        "logs/cpt/evaluate/{run}.log",
    benchmark:
        "benchmarks/cpt/evaluate/{run}.tsv"
    conda:
        "../envs/study.yaml"
    threads: config["resources"]["eval_threads"]
    params:
        answer_tokens=lambda wc: PLAN.cpt.answer_tokens,
        batch_size=config["evaluation"]["batch_size"],
        tokenizer=cpt_tokenizer,
    shell:
        "python -m infinite_compute --threads {threads} cpt-evaluate --spec {input.spec} --hf {input.hf} --validation {input.validation} "
        "--held-out {input.held_out} --requests {input.requests} --tokenizer {params.tokenizer:q} "
        "--answer-tokens {params.answer_tokens} --batch-size {params.batch_size} --out-eval {output.eval} --out-logprobs {output.logprobs} > {log} 2>&1"


checkpoint cpt_select:
    """The regularized CPT recipe's weight decay: the grid's lowest held-out math loss."""
    input:
        evals=lambda wc: [fill(paths.CPT_EVAL, run=r) for r in PLAN.cpt.regularized],
    output:
        paths.CPT_SELECTED,
    log:
        "logs/cpt/select.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute cpt-select --evals {input.evals} --out {output} > {log} 2>&1"


rule cpt_ensemble:
    """The selected regularized recipe's ensemble at K = 1..members: loss and answers of the mixture."""
    input:
        specs=lambda wc: [fill(paths.CPT_MODEL_SPEC, run=r) for r in cpt_members()],
        hfs=lambda wc: [fill(paths.CPT_MODEL_HF, run=r) for r in cpt_members()],
        logprobs=lambda wc: [fill(paths.CPT_LOGPROBS, run=r) for r in cpt_members()],
        held_out=rules.math_corpus.output.held_out,
        tokenizer=cpt_tokenizer_files,
    output:
        paths.CPT_ENSEMBLE,
    log:
        "logs/cpt/ensemble.log",
    conda:
        "../envs/study.yaml"
    threads: config["resources"]["eval_threads"]
    params:
        answer_tokens=lambda wc: PLAN.cpt.answer_tokens,
        batch_size=config["evaluation"]["batch_size"],
        tokenizer=cpt_tokenizer,
    shell:
        "python -m infinite_compute --threads {threads} cpt-ensemble --specs {input.specs} --hfs {input.hfs} "
        "--logprobs {input.logprobs} --held-out {input.held_out} --tokenizer {params.tokenizer:q} "
        "--answer-tokens {params.answer_tokens} --batch-size {params.batch_size} --out {output} > {log} 2>&1"


rule cpt_results:
    """The CPT table (every recipe's loss, accuracy and data-efficiency multiplier against the
    default recipe's math L(D)) and that law's fit."""
    input:
        plan=paths.PLAN,  # rules/results.smk's write_plan (included after this file)
        specs=lambda wc: [fill(paths.CPT_MODEL_SPEC, run=r) for r in PLAN.cpt.runs],
        evals=lambda wc: [fill(paths.CPT_EVAL, run=r) for r in PLAN.cpt.runs],
        # the ensemble's members are seeds of one recipe: the CPT stage's seed noise
        member_evals=lambda wc: [fill(paths.CPT_EVAL, run=r) for r in cpt_members()],
        logprobs=lambda wc: [fill(paths.CPT_LOGPROBS, run=r) for r in sorted({*PLAN.cpt.runs, *cpt_members()})],
        selected=paths.CPT_SELECTED,
        ensemble=rules.cpt_ensemble.output,
        requests=rules.cpt_requests.output.requests,
        choice_items=rules.cpt_requests.output.choice_items,
    output:
        table=fill(paths.TABLE, kind="cpt"),
        fits=fill(paths.TABLE, kind="cpt_fits"),
    log:
        "logs/cpt/results.log",
    conda:
        "../envs/study.yaml"
    params:
        settings=json.dumps(
            {
                "bootstrap": config["fits"]["bootstrap"],
                "ci_level": config["fits"]["ci_level"],
                **CPT_BENCHMARK_SETTINGS,
            },
            sort_keys=True,
        ),
    shell:
        "python -m infinite_compute cpt-results --plan {input.plan} --specs {input.specs} --evals {input.evals} "
        "--member-evals {input.member_evals} "
        "--logprobs {input.logprobs} --selected {input.selected} --ensemble {input.ensemble} "
        "--requests {input.requests} --items {input.choice_items} --settings {params.settings:q} "
        "--out-table {output.table} --out-fits {output.fits} > {log} 2>&1"
