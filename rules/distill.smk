rule sample_teacher:
    """A synthetic corpus sampled from the teacher (the mixture of an ensemble's members, or one model)."""
    input:
        teachers=lambda wc: [f for r in teacher_members(wc.name) for f in model_files(r)],
        tokenizer=rules.train_tokenizer.output,
    output:
        "results/samples/{name}.npz",
    params:
        teachers=lambda wc, input: [parent(f) for f in input.teachers if f.endswith("spec.json")],
        sampling=lambda wc: json.dumps(PLAN.distillations[wc.name].sampling_params(), sort_keys=True),
        batch_size=config["evaluation"]["batch_size"],
    threads: config["resources"]["eval_threads"]
    log:
        "logs/distill/sample_{name}.log",
    benchmark:
        "benchmarks/distill/sample_{name}.tsv"
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute --threads {threads} sample --teachers {params.teachers} --tokenizer {input.tokenizer} --params {params.sampling:q} "
        "--batch-size {params.batch_size} --out {output} > {log} 2>&1"


rule distill_cache:
    """The student's training mix: the real budget plus synthetic tokens at the configured share."""
    input:
        train=rules.tokenize_corpus.output.train,
        validation=rules.tokenize_corpus.output.validation,
        samples="results/samples/{name}.npz",
        tokenizer=rules.train_tokenizer.output,
    output:
        directory(f"{DATA}/cache/distill-{{name}}"),
    params:
        budget=lambda wc: PLAN.distillations[wc.name].token_budget,
        share=lambda wc: PLAN.distillations[wc.name].synthetic_share,
    log:
        "logs/distill/cache_{name}.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute distill-cache --train {input.train} --validation {input.validation} "
        "--samples {input.samples} --tokenizer {input.tokenizer} --budget {params.budget} "
        "--share {params.share} --out {output} > {log} 2>&1"
