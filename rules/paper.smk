rule render_paper:
    """The paper's results section; every number comes from the Parquet tables and fits."""
    input:
        template="paper/paper.md.j2",
        tables=RESULT_TABLES,
        manifest=rules.prepare_corpus.output.manifest,
    output:
        report("paper/paper.md", caption="../report/paper.rst", category="Paper"),
    params:
        results=lambda wc, input: parent(input.tables[0]),
        data=lambda wc, input: parent(parent(input.manifest)),
        baseline_wd=config["training"]["baseline_weight_decay"],
    log:
        "logs/paper/paper.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute paper --template {input.template} --results {params.results} --data-dir {params.data} --baseline-wd {params.baseline_wd} --out {output} > {log} 2>&1"
