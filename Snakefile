# Pre-training under infinite compute (Kim, Kotha, Liang, Hashimoto, arXiv 2509.14786):
# the whole study as one DAG. `snakemake figures/all --cores all` runs the embedded default.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")


report: "report/workflow.rst"


# Light jobs run on the machine running Snakemake, whatever the executor (profiles/tpu, slurm).
localrules:
    write_plan,
    tune_round,
    tune_cell,
    cpt_select,
    fit_power_laws,
    draw_figure,
    render_paper,
    render_paper_html,
    all_figures,


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/tuning.smk"
include: "rules/evaluate.smk"
include: "rules/ensemble.smk"
include: "rules/distill.smk"
include: "rules/cpt.smk"
include: "rules/results.smk"
include: "rules/import.smk"
include: "rules/fits.smk"
include: "rules/figures.smk"
include: "rules/paper.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
