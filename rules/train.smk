# The settings every training job gets beside its spec (CPT runs too, rules/cpt.smk).
TRAIN_SETTINGS = json.dumps(
    {
        "evals_per_run": config["training"]["evals_per_run"],
        "checkpoint_minutes": config["training"]["checkpoint_minutes"],
        "engine": config["training"]["engine"],
        "sharding": config["training"]["sharding"],
        "wandb": {
            "enabled": config["logging"]["wandb"],
            "project": config["logging"]["wandb_project"],
            "mode": config["logging"]["wandb_mode"],
            "entity": config["logging"]["wandb_entity"],
            "tags": config["logging"]["wandb_tags"],
            "dir": paths.WANDB,
        },
        # levanter's TrainerConfig settings for accelerators (absent by default)
        **({"trainer": config["training"]["levanter"]} if config["training"].get("levanter") else {}),
    },
    sort_keys=True,
)


rule train_model:
    """One run of the plan; its params are its own spec only, so an edit reruns just this run."""
    input:
        cache=lambda wc: cache_dir(wc.run),
        tokenizer=rules.train_tokenizer.output,
    output:
        spec=paths.MODEL_SPEC,
        hf=directory(paths.MODEL_HF),
        metrics=paths.MODEL_METRICS,
    log:
        "logs/train/{run}.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    conda:
        "../envs/study.yaml"
    threads: config["resources"]["train_threads"]
    resources:
        mem_mb=config["resources"]["train_mem_mb"],
    params:
        spec=run_spec,
        out=lambda wc: fill(paths.MODEL, run=wc.run),
        checkpoints=paths.CHECKPOINTS,
        settings=TRAIN_SETTINGS,
    shell:
        "python -m infinite_compute --threads {threads} train --spec {params.spec:q} --cache {input.cache} --tokenizer {input.tokenizer} "
        "--out {params.out} --checkpoints {params.checkpoints} --settings {params.settings:q} > {log} 2>&1"
