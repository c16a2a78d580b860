rule ensemble_curve:
    """Ensemble loss for K = 1..Kmax from the members' saved log-probs."""
    input:
        logprobs=lambda wc: [fill(paths.LOGPROBS, run=r) for r in ensemble_members(wc.name)],
    output:
        paths.ENSEMBLE,
    log:
        "logs/ensemble/{name}.log",
    conda:
        "../envs/study.yaml"
    params:
        members=lambda wc: ensemble_members(wc.name),
        info=ensemble_info,
        seed=config["seed"],
    shell:
        "python -m infinite_compute ensemble --name {wildcards.name} --logprobs {input.logprobs} --member-ids {params.members} --info {params.info:q} "
        "--seed {params.seed} --out {output} > {log} 2>&1"
