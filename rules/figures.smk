RESULT_TABLES = [
    f"results/{k}.parquet"
    for k in ("runs", "ensembles", "distillation", "benchmarks", "tuning", "fits", "efficiency")
] + (["results/cpt.parquet", "results/cpt_fits.parquet"] if PLAN.cpt else [])
STUDY_FIGURES = [f for f in FIGURES if f != "cpt" or PLAN.cpt]  # the CPT figure only with a CPT stage


rule draw_figure:
    input:
        tables=RESULT_TABLES,
        caches=[f"{DATA}/cache/d{b}" for b in PLAN.token_budgets],
        manifest=rules.prepare_corpus.output.manifest,
    output:
        report("figures/{figure}.png", caption="../report/figure.rst", category="Figures"),
    params:
        results=lambda wc, input: parent(input.tables[0]),
        data=lambda wc, input: parent(parent(input.manifest)),
        baseline_wd=config["training"]["baseline_weight_decay"],
    log:
        "logs/figures/{figure}.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute figure --name {wildcards.figure} --results {params.results} --data-dir {params.data} --baseline-wd {params.baseline_wd} --out {output} > {log} 2>&1"


rule all_figures:
    """`snakemake figures/all`: every figure and the paper, with a checksum index of the figures."""
    input:
        figures=expand("figures/{figure}.png", figure=STUDY_FIGURES),
        paper="paper/paper.md",
    output:
        "figures/all",
    log:
        "logs/figures/all.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute figures-index --figures {input.figures} --out {output} > {log} 2>&1"
