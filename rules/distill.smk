rule sample_teacher:
    """A synthetic corpus sampled from the teacher (the mixture of an ensemble's members, or one model)."""
    input:
        specs=lambda wc: [model_spec(r) for r in teacher_members(wc.name)],
        hfs=lambda wc: [model_hf(r) for r in teacher_members(wc.name)],
        tokenizer=rules.train_tokenizer.output,
    output:
        paths.SAMPLES,
    log:
        "logs/distill/sample_{name}.log",
    benchmark:
        "benchmarks/distill/sample_{name}.tsv"
    conda:
        "../envs/study.yaml"
    threads: config["resources"]["eval_threads"]
    params:
        sampling=lambda wc: json.dumps(PLAN.distillations[wc.name].sampling_params(), sort_keys=True),
        batch_size=config["evaluation"]["batch_size"],
    shell:
        "python -m infinite_compute --threads {threads} sample --specs {input.specs} --hfs {input.hfs} --tokenizer {input.tokenizer} "
        "--params {params.sampling:q} --batch-size {params.batch_size} --out {output} > {log} 2>&1"


rule distill_cache:
    """The student's training mix: the real budget plus synthetic tokens at the configured share."""
    input:
        train=rules.tokenize_corpus.output.train,
        validation=rules.tokenize_corpus.output.validation,
        # one corpus per teacher and sampling: students that differ only in their share train on it
        samples=lambda wc: fill(paths.SAMPLES, name=PLAN.corpus_of(wc.name)),
        tokenizer=rules.train_tokenizer.output,
    output:
        directory(paths.DISTILL_CACHE),
    log:
        "logs/distill/cache_{name}.log",
    conda:
        "../envs/study.yaml"
    params:
        budget=lambda wc: PLAN.distillations[wc.name].token_budget,
        share=lambda wc: PLAN.distillations[wc.name].synthetic_share,
    shell:
        "python -m infinite_compute distill-cache --train {input.train} --validation {input.validation} "
        "--samples {input.samples} --tokenizer {input.tokenizer} --budget {params.budget} "
        "--share {params.share} --out {output} > {log} 2>&1"
