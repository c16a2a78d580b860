rule render_paper:
    """The paper's results section; every number comes from the Parquet tables and fits."""
    input:
        template="paper/paper.md.j2",
        tables=RESULT_TABLES,
        manifest=rules.prepare_corpus.output.manifest,
    output:
        report("paper/paper.md", caption="../report/paper.rst", category="Paper"),
    log:
        "logs/paper/paper.log",
    conda:
        "../envs/study.yaml"
    shell:
        "{CLI} paper --template {input.template} --results results --data-dir {DATA} --out {output} > {log} 2>&1"
