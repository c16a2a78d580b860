"""CPT from a Hugging Face model directory (`cpt.base: {hf: <dir>}`), on a tiny random Llama that
transformers writes here with its own tokenizer (tests/hf_models.py): its shape in the plan, levanter
reading its weights, the checks before any job, and the CPT stage run through Snakemake."""

import glob
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, raw_smoke_config
from hf_models import write_tiny_llama

from infinite_compute.study.config import ConfigError
from infinite_compute.study.plan import build_plan

HF_CPT = os.path.join(ROOT, ".test", "hf-cpt.yaml")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return write_tiny_llama(str(tmp_path_factory.mktemp("hf") / "tiny-llama"))


def _hf_config(path: str, **base) -> dict:
    """The smoke config with its CPT stage from the model at `path`, merged as --configfile merges
    .test/hf-cpt.yaml over it (the base cell's keys stay, `hf` wins), validated with defaults."""
    from snakemake.utils import update_config, validate

    cfg = raw_smoke_config()
    with open(HF_CPT) as f:
        update_config(cfg, yaml.safe_load(f))
    cfg["cpt"]["base"].update(hf=path, **base)
    validate(cfg, os.path.join(ROOT, "schemas", "config.schema.yaml"))
    return cfg


def test_cpt_runs_take_the_shape_of_the_hf_base(tiny_llama, smoke_config):
    hf = json.load(open(os.path.join(tiny_llama, "config.json")))
    plan = build_plan(_hf_config(tiny_llama, seq_len=32))
    c = plan.cpt
    assert c.base_cell is None and c.base_hf == os.path.normpath(tiny_llama) and c.base == f"hf:{c.base_hf}"
    assert c.model == "tiny" and all(r.startswith("cpt-tiny-") for r in c.runs)
    for rid in c.runs:
        s = plan.spec(rid)
        assert s.init_from == c.base
        m = s.model
        assert (m.hidden_dim, m.intermediate_dim, m.num_layers, m.num_heads, m.num_kv_heads) == (
            hf["hidden_size"], hf["intermediate_size"], hf["num_hidden_layers"], hf["num_attention_heads"],
            hf["num_key_value_heads"])
        assert m.seq_len == 32 and m.hf_base == c.base_hf
    # the pre-training study is planned as before: a CPT base of its own does not change its runs
    assert set(plan.runs) == set(build_plan(smoke_config).runs)


def _copy_without_eos(model: str, dest: str) -> str:
    """A copy of the base at `model` whose tokenizer defines no end-of-sequence token."""
    from hf_models import math_texts, tiny_tokenizer

    shutil.copytree(model, dest)
    for f in glob.glob(os.path.join(dest, "tokenizer*")) + glob.glob(os.path.join(dest, "special_tokens*")):
        os.remove(f)
    tiny_tokenizer(math_texts(), eos=False).save_pretrained(dest)
    return dest


def test_a_missing_base_still_plans_so_a_dry_run_shows_the_dag(tmp_path):
    """Before the download the plan lists the CPT runs (the check before the first job stops a run)."""
    plan = build_plan(_hf_config(str(tmp_path / "not-downloaded")))
    assert len(plan.cpt.runs) == 6 and plan.spec(plan.cpt.default).model.hidden_dim == 0


def test_the_base_of_another_architecture_is_a_config_error(tiny_llama, tmp_path):
    base = str(tmp_path / "gpt2")
    shutil.copytree(tiny_llama, base)
    cfg = json.load(open(os.path.join(base, "config.json")))
    json.dump({**cfg, "model_type": "gpt2"}, open(os.path.join(base, "config.json"), "w"))
    with pytest.raises(ConfigError, match=r"cpt\.base.*model_type 'gpt2'"):
        build_plan(_hf_config(base))


@pytest.mark.parametrize("remove, words", [
    ("model.safetensors", ["cpt.base.hf", "no weights", "model.safetensors"]),
    ("tokenizer.json", ["cpt.base.hf", "no tokenizer", "tokenizer.json"]),
    ("config.json", ["cpt.base.hf", "no config.json"]),
    (".", ["cpt.base.hf", "is not a directory"]),
])
def test_a_base_with_missing_files_is_named(tiny_llama, tmp_path, remove, words):
    from infinite_compute.data.tokenizer import check_hf_base

    base = str(tmp_path / "base")
    shutil.copytree(tiny_llama, base)
    target = os.path.normpath(os.path.join(base, remove))
    shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
    with pytest.raises(ValueError) as e:
        check_hf_base({"hf": base})
    for w in words:
        assert w in str(e.value)


def test_a_base_whose_tokenizer_has_no_eos_is_named(tiny_llama, tmp_path):
    from infinite_compute.data.tokenizer import check_hf_base

    base = _copy_without_eos(tiny_llama, str(tmp_path / "no-eos"))
    with pytest.raises(ValueError, match=r"cpt\.base\.hf.*no end-of-sequence token"):
        check_hf_base({"hf": base})
    check_hf_base({"hf": tiny_llama})  # the good one passes


def test_levanter_reads_the_hf_weights_to_transformers_log_probs(tiny_llama):
    """What initialize_from_hf loads (rope scaling, tied embeddings, grouped-query attention) is the
    model transformers runs: the same per-token log-probs."""
    import torch
    from transformers import LlamaForCausalLM

    from infinite_compute.model import scoring

    plan = build_plan(_hf_config(tiny_llama))
    s = plan.spec(plan.cpt.default)
    vocab = json.load(open(os.path.join(tiny_llama, "config.json")))["vocab_size"]
    seqs = np.random.default_rng(0).integers(0, vocab, (3, s.model.seq_len)).astype(np.int32)
    with scoring.device_mesh():
        ours = scoring.token_logprobs(scoring.load_model(tiny_llama, s, tiny_llama), seqs, 4)
    ref_model = LlamaForCausalLM.from_pretrained(tiny_llama, local_files_only=True)
    with torch.no_grad():
        logits = ref_model(torch.tensor(seqs, dtype=torch.long)).logits.float()
    targets = torch.tensor(seqs[:, 1:], dtype=torch.long)[..., None]
    ref = torch.log_softmax(logits[:, :-1], -1).gather(-1, targets)[..., 0].numpy()
    assert np.abs(ours - ref).max() < 1e-4


@pytest.mark.workflow
def test_the_cpt_stage_runs_from_a_tiny_hf_llama(tiny_llama, tmp_path):
    """The smoke study's CPT stage from the tiny Llama, through Snakemake: the math corpus in the base's
    tokenizer, every recipe trained from the base's weights in its shape, the table and its L(D)."""
    from test_workflow import project_copy, smk

    wd = project_copy(tmp_path / "study")
    shutil.copytree(tiny_llama, os.path.join(wd, "hf-base"))
    smk(wd, "results/cpt.parquet", "--configfile", ".test/config.yaml", ".test/hf-cpt.yaml", "--cores", "2")
    t = pd.read_parquet(os.path.join(wd, "results", "cpt.parquet"))
    assert set(t["recipe"]) == {"default", "small-batch", "regularized", "ensemble"}
    assert set(t["base"]) == {"hf:hf-base"} and t["base_cell"].isna().all() and set(t["model"]) == {"tiny"}
    assert np.isfinite(t["loss"]).all() and t["accuracy"].between(0, 1).all()
    # cpt.tasks (the smoke config's heldout_math_choice) scored on every model, in the base's tokenizer
    assert t["benchmark_accuracy"].between(0, 1).all()
    assert all(list(json.loads(b)) == ["heldout_math_choice"] for b in t["benchmarks"])
    assert sorted(t.loc[t["recipe"] == "default", "token_budget"]) == [1024, 2048, 4096]
    assert sorted(t.loc[t["recipe"] == "ensemble", "ensemble_size"]) == [1, 2]
    fit = pd.read_parquet(os.path.join(wd, "results", "cpt_fits.parquet"))
    assert list(fit["recipe"]) == ["default"] and list(fit["group"]) == ["math"]
    # nothing of the pre-training study ran: the CPT stage needs only the base
    assert not os.path.exists(os.path.join(wd, "results", "models"))
    # the math tokens are the base tokenizer's: each document starts with its BOS (not the study's)
    from infinite_compute.data.tokenizer import load_tokenizer
    from infinite_compute.data.tokens import read_token_stream

    tok = load_tokenizer(tiny_llama)
    stream, offsets = read_token_stream(os.path.join(wd, "results", "data", "math", "tokens", "train"))
    assert stream.max() < len(tok) and (stream[offsets[:-1][offsets[:-1] < len(stream)]] == tok.bos_token_id).all()
    # each CPT model is the base's architecture, trained on from its weights
    base = json.load(open(os.path.join(tiny_llama, "config.json")))
    for rid in t.loc[t["recipe"] != "ensemble", "model_id"]:
        d = os.path.join(wd, "results", "cpt", "models", rid)
        out = json.load(open(os.path.join(d, "hf", "config.json")))
        for k in ("hidden_size", "num_hidden_layers", "num_key_value_heads", "tie_word_embeddings", "rope_scaling",
                  "rope_theta", "vocab_size"):
            assert out[k] == base[k], (rid, k)
    # trained on from the base's weights: a few steps at lr 0.01 move them less than the init's scale
    # (0.02), so they stay correlated with the base's, which an init of their own would not be
    from safetensors.numpy import load_file

    key = "model.embed_tokens.weight"
    start = load_file(os.path.join(tiny_llama, "model.safetensors"))[key].ravel()
    for rid in t.loc[t["recipe"] == "default", "model_id"]:
        w = load_file(os.path.join(wd, "results", "cpt", "models", rid, "hf", "model.safetensors"))[key].ravel()
        assert np.corrcoef(start, w)[0, 1] > 0.5, rid


@pytest.mark.workflow
def test_a_base_tokenizer_without_eos_fails_before_any_job(tiny_llama, tmp_path):
    from test_workflow import project_copy, smk

    wd = project_copy(tmp_path / "study")
    _copy_without_eos(tiny_llama, os.path.join(wd, "hf-base"))
    p = smk(wd, "results/cpt.parquet", "--configfile", ".test/config.yaml", ".test/hf-cpt.yaml", "--cores", "1",
            check=False)
    assert p.returncode != 0
    assert "cpt.base.hf" in p.stdout + p.stderr and "no end-of-sequence token" in p.stdout + p.stderr
    assert not os.path.exists(os.path.join(wd, "results")), "no job may run with a bad base"
