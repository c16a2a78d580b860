import json
import os
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "src"))

from infinite_compute.figures import FIGURES
from infinite_compute.plan import build_plan, plan_to_dict

# Bad values fail here, naming the config key, before any job is scheduled.
PLAN = build_plan(config)
# Jobs run `python -m infinite_compute`: the interpreter running Snakemake comes first on PATH
# (a conda env, when used, is put before it by Snakemake).
# Every jax process shares one persistent compilation cache inside the project's results folder.
shell.prefix(
    f'export PATH="{os.path.dirname(sys.executable)}:$PATH"; '
    'export JAX_COMPILATION_CACHE_DIR="${{JAX_COMPILATION_CACHE_DIR:-$PWD/results/jax-cache}}"; '
)
DATA = "results/data"
CHECKPOINTS = "results/checkpoints"  # resumable state, outside declared outputs


wildcard_constraints:
    run=r"[a-z][a-z0-9.\-]*",
    budget=r"\d+",
    name=r"[a-z][a-z0-9_\-]*",
    figure=r"[a-z_]+",


def cache_dir(run):
    """The levanter cache a run trains on: a token budget or a student's real+synthetic mix."""
    return f"{DATA}/cache/{PLAN.runs[run].cache_name}"


def run_spec(wildcards):
    return PLAN.runs[wildcards.run].to_json()


def parent(path):
    return os.path.dirname(path)


def model_files(run):
    return [f"results/models/{run}/spec.json", f"results/models/{run}/hf"]


def eval_dir(run):
    return f"results/evals/{run}"


def all_evals():
    return [f"{eval_dir(r)}/eval.json" for r in PLAN.trained_runs]


def final_outputs():
    return ["figures/all"]
