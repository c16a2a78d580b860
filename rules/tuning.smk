# Hyperparameter searches (infinite_compute.study.tuning): coordinate descent in rounds, each round a
# checkpoint, so the next round's runs are known only once the previous round's losses are.


checkpoint tune_round:
    """One round of a cell's search: the losses of its runs, the best point so far, its
    neighbours, and the next round's points (or the search's end: certified / edge / round_limit)."""
    input:
        previous=lambda wc: [] if wc.round == "0" else round_file(wc.cell, int(wc.round) - 1),
        evals=round_evals,
    output:
        paths.TUNING_ROUND,
    log:
        "logs/tuning/{cell}/round{round}.log",
    conda:
        "../envs/study.yaml"
    params:
        # the cell as its rounds read it: a change of its reseeds reruns no round
        cell=lambda wc: json.dumps(PLAN.cells[wc.cell].search_dict(), sort_keys=True),
    shell:
        "python -m infinite_compute tune-round --cell {params.cell:q} --round {wildcards.round} "
        "--previous {input.previous} --evals {input.evals} --out {output} > {log} 2>&1"


rule tune_cell:
    """The outcome of a cell's search: the selected run and its locally-optimal certificate."""
    input:
        final_round,
    output:
        paths.TUNING_FINAL,
    log:
        "logs/tuning/{cell}/final.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute tune-final --round {input} --out {output} > {log} 2>&1"
