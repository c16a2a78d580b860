"""The memory plan (study/memory.py): its estimate of a training step against XLA's memory analysis
of the compiled step on this CPU, the devices a profile gives each job, config/paper.yaml on both
cluster profiles, and the refusal of a config that does not fit before any job starts."""

import copy
import importlib.util
import json
import os
import subprocess

import pytest
from test_plan import ROOT, _paper_config
from test_workflow import project_copy

from infinite_compute.study.config import ConfigError
from infinite_compute.study.memory import GiB, check_fits, devices_of, plan_memory, profile_resources
from infinite_compute.study.plan import build_plan


def _bench():
    spec = importlib.util.spec_from_file_location("bench_memory", os.path.join(ROOT, "bench", "memory.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", [0, 3])
def test_the_estimate_of_a_training_step_is_xlas_within_the_tolerance(case):
    """Shapes the plan's tensor counts were not read from (bench/memory.py's validation set: GQA, and
    gradient checkpointing with blockwise cross-entropy): the estimate is XLA's peak within 15%."""
    bench = _bench()
    name, xla, est = bench.compare(bench.VALIDATION[case])
    assert abs(est / xla - 1) <= bench.TOLERANCE, (name, xla / 2**20, est / 2**20)


def test_a_profile_gives_each_job_its_devices_and_their_memory():
    def of(resources):
        d = devices_of(resources, "r")
        return d.count, d.memory, d.accelerator

    assert of({"tpu_type": "v4-64", "hosts": 8, "tpu_chips": 4}) == (32, 32 * GiB, True)
    assert of({"tpu_type": "v4-8"}) == (4, 32 * GiB, True)
    assert of({"gres": "gpu:h100:4", "nodes": 2, "device_memory_gib": 79}) == (8, 79 * GiB, True)
    assert of({"gres": "gpu:4"}) == (4, None, True)  # a GPU of unknown memory: not checked
    assert of({"mem_mb": 3000}) == (1, 3000 * 2**20, False)


def _paper_plan(tmp_path, **changes):
    config, _ = _paper_config()
    base = tmp_path / "llama3b"  # Llama-3.2-3B's config.json: the CPT base's shape
    base.mkdir(exist_ok=True)
    (base / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
        "num_attention_heads": 24, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": True}))
    config = copy.deepcopy(config)
    config["cpt"]["base"]["hf"] = str(base)
    for key, value in changes.items():
        section, _, leaf = key.rpartition(".")
        d = config
        for k in section.split("."):
            d = d[k]
        d[leaf] = value
    return build_plan(config), config


@pytest.mark.parametrize("profile", ["tpu", "slurm"])
def test_the_paper_configs_trainings_fit_each_profiles_devices_and_its_old_settings_did_not(profile, tmp_path):
    """config/paper.yaml on profiles/tpu (v4 chips, 32 GiB) and profiles/slurm (80 GB GPUs): every
    training, the 3B CPT's included, every evaluation of a pre-trained model and the teacher sampling
    fit. With the settings it had before (no checkpointing, vanilla attention, whole-vocabulary loss,
    the whole batch per step, 32 sequences per evaluation) the plan refuses the trainings, naming each."""
    resources = profile_resources(os.path.join(ROOT, "profiles", profile))
    plan, config = _paper_plan(tmp_path)
    estimates = plan_memory(plan, config, resources)
    jobs = {e.job.split()[0] for e in estimates}
    assert {"train_model", "train_cpt", "evaluate_model", "sample_teacher"} <= jobs
    for e in estimates:
        if e.job.split()[0] in ("train_model", "train_cpt", "evaluate_model", "sample_teacher"):
            assert e.fits, (e.job, e.total / GiB, e.devices)
    old, config = _paper_plan(tmp_path, **{
        "model.gradient_checkpointing": False, "model.attention_backend": "vanilla",
        "model.cross_entropy_block_size": None, "training.levanter.per_device_parallelism": -1,
        "evaluation.batch_size": 32})
    with pytest.raises(ConfigError) as e:
        check_fits(plan_memory(old, config, resources))
    text = str(e.value)
    for model in ("m150", "m300", "m600", "m1400"):
        assert f"train_model {model} (batch 64): about" in text
    assert "GiB on each of 4 device(s)" in text and f"train_model: {'tpu_chips' if profile == 'tpu' else 'gres'}" in text


def test_the_paper_config_sets_every_key_the_default_sets():
    """config/paper.yaml is merged over config.yaml: every setting the default makes, it makes itself,
    so that a change to the CPU default never changes the paper's study. The exceptions: `models`
    (named shapes; the paper's searches name only its own) and `cpt.base`, whose `hf` form replaces the
    default's search form (the plan reads `hf` first)."""
    import yaml

    default = yaml.safe_load(open(os.path.join(ROOT, "config.yaml")))
    _, paper = _paper_config()

    def leaves(x, path=()):
        if isinstance(x, dict) and x:
            for k, v in x.items():
                yield from leaves(v, (*path, k))
        else:
            yield path

    def sets(x, path):
        for k in path:
            if not isinstance(x, dict) or k not in x:
                return False
            x = x[k]
        return True

    inherited = [".".join(p) for p in leaves(default) if p[0] != "models" and p[:2] != ("cpt", "base")
                 and not sets(paper, p)]
    assert not inherited, f"config/paper.yaml inherits these settings of config.yaml: {inherited}"
    plan = build_plan(_paper_config()[0])
    assert plan.cpt.base_hf and plan.cpt.base_cell is None
    assert set(plan.models[c.model].name for c in plan.cells.values()) == set(paper["models"])


@pytest.mark.workflow
def test_a_config_that_does_not_fit_is_refused_before_any_job_naming_it(tmp_path):
    """A model too large for the training jobs' memory (`resources.train_mem_mb` on this CPU): Snakemake
    stops before its first job, naming the job, its estimate and the memory it was checked against."""
    wd = project_copy(tmp_path / "project")
    with open(os.path.join(wd, "big.yaml"), "w") as f:
        f.write("resources: {train_mem_mb: 256}\n"
                "models:\n  n4: {hidden_dim: 512, intermediate_dim: 2048, num_layers: 8, num_heads: 8}\n")
    p = subprocess.run([os.path.join(os.path.dirname(os.sys.executable), "snakemake"), "results/plan.json",
                        "--configfile", "big.yaml", "--cores", "1"], cwd=wd, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode != 0
    out = p.stdout + p.stderr
    assert "train_model n4 (batch 32): about 1.9 GiB on each of 1 device(s)" in out, out[-3000:]
    assert "over 90% of 0.2 GiB (train_model: 1 CPU device)" in out
    assert not os.path.exists(os.path.join(wd, "results", "plan.json"))
