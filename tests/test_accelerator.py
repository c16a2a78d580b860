"""Where the jobs compute: `resources.accelerator` reaches every job's environment (runtime/env.py),
the CPU is forced by default and not when an accelerator is asked for; and, where jax sees a GPU, a
tiny run trains on it (skipped here: this machine has none)."""

import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from infinite_compute.runtime import env as job_env

ACCELERATOR_VARS = ("IC_ACCELERATOR", "JAX_PLATFORMS")


def clean_env(**extra) -> dict:
    """This process's environment without the accelerator's variables (conftest pins JAX_PLATFORMS=cpu)."""
    e = {k: v for k, v in os.environ.items() if k not in ACCELERATOR_VARS}
    return {**e, "PYTHONPATH": os.path.join(ROOT, "src"), **extra}


@pytest.mark.parametrize("accelerator, platforms", [(None, "cpu"), ("cpu", "cpu"), ("gpu", "cuda,cpu"),
                                                    ("tpu", "tpu,cpu"), ("auto", None)])
def test_the_accelerator_sets_jax_platforms(monkeypatch, accelerator, platforms):
    for k in (*ACCELERATOR_VARS, "XLA_PYTHON_CLIENT_PREALLOCATE"):
        monkeypatch.delenv(k, raising=False)
    if accelerator is not None:
        monkeypatch.setenv("IC_ACCELERATOR", accelerator)
    job_env.set_job_defaults()
    assert os.environ.get("JAX_PLATFORMS") == platforms
    # jobs that share a GPU take its memory as they need it
    assert os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE") == (None if platforms == "cpu" else "false")


def test_a_users_jax_platforms_is_kept_and_a_bad_accelerator_names_the_key(monkeypatch):
    monkeypatch.setenv("IC_ACCELERATOR", "cpu")
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    job_env.set_job_defaults()
    assert os.environ["JAX_PLATFORMS"] == "cuda"
    monkeypatch.setenv("IC_ACCELERATOR", "cuda")
    with pytest.raises(ValueError, match=r"IC_ACCELERATOR='cuda' \(config resources.accelerator\): expected one of "
                                         r"cpu, gpu, tpu, auto"):
        job_env.set_job_defaults()


PROBE_RULE = '''
include: "Snakefile"


rule probe_job_env:
    output:
        "probe/{name}.json",
    shell:
        "python probe_env.py {output}"
'''
# what a job sees after the command line's set-up (cli.main calls set_job_defaults before any command)
PROBE_SCRIPT = '''
import json, os, sys
from infinite_compute.runtime.env import set_job_defaults
set_job_defaults()
json.dump({k: os.environ.get(k) for k in ("IC_ACCELERATOR", "JAX_PLATFORMS")}, open(sys.argv[1], "w"))
'''


@pytest.fixture(scope="module")
def probe_project(tmp_path_factory):
    from test_workflow import project_copy

    wd = project_copy(tmp_path_factory.mktemp("accelerator"))
    with open(os.path.join(wd, "probe.smk"), "w") as f:
        f.write(PROBE_RULE)
    with open(os.path.join(wd, "probe_env.py"), "w") as f:
        f.write(PROBE_SCRIPT)
    return wd


@pytest.mark.parametrize("name, config, env, expected", [
    ("default", [], {}, {"IC_ACCELERATOR": "cpu", "JAX_PLATFORMS": "cpu"}),
    ("gpu", ["--config", "resources={accelerator: gpu}"], {},
     {"IC_ACCELERATOR": "gpu", "JAX_PLATFORMS": "cuda,cpu"}),
    ("auto", ["--config", "resources={accelerator: auto}"], {},
     {"IC_ACCELERATOR": "auto", "JAX_PLATFORMS": None}),
    # profiles/tpu's Ray jobs come with IC_ACCELERATOR=auto, whatever the config says
    ("ray-tpu-job", [], {"IC_ACCELERATOR": "auto"}, {"IC_ACCELERATOR": "auto", "JAX_PLATFORMS": None}),
])
def test_a_job_runs_on_the_cpu_by_default_and_not_when_an_accelerator_is_asked_for(probe_project, name, config, env,
                                                                                  expected):
    """Through Snakemake: the config key (or the environment) reaches a job's environment as its
    command line sees it."""
    p = subprocess.run([sys.executable, "-m", "snakemake", "-s", "probe.smk", f"probe/{name}.json", "--cores", "1",
                        "--configfile", ".test/config.yaml", *config], cwd=probe_project, env=clean_env(**env),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.load(open(os.path.join(probe_project, "probe", f"{name}.json"))) == expected


def test_a_bad_accelerator_fails_validation_naming_the_key(probe_project):
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", "probe.smk", "probe/x.json", "--cores", "1",
                        "--config", "resources={accelerator: cuda}"], cwd=probe_project, env=clean_env(),
                       capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out[-3000:]
    assert "'cuda' is not one of ['cpu', 'gpu', 'tpu', 'auto']" in out and "accelerator" in out, out[-3000:]


# --- on a GPU --------------------------------------------------------------------------------------


def jax_gpu() -> str | None:
    """Why jax sees no GPU here (None: it sees one). Asked in a fresh process, as a job would, since
    this one runs jax on the CPU (conftest)."""
    plugin = importlib.util.find_spec("jax_cuda12_plugin") is not None
    p = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend(), jax.devices())"],
                       env=clean_env(), capture_output=True, text=True, timeout=300)
    seen = p.stdout.strip() or p.stderr.strip()[-300:]
    if p.returncode == 0 and seen.startswith("gpu"):
        return None
    install = "installed" if plugin else "not installed (README, On a GPU)"
    return f"no GPU: jax sees {seen}; jax's CUDA plugin (jax-cuda12-plugin) is {install}"


@pytest.fixture(scope="module")
def gpu():
    """Skips, saying why, where jax sees no GPU (before any data is made for the run)."""
    reason = jax_gpu()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def tiny_run(gpu, small_budget_cache, tmp_path_factory, smoke_config_module):
    """A levanter cache of the small corpus and the spec of a 4-step run of the smoke study's smallest model."""
    from infinite_compute.study.plan import build_plan

    cache, tok_dir = small_budget_cache
    tmp = tmp_path_factory.mktemp("gpu")
    plan = build_plan(smoke_config_module)
    spec = plan.spec(sorted(plan.runs)[0])
    spec = dataclasses.replace(spec, epochs=1, num_train_steps=4, token_budget=3000, tokens_per_epoch=3000)
    return tmp, cache, tok_dir, spec


@pytest.fixture(scope="module")
def smoke_config_module():
    from infinite_compute.study.config import load_config

    return load_config(os.path.join(ROOT, ".test", "config.yaml"), os.path.join(ROOT, "schemas", "config.schema.yaml"))


TRAIN_AND_SAY_WHERE = '''
import sys
from infinite_compute.cli import main
main(sys.argv[1:])
import jax
print("backend:", jax.default_backend())
'''


def train_tiny(tmp, cache, tok_dir, spec, accelerator: str) -> subprocess.CompletedProcess:
    """The train command on `spec`, in its own process with IC_ACCELERATOR=`accelerator`."""
    settings = {"engine": "loop", "evals_per_run": 1, "checkpoint_minutes": 10.0}
    out = tmp / f"model-{accelerator}"
    return subprocess.run(
        [sys.executable, "-c", TRAIN_AND_SAY_WHERE, "train", "--spec", spec.to_json(), "--cache",
         cache, "--tokenizer", tok_dir, "--out", str(out), "--checkpoints", str(tmp / "ckpt"),
         "--settings", json.dumps(settings)],
        env=clean_env(IC_ACCELERATOR=accelerator), capture_output=True, text=True, timeout=600)


def test_a_tiny_run_trains_on_the_gpu_when_jax_sees_one(tiny_run):
    tmp, cache, tok_dir, spec = tiny_run
    p = train_tiny(tmp, cache, tok_dir, spec, "gpu")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "backend: gpu" in p.stdout  # the job's jax computed on the GPU, not on a CPU fallback
    metrics = json.load(open(tmp / "model-gpu" / "metrics.json"))
    assert math.isfinite(metrics["final_eval_loss"])
