import dataclasses
import json
import os
import sys
import types

sys.path.insert(0, os.path.join(workflow.basedir, "src"))

from infinite_compute.benchmarks import ITEM_KEYS as BENCHMARK_ITEM_KEYS
from infinite_compute.data import check_local_files
from infinite_compute.figures import FIGURES
from infinite_compute.plan import build_plan, plan_to_dict
from infinite_compute.worker import ENV as WORKER_ENV, pool_size as worker_pool_size, start as start_workers

# Bad values fail here, naming the config key, before any job is scheduled.
PLAN = build_plan(config)


onstart:
    # Local corpus files that are missing, empty or too small for the token budgets fail here,
    # before the first job. A dry run skips this: it shows the DAG anywhere, the paper's included.
    check_local_files(config["data"])
    # Jobs run on this machine hand their jax commands to warm workers (worker.py): one per job
    # slot, started here, gone with this Snakemake. Cluster executors' jobs, and jobs in conda or
    # container environments (another interpreter), run in their own processes.
    if (config["resources"]["warm_workers"] and workflow.local_exec and workflow.is_main_process
            and not workflow.deployment_settings.deployment_method):
        for k, v in JOB_CACHES.items():  # the workers' caches are the jobs' (shell.prefix below)
            os.environ.setdefault(k, os.path.abspath(v))
        threads = min(config["resources"]["train_threads"], config["resources"]["eval_threads"])
        sock = os.path.abspath(f"results/workers/{os.getpid()}.sock")
        start_workers(sock, worker_pool_size(workflow.cores, threads), "logs/workers.log")
        os.environ[WORKER_ENV] = sock

# Jobs run `python -m infinite_compute`: the interpreter running Snakemake comes first on PATH
# (a conda env, when used, is put before it by Snakemake).
# Every jax process shares one persistent compilation cache inside the project's results folder.
# Hugging Face's caches (lm-eval's datasets) stay in the project unless the user has one.
JOB_CACHES = {"JAX_COMPILATION_CACHE_DIR": "results/jax-cache", "HF_HOME": "results/hf"}
shell.prefix(
    f'export PATH="{os.path.dirname(sys.executable)}:$PATH"; '
    + "".join(f'export {k}="${{{{{k}:-$PWD/{v}}}}}"; ' for k, v in JOB_CACHES.items())
)
DATA = "results/data"
# what lm-eval needs besides the items: which tasks, how many few-shot examples (seeded), how many docs
BENCHMARK_SETTINGS = {
    "tasks": config["benchmark"]["tasks"],
    "num_fewshot": config["benchmark"]["num_fewshot"],
    "limit": config["benchmark"]["limit"],
    "seed": config["seed"],
}
CHECKPOINTS = "results/checkpoints"  # resumable state, outside declared outputs


wildcard_constraints:
    run=r"[a-z][a-z0-9.\-]*",
    budget=r"\d+",
    name=r"[a-z][a-z0-9_\-]*",
    figure=r"[a-z_]+",
    cell=r"[a-z][a-z0-9_.\-]*",
    round=r"\d+",


def cache_dir(run):
    """The levanter cache a run trains on: a token budget or a student's real+synthetic mix."""
    return f"{DATA}/cache/{PLAN.spec(run).cache_name}"


def run_spec(wildcards):
    return PLAN.spec(wildcards.run).to_json()


def parent(path):
    return os.path.dirname(path)


def model_files(run):
    return [f"results/models/{run}/spec.json", f"results/models/{run}/hf"]


def eval_dir(run):
    return f"results/evals/{run}"


def all_evals():
    return [f"{eval_dir(r)}/eval.json" for r in PLAN.trained_runs]


def tuning_finals():
    return [f"results/tuning/{c}/final.json" for c in sorted(PLAN.cells)]


def final_outputs():
    return ["figures/all"]


# --- hyperparameter searches (rules/tuning.smk) ---


def round_file(cell, r):
    return f"results/tuning/{cell}/round{r}.json"


def round_points(wc):
    """The lattice points a round trains: round 0 from the config, later ones from the record
    of the round before (its `next`)."""
    r = int(wc.round)
    if r == 0:
        return [list(p) for p in PLAN.cells[wc.cell].first_round()]
    with open(checkpoints.tune_round.get(cell=wc.cell, round=str(r - 1)).output[0]) as f:
        return json.load(f)["next_points"]


def round_evals(wc):
    return [f"{eval_dir(PLAN.point_run(wc.cell, p))}/eval.json" for p in round_points(wc)]


def selected_run(cell):
    """The best point of a search cell once its search has ended (a Snakemake checkpoint)."""
    with open(final_round(types.SimpleNamespace(cell=cell))) as f:
        return json.load(f)["best"]


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
    """What the ensembles table reports beside the losses: its recipe and its members' settings."""
    ens = PLAN.ensembles[wc.name]
    first = PLAN.spec(ensemble_members(wc.name)[0])
    info = {"recipe": ens.recipe, "cell": ens.cell, "model": ens.model, "token_budget": ens.token_budget,
            "non_embedding_params": first.model.non_embedding_params(), "epochs": first.epochs,
            "learning_rate": first.learning_rate, "weight_decay": first.weight_decay}
    return json.dumps(info, sort_keys=True)


# --- continued pre-training (rules/cpt.smk) ---


def cpt_eval(run):
    return f"results/cpt/evals/{run}/eval.json"


def cpt_members():
    """The CPT ensemble: members of the regularized weight decay selected (a checkpoint)."""
    with open(checkpoints.cpt_select.get().output[0]) as f:
        return list(PLAN.cpt.members[json.load(f)["selected"]])


def cpt_model_files(run):
    return [f"results/cpt/models/{run}/spec.json", f"results/cpt/models/{run}/hf"]


def final_round(wc):
    """The last round of a cell: walk the rounds until one ends the search."""
    r = 0
    while True:
        path = checkpoints.tune_round.get(cell=wc.cell, round=str(r)).output[0]
        with open(path) as f:
            if json.load(f)["status"] != "continue":
                return path
        r += 1
