rule render_paper:
    """The paper's results section; every number comes from the Parquet tables and fits."""
    input:
        template=paths.PAPER_TEMPLATE,
        tables=RESULT_TABLES,
        claims=rules.claims_scorecard.output,
        manifest=MANIFEST,
    output:
        report(paths.PAPER, caption="../report/paper.rst", category="Paper"),
    log:
        "logs/paper/paper.log",
    conda:
        "../envs/study.yaml"
    params:
        baseline_wd=config["training"]["baseline_weight_decay"],
    shell:
        "python -m infinite_compute paper --template {input.template} --tables {input.tables} {input.claims} "
        "--manifest {input.manifest} --baseline-wd {params.baseline_wd} --out {output} > {log} 2>&1"
