import json
import os
import sys
import types

sys.path.insert(0, os.path.join(workflow.basedir, "src"))

from infinite_compute.cli.pool import start_for_snakemake as start_warm_workers
from infinite_compute.data.benchmarks import ITEM_KEYS as BENCHMARK_ITEM_KEYS
from infinite_compute.data.corpus import check_local_files, check_shards
from infinite_compute.data.tokenizer import check_hf_base
from infinite_compute.outputs.figures import FIGURES, caption as figure_caption
from infinite_compute.outputs.results import OPTIONAL_TABLES, TABLES
from infinite_compute.outputs.wandb_files import offline_run_files
from infinite_compute.outputs.wandb_runs import check_source as check_import_source
from infinite_compute.runtime.env import ACCELERATOR_ENV, check_secrets
from infinite_compute.study import paths
from infinite_compute.study.hf_base import base_files, tokenizer_files
from infinite_compute.study.memory import check_fits, format_table, plan_memory
from infinite_compute.study.paths import fill
from infinite_compute.study.tasks import missing_hub_datasets
from infinite_compute.study.plan import build_plan, plan_to_dict

# Bad values fail here, naming the config key, before any job is scheduled.
PLAN = build_plan(config)


# A study drawn from W&B runs (config `import`) trains nothing: its tables come from rules/import.smk.
IMPORTED = config["import"]["source"] != "none"
if IMPORTED:
    check_import_source(config["import"])  # runs to import exist, before any job


onstart:
    check_secrets(config["logging"])  # W&B online: its key, on this (the submit) host
    if not IMPORTED:
        # Local corpus files that are missing, empty or too small for the token budgets fail here,
        # before the first job. A dry run skips this: it shows the DAG anywhere, the paper's included.
        check_local_files(config["data"])
        if PLAN.cpt and config["cpt"].get("files"):  # a real math corpus: its local shards, sniffed alike
            check_shards(config["cpt"]["files"], config["data"], "cpt.files")
        # A CPT base from a Hugging Face directory: its files, a Llama config, a tokenizer with an EOS.
        if PLAN.cpt and PLAN.cpt.base_hf:
            check_hf_base(config["cpt"]["base"])
        # Each jax job's peak memory on its devices (study/memory.py), against what the profile says each
        # device has (`device_memory_gib`): a config that would overflow one is refused here, naming the jobs.
        # The lm-eval tasks' hub datasets, which the jobs read offline from the cache: each one missing
        # is named here (`python -m infinite_compute fetch-inputs` downloads them).
        missing = missing_hub_datasets(HUB_TASKS, os.environ.get("HF_HOME", os.path.abspath(JOB_CACHES["HF_HOME"])))
        if missing:
            raise ValueError(
                f"benchmark datasets missing from the Hugging Face cache the jobs read offline: {'; '.join(missing)}. "
                "Download them once: python -m infinite_compute fetch-inputs --configfile <your configs>"
            )
        memory = plan_memory(PLAN, config, rule_resources())
        print(f"memory plan (per device):\n{format_table(memory)}", file=sys.stderr)
        check_fits(memory)
        # Jobs run on this machine hand their jax commands to warm workers (runtime/worker.py): one per
        # job slot, started here, gone with this Snakemake (cli/pool.py says when).
        start_warm_workers(workflow, config, JOB_CACHES)


# Where the jax jobs compute (`resources.accelerator`; runtime/env.py turns it into JAX_PLATFORMS): set in
# this process's environment, before the warm workers start, so that local jobs, the workers and a cluster
# job's own Snakemake (which reads this file again) all have it. One already in the environment wins:
# profiles/tpu's Ray jobs on TPU hosts come with `auto`.
os.environ.setdefault(ACCELERATOR_ENV, config["resources"]["accelerator"])
# Jobs run `python -m infinite_compute`: the interpreter running Snakemake comes first on PATH
# (a conda env, when used, is put before it by Snakemake).
# Every jax process shares one persistent compilation cache inside the project's results folder.
# Hugging Face's caches (lm-eval's datasets) stay in the project unless the user has one.
JOB_CACHES = {"JAX_COMPILATION_CACHE_DIR": f"{paths.RESULTS}/jax-cache", "HF_HOME": f"{paths.RESULTS}/hf"}
shell.prefix(
    f'export PATH="{os.path.dirname(sys.executable)}:$PATH"; '
    + "".join(f'export {k}="${{{{{k}:-$PWD/{v}}}}}"; ' for k, v in JOB_CACHES.items())
)
# what lm-eval needs besides the items: which tasks, how many few-shot examples (seeded), how many docs
BENCHMARK_SETTINGS = {
    "tasks": config["benchmark"]["tasks"],
    "num_fewshot": config["benchmark"]["num_fewshot"],
    "limit": config["benchmark"]["limit"],
    "seed": config["seed"],
}
# lm-eval on the CPT models: cpt.tasks, with the local heldout_math_choice's number of options
CPT_BENCHMARK_SETTINGS = {
    **BENCHMARK_SETTINGS,
    **(
        {"tasks": config["cpt"]["tasks"], "num_fewshot": config["cpt"]["num_fewshot"]}
        if PLAN.cpt
        else {"tasks": [], "num_fewshot": 0}
    ),
    "choices": config["benchmark"]["choices"],
}
# the benchmark tasks whose data lm-eval reads from the hub (the local ones are built by the study)
HUB_TASKS = list(config["benchmark"]["tasks"]) + (list(config["cpt"]["tasks"]) if PLAN.cpt else [])
# the Parquet tables every figure and the paper read (the CPT ones only in a study with a CPT stage)
RESULT_TABLES = [fill(paths.TABLE, kind=k) for k in TABLES + (OPTIONAL_TABLES if PLAN.cpt else ())]
# the CPT figure only with a CPT stage, the floor figure only on a corpus of known entropy, the data
# figure only on a corpus of this study's (an import has none)
SYNTHETIC = config["data"]["source"] == "synthetic" and not IMPORTED
STUDY_FIGURES = [
    f for f in FIGURES if (f != "cpt" or PLAN.cpt) and (f != "floor" or SYNTHETIC) and (f != "data" or not IMPORTED)
]
# what the paper's Setup and the floor checks read: the corpus manifest, or what the import read
MANIFEST = paths.IMPORT_MANIFEST if IMPORTED else paths.CORPUS_MANIFEST


wildcard_constraints:
    run=r"[a-z][a-z0-9.\-]*",
    budget=r"\d+",
    name=r"[a-z][a-z0-9_\-]*",
    figure=r"[a-z_]+",
    cell=r"[a-z][a-z0-9_.\-]*",
    round=r"\d+",


def rule_resources():
    """{rule: its resources}, as the rules, the profile and the command line set them (those known
    before a job: one computed from a job's inputs is left out)."""
    out = {}
    for r in workflow.rules:
        out[r.name] = {}
        for k, res in r.resources.items():
            try:
                if res.value is not None:
                    out[r.name][k] = res.value
            except ValueError:  # "must be evaluated within the context of a rule"
                pass
    return out


def cache_dir(run):
    """The levanter cache a run trains on: a token budget or a student's real+synthetic mix."""
    return fill(paths.CACHE, name=PLAN.spec(run).cache_name)


def run_spec(wildcards):
    return PLAN.spec(wildcards.run).to_json()


def model_spec(run):
    return fill(paths.MODEL_SPEC, run=run)


def model_hf(run):
    return fill(paths.MODEL_HF, run=run)


def tuning_finals():
    return [fill(paths.TUNING_FINAL, cell=c) for c in sorted(PLAN.cells)]


def final_outputs():
    return [paths.FIGURES_INDEX]


# --- hyperparameter searches (rules/tuning.smk) ---


def round_file(cell, r):
    return fill(paths.TUNING_ROUND, cell=cell, round=r)


def round_points(wc):
    """The lattice points a round trains: round 0 from the config, later ones from the record
    of the round before (its `next`)."""
    r = int(wc.round)
    if r == 0:
        return [list(p) for p in PLAN.cells[wc.cell].first_round()]
    with open(checkpoints.tune_round.get(cell=wc.cell, round=str(r - 1)).output[0]) as f:
        return json.load(f)["next_points"]


def round_evals(wc):
    return [fill(paths.EVAL, run=PLAN.point_run(wc.cell, p)) for p in round_points(wc)]


def final_round(wc):
    """The last round of a cell: walk the rounds until one ends the search."""
    r = 0
    while True:
        path = checkpoints.tune_round.get(cell=wc.cell, round=str(r)).output[0]
        with open(path) as f:
            if json.load(f)["status"] != "continue":
                return path
        r += 1


def final_record(cell):
    with open(final_round(types.SimpleNamespace(cell=cell))) as f:
        return json.load(f)


def selected_run(cell):
    """The best point of a search cell once its search has ended (a Snakemake checkpoint)."""
    return final_record(cell)["best"]


def reseed_runs(cell):
    """A search cell's reseeds: its selected run's recipe with the next seeds (study.tuning.Cell.reseed_ids)."""
    return PLAN.reseed_runs(cell, selected_run(cell))


def ensemble_members(name):
    """An ensemble's member run ids; for an ensemble of a search, from its cell's selected run."""
    ens = PLAN.ensembles[name]
    return ens.member_ids() if ens.cell is None else ens.member_ids(selected_run(ens.cell))


def teacher_members(name):
    """A distillation teacher's run ids; known only once its search has ended for an ensemble of a
    search or a search's selected run (self-distillation from the tuned model)."""
    d = PLAN.distillations[name]
    if d.teacher_kind == "ensemble":
        return ensemble_members(d.teacher_name)
    if d.teacher_kind == "search":
        return [selected_run(d.teacher_cell)["run_id"]]
    return list(d.teacher_members)


def ensemble_info(wc):
    """What the ensembles table reports beside the losses (study.plan.ensemble_info)."""
    return json.dumps(PLAN.ensemble_info(wc.name, ensemble_members(wc.name)), sort_keys=True)


def searched_runs():
    """The trained runs the results tables hold beside the plan's (PLAN.trained_runs): every search's
    points, its reseeds and the members of the searches' ensembles, known once the searches have ended
    (a reseed that is also a member is one run)."""
    ids = set()
    for cell in PLAN.cells:
        ids |= {q["run_id"] for q in final_record(cell)["points"]}
        ids |= set(reseed_runs(cell))
    for name in PLAN.ensembles:
        ids |= set(ensemble_members(name))
    return sorted(ids - set(PLAN.runs))


def run_files(template, runs):
    return [fill(template, run=r) for r in runs]


# --- continued pre-training (rules/cpt.smk) ---


def cpt_tokenizer(wc=None):
    """The CPT stage's tokenizer: a Hugging Face base's own (cpt.base.hf), else the study's."""
    return PLAN.cpt.base_hf or paths.TOKENIZER


def cpt_tokenizer_files(wc):
    """The tokenizer files the CPT jobs read (a base's that exist: a dry run shows the DAG without them)."""
    return existing_base_files(tokenizer_files(PLAN.cpt.base_hf)) if PLAN.cpt.base_hf else [paths.TOKENIZER]


def cpt_base(wc):
    """The HF model directory a CPT run starts from: a Hugging Face base, or the base cell's selected run."""
    return PLAN.cpt.base_hf or model_hf(selected_run(PLAN.cpt.base_cell)["run_id"])


def cpt_base_files(wc):
    """What a CPT run reads of its base: a Hugging Face base's files (those that exist), or the selected
    run's spec and export (waiting for its search)."""
    if PLAN.cpt.base_hf:
        return existing_base_files(base_files(PLAN.cpt.base_hf))
    rid = selected_run(PLAN.cpt.base_cell)["run_id"]
    return [model_spec(rid), model_hf(rid)]


def existing_base_files(files):
    return [f for f in files if os.path.exists(f)]


def cpt_members():
    """The CPT ensemble: members of the regularized weight decay selected (a checkpoint)."""
    with open(checkpoints.cpt_select.get().output[0]) as f:
        return list(PLAN.cpt.members[json.load(f)["selected"]])
