rule draw_figure:
    """One figure of the registry (infinite_compute.outputs.figures), from the tables, the budgets'
    cache records and the corpus manifest only."""
    input:
        tables=RESULT_TABLES,
        claims=rules.claims_scorecard.output,
        caches=[] if IMPORTED else [fill(paths.BUDGET_CACHE, budget=b) for b in PLAN.token_budgets],
        manifest=MANIFEST,
    output:
        report(paths.FIGURE, caption="../report/figure.rst", category="Figures"),
    log:
        "logs/figures/{figure}.log",
    conda:
        "../envs/study.yaml"
    params:
        baseline_wd=config["training"]["baseline_weight_decay"],
        caption=lambda wc: figure_caption(wc.figure, config),  # the report's caption (report/figure.rst)
    shell:
        "python -m infinite_compute figure --name {wildcards.figure} --tables {input.tables} {input.claims} --caches {input.caches} "
        "--manifest {input.manifest} --baseline-wd {params.baseline_wd} --out {output} > {log} 2>&1"


rule all_figures:
    """`snakemake figures/all`: every figure and the paper (Markdown and HTML), with a checksum index of
    the figures."""
    input:
        figures=expand(paths.FIGURE, figure=STUDY_FIGURES),
        paper=paths.PAPER,
        paper_html=paths.PAPER_HTML,
    output:
        paths.FIGURES_INDEX,
    log:
        "logs/figures/all.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute figures-index --figures {input.figures} --out {output} > {log} 2>&1"
