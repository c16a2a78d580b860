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
    assert jobs == {"train_model", "train_cpt", "evaluate_model", "cpt_evaluate", "cpt_ensemble", "sample_teacher"}
    for e in estimates:
        assert e.fits, (e.job, e.total / GiB, e.devices)
    # the 3B ensemble's four members: on a v4 host's 4 chips, a quarter of them on each
    ensemble = next(e for e in estimates if e.job.startswith("cpt_ensemble"))
    assert ensemble.devices.count == (4 if profile == "tpu" else 1)
    # marin's four students sample two corpora: one per teacher, shared by its 75% and 90% students
    assert sorted(e.job.split()[1] for e in estimates if e.job.startswith("sample_teacher")) == [
        "ens-distill:", "self-distill:"]
    assert plan.corpus_of("ens-distill-75") == "ens-distill" and plan.corpus_of("self-distill-90") == "self-distill"
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


def test_scoring_and_sampling_on_four_devices_shard_the_models_and_give_one_devices_results():
    """model/scoring.py and model/sampling.py on 4 simulated devices: load_model's mapping splits the
    parameters on the embedding axis, and the log-probs and sampled tokens are those of one device.
    XLA's memory analysis of both programs on bench/memory.py's validation shapes, on 1 and 4 devices,
    is the plan's (study/memory.py) within its tolerance."""
    script = """
import sys
sys.path.insert(0, "tests")
import haliax as hax, jax, numpy as np
from test_sampling import tiny_llamas
from infinite_compute.model import sampling, scoring
assert jax.device_count() == 4
seqs = np.random.default_rng(0).integers(0, 97, (8, 24)).astype(np.int32)
with scoring.device_mesh():
    models = tiny_llamas(2)
    sharded = [hax.shard(m, scoring.parameter_mapping()) for m in models]
    w = sharded[0].embeddings.token_embeddings.weight.array
    assert w.addressable_shards[0].data.shape == (97, 8), w.sharding  # hidden 32 over 4 devices
    kw = dict(n_sequences=8, seq_len=24, eot_id=0, temperature=1.0, seed=5, batch_size=4)
    np.testing.assert_array_equal(scoring.token_logprobs(sharded[0], seqs, 4), scoring.token_logprobs(models[0], seqs, 4))
    a, b = sampling.sample_sequences(sharded, **kw), sampling.sample_sequences(models, **kw)
    np.testing.assert_array_equal(a, b)
    try:
        sampling.sample_sequences(sharded, **{**kw, "batch_size": 6})
        raise AssertionError("a batch of 6 on 4 devices was sampled")
    except ValueError as e:
        assert "evaluation.batch_size" in str(e)
print("ok")
"""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    p = subprocess.run([os.sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stderr[-3000:]
    bench = _bench()
    rows = bench.inference_rows(4, ["validation"])
    assert {(r["program"], r["devices"]) for r in rows} == {("score", 4), ("sample", 4)}
    for r in rows:
        assert abs(r["plan"] / r["xla"] - 1) <= bench.TOLERANCE, r


def test_a_batch_that_does_not_split_over_a_jobs_devices_is_refused(tmp_path):
    """Scoring and sampling split each batch over the job's devices: the plan refuses a batch size that
    does not divide, naming evaluation.batch_size and the job's devices."""
    plan, config = _paper_plan(tmp_path, **{"evaluation.batch_size": 6})
    with pytest.raises(ConfigError) as e:
        plan_memory(plan, config, profile_resources(os.path.join(ROOT, "profiles", "tpu")))
    assert "evaluation.batch_size" in str(e.value) and "4 devices of cpt_ensemble" in str(e.value)
