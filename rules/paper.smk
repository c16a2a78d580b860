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


rule render_paper_html:
    """The paper as one standalone HTML page: the scorecard, each claim's section and its figures
    (embedded), every number from the Parquet tables and fits."""
    input:
        template=paths.PAPER_HTML_TEMPLATE,
        tables=RESULT_TABLES,
        claims=rules.claims_scorecard.output,
        manifest=MANIFEST,
        figures=expand(paths.FIGURE, figure=STUDY_FIGURES),
    output:
        report(paths.PAPER_HTML, caption="../report/paper_html.rst", category="Paper"),
    log:
        "logs/paper/paper_html.log",
    conda:
        "../envs/study.yaml"
    params:
        baseline_wd=config["training"]["baseline_weight_decay"],
        # the figures' captions under this config, as the report has them (rules/figures.smk)
        captions=json.dumps({f: figure_caption(f, config) for f in STUDY_FIGURES}, sort_keys=True),
    shell:
        "python -m infinite_compute paper-html --template {input.template} --tables {input.tables} {input.claims} "
        "--manifest {input.manifest} --baseline-wd {params.baseline_wd} --figures {input.figures} "
        "--captions {params.captions:q} --out {output} > {log} 2>&1"
