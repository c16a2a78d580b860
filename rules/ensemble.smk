rule ensemble_curve:
    """Ensemble loss for K = 1..Kmax from the members' saved log-probs."""
    input:
        evals=lambda wc: [f"{eval_dir(r)}/logprobs.npz" for r in ensemble_members(wc.name)],
    output:
        "results/ensembles/{name}.json",
    params:
        evals=lambda wc, input: [parent(f) for f in input.evals],
        members=lambda wc: ensemble_members(wc.name),
        info=ensemble_info,
        seed=config["seed"],
    log:
        "logs/ensemble/{name}.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute ensemble --name {wildcards.name} --evals {params.evals} --member-ids {params.members} --info {params.info:q} "
        "--seed {params.seed} --out {output} > {log} 2>&1"
