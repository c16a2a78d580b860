"""W&B both ways, without a network: the offline-run reader on runs wandb itself writes, the paper's
naming grammar, the importer's tables and fits on a paper-like project of known laws
(tests/paper_runs.py), its cache, its reports of runs it cannot place, the API path's mapping, and
the whole import -> fits -> figures -> paper through Snakemake. (The training side, a smoke run
logged offline and read back, is in test_workflow.py, beside the other training tests.)"""

import json
import math
import os
import shutil
import time
import types

import numpy as np
import pandas as pd
import paper_runs
import pytest

from infinite_compute.outputs.imported import ImportSettings, import_tables
from infinite_compute.outputs.wandb_files import BLOCK, WandbFileError, offline_run_files, read_run, records
from infinite_compute.outputs.wandb_runs import api_record, api_records, offline_records
from infinite_compute.science.analysis import compute_fits
from infinite_compute.study.paper_names import (
    RunNameError,
    build_name,
    parse_ensemble_eval,
    parse_name,
    token_label,
)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper-like")
    names = paper_runs.write_project(str(root))
    return types.SimpleNamespace(root=str(root), names=names)


@pytest.fixture(scope="module")
def imported(project, tmp_path_factory):
    recs, counts = offline_records([project.root], str(tmp_path_factory.mktemp("cache")))
    tables, report = import_tables(recs, ImportSettings(tags=[paper_runs.TAG], batch_size=64))
    return types.SimpleNamespace(records=recs, counts=counts, report=report,
                                 **{k: pd.DataFrame(v) for k, v in tables.items()})


# --- the paper's names ---


@pytest.mark.parametrize("name,fields", [
    ("300m4k-209Mx16-dclm-cos-lr0.0030-wd1.60-bs64",
     dict(model="300m4k", nominal_params=3e8, context=4096, tokens_label="209M", epochs=16, data="dclm",
          teacher=None, learning_rate=0.003, weight_decay=1.6, tag="-bs64", train_seed=None)),
    ("1_4b4k-1.7Bx4-dclm-cos-lr0.00010-wd0.80-ts3-ds3",
     dict(model="1_4b4k", nominal_params=1.4e9, nominal_tokens=1.7e9, epochs=4, learning_rate=1e-4, train_seed=3,
          data_seed=3, tag="-ts3-ds3")),
    ("300m4k-209Mx16-dclm+sd300m^0.75-cos-lr0.0030-wd0.10",
     dict(data="dclm", teacher="sd300m", teacher_share=0.75, schedule="cosine")),
    ("150m4k-838Mx2-dclm-wsd-lr0.0100-wd0.00", dict(schedule="linear", weight_decay=0.0, nominal_tokens=8.38e8)),
])
def test_paper_names_parse_into_their_fields(name, fields):
    p = parse_name(name)
    for k, v in fields.items():
        assert getattr(p, k) == pytest.approx(v) if isinstance(v, float) else getattr(p, k) == v, k


def test_names_built_as_the_authors_build_them_parse_back():
    assert [token_label(t) for t in (209715200, 419430400, 838860800, 1677721600)] == ["209M", "419M", "838M",
                                                                                          "1.7B"]
    name = build_name("600m4k", 419430400, 8, "dclm", 0.001, 3.2, "-bs64", teacher="ens8", share=0.9)
    assert name == "600m4k-419Mx8-dclm+ens8^0.9-cos-lr0.0010-wd3.20-bs64"
    p = parse_name(name)
    assert (p.model, p.epochs, p.teacher, p.teacher_share, p.learning_rate, p.weight_decay) == \
        ("600m4k", 8, "ens8", 0.9, 0.001, 3.2)
    k, member = parse_ensemble_eval(f"ppl-eval-ensemble-5x-{name}-ts0-ds0")
    assert k == 5 and member.recipe_key == name and member.train_seed == 0
    assert parse_ensemble_eval(name) is None


@pytest.mark.parametrize("name,words", [
    ("not-a-paper-name", "is not {model}"),
    ("300m-209Mx16-dclm-cos-lr0.0030-wd1.60", "model '300m'"),
    ("300m4k-209Mx0.5-dclm-cos-lr0.0030-wd1.60", "fractional epochs"),
])
def test_a_name_outside_the_grammar_says_which_part(name, words):
    with pytest.raises(RunNameError, match=words.replace("{", r"\{")):
        parse_name(name)


# --- the offline-run reader ---


def test_the_reader_returns_what_wandb_logged(project):
    files = offline_run_files([project.root])
    assert len(files) == len(project.names)
    runs = {r["name"]: r for r in map(read_run, files)}
    name = build_name("300m4k", paper_runs.TOKENS, 8, "dclm", paper_runs.LR, 0.8, "-bs64")
    r = runs[name]
    assert r["state"] == "finished" and r["exit_code"] == 0 and r["tags"] == [paper_runs.TAG]
    assert r["project"] == "paper-like" and r["config"] == paper_runs._config(8)
    loss = paper_runs.grid_loss(0.3, 0.8, 8)
    assert r["summary"]["eval/dclm/loss"] == loss  # the exact final value
    assert [h["_step"] for h in r["history"]] == [0, 1, 2, 3]
    assert [h.get("eval/dclm/loss") for h in r["history"]] == [None, None, loss + 0.05, loss]
    assert runs[paper_runs.BAD[2]]["state"] == "failed" and runs[paper_runs.BAD[2]]["exit_code"] == 1


def test_the_reader_joins_records_split_across_blocks(tmp_path):
    """A record larger than a 32 KiB block (FIRST, MIDDLE..., LAST chunks) reads back whole."""
    import wandb

    big = {f"k{i}": "x" * 100 for i in range(1000)}  # ~110 KB of config
    r = wandb.init(project="p", name="big", dir=str(tmp_path), mode="offline", config=big,
                   settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, disable_git=True))
    r.log({"a": 1.0}, step=0)
    r.finish()
    (path,) = offline_run_files([str(tmp_path)])
    # wandb's writer process may still be flushing the last block when finish() returns (seen under load)
    deadline = time.time() + 30
    while os.path.getsize(path) <= 3 * BLOCK and time.time() < deadline:
        time.sleep(0.2)
    assert os.path.getsize(path) > 3 * BLOCK
    run = read_run(path)
    assert {k: run["config"][k] for k in big} == big and run["history"][0]["a"] == 1.0


def test_a_truncated_run_keeps_its_records_and_reads_as_crashed(project, tmp_path):
    src = next(f for f in offline_run_files([project.root]) if "offline-run" in f)
    data = open(src, "rb").read()
    cut = tmp_path / "run-cut.wandb"
    cut.write_bytes(data[: len(data) * 2 // 3])  # a run killed while writing
    run = read_run(str(cut))
    assert run["state"] == "crashed" and run["exit_code"] is None and run["name"] == read_run(src)["name"]


def test_corrupt_or_foreign_files_are_errors_naming_the_file(project, tmp_path):
    src = offline_run_files([project.root])[0]
    data = bytearray(open(src, "rb").read())
    data[200] ^= 0xFF
    bad = tmp_path / "run-bad.wandb"
    bad.write_bytes(bytes(data))
    with pytest.raises(WandbFileError, match=r"run-bad\.wandb: corrupt record at byte \d+"):
        list(records(str(bad)))
    other = tmp_path / "run-other.wandb"
    other.write_bytes(b"PK\x03\x04 not a wandb file")
    with pytest.raises(WandbFileError, match=r"run-other\.wandb: not a W&B run log"):
        read_run(str(other))


# --- the import ---


def test_the_import_places_every_run_and_reports_the_others_with_reasons(project, imported):
    report = {e["name"]: e for e in imported.report}
    assert len(report) == len(project.names)
    reasons = {n: report[n].get("reason", "") for n in paper_runs.BAD}
    assert "is not {model}" in reasons["not-a-paper-name"]
    assert "no value of 'eval/dclm/loss'" in reasons[paper_runs.BAD[1]]
    assert "state 'failed'" in reasons[paper_runs.BAD[2]]
    assert "tagged ['ignore']" in reasons[paper_runs.BAD[3]]
    assert sum(e["placed"] for e in imported.report) == len(project.names) - len(paper_runs.BAD)
    n_grid = len(paper_runs.SIZES) * len(paper_runs.WDS) * len(paper_runs.EPOCHS)
    runs = imported.runs
    assert (runs["role"] == "search").sum() == n_grid
    assert (runs["role"] == "member").sum() == len(paper_runs.SIZES) * len(paper_runs.SEED_SD)
    assert set(runs["token_budget"]) == {paper_runs.TOKENS}  # steps x batch x seq / epochs
    assert set(runs["non_embedding_params"]) == {int(n * 1e9) for n in paper_runs.SIZES.values()}


def test_imported_cells_select_and_certify_the_grids_optimum(imported):
    t = imported.tuning.set_index("cell")
    assert len(t) == 2 * len(paper_runs.SIZES)
    reg = t[t["recipe"] == "regularized"]
    assert (reg["weight_decay"] == 0.8).all() and (reg["epochs"] == 8).all() and reg["certified"].all()
    base = t[t["recipe"] == "baseline"]
    assert (base["weight_decay"] == 0.1).all() and (base["epochs"] == 8).all() and base["certified"].all()
    assert (reg["n_trained"] == 9).all() and (base["n_trained"] == 3).all()
    for r in reg.itertuples():
        n = r.non_embedding_params / 1e9
        assert r.loss == pytest.approx(paper_runs.grid_loss(n, 0.8, 8))
    # no seed variant of a selected recipe was imported (the members are another recipe): no seed noise
    assert (t["reseed_ids"].map(len) == 0).all() and t["loss_mean"].isna().all() and (t["pooled_df"] == 0).all()
    assert (t["selected_seed"] == 0).all()


def test_fits_on_imported_runs_recover_the_laws_they_were_drawn_from(imported):
    fits, _ = compute_fits(imported.tuning, imported.ensembles, data_scaling_models=[], n_bootstrap=20,
                           ci_level=0.95, seed=0)
    f = pd.DataFrame(fits)
    reg = f[(f["fit"] == "params") & (f["recipe"] == "regularized")].iloc[0]
    assert reg["status"] == "ok"
    assert reg["E"] == pytest.approx(paper_runs.E, abs=1e-4) and reg["alpha"] == pytest.approx(paper_runs.ALPHA, abs=1e-3)
    joint = f[f["fit"] == "joint"].iloc[0]
    assert joint["status"] == "ok" and joint["E"] == pytest.approx(paper_runs.ENS_E, abs=2e-3)


def test_imported_ensembles_have_every_k_and_the_members_seed_spread(imported):
    e = imported.ensembles
    assert set(e["recipe"]) == {"imported"} and len(e) == len(paper_runs.SIZES) * len(paper_runs.KS)
    assert set(e["token_budget"]) == {paper_runs.TOKENS} and set(e["epochs"]) == {16}  # the members', not the evals'
    assert set(e["weight_decay"]) == {0.4} and set(e["non_embedding_params"]) == {int(n * 1e9) for n in
                                                                                   paper_runs.SIZES.values()}
    one = e[e["ensemble_size"] == 1]
    assert (one["n_subsets"] == len(paper_runs.SEED_SD)).all()
    np.testing.assert_allclose(one["loss_std"], np.std(paper_runs.SEED_SD, ddof=1), rtol=1e-6)
    big = e[(e["ensemble_size"] == 4) & (e["model"] == "600m4k")].iloc[0]
    assert big["loss"] == pytest.approx(paper_runs.ensemble_loss(0.6, 4))
    assert all(c.startswith("regularized-") for c in e["cell"])


def test_a_second_import_reads_only_what_changed(project, tmp_path):
    cache = str(tmp_path / "cache")
    t0 = time.perf_counter()
    first, c1 = offline_records([project.root], cache)
    t1 = time.perf_counter()
    again, c2 = offline_records([project.root], cache)
    t2 = time.perf_counter()
    assert c1 == {"read": len(project.names), "cached": 0} and c2 == {"read": 0, "cached": len(project.names)}
    assert again == first
    one = offline_run_files([project.root])[0]
    os.utime(one, ns=(time.time_ns(), time.time_ns()))  # a run that was written to since
    _, c3 = offline_records([project.root], cache)
    assert c3 == {"read": 1, "cached": len(project.names) - 1}
    print(f"first import {t1 - t0:.3f} s, second {t2 - t1:.3f} s")


class ServerRun:
    """A run as wandb.apis.public.Run presents it (id, name, path, config, summary, state, heartbeat,
    scan_history), built from an offline record: the server the API talks to cannot run here."""

    def __init__(self, rec):
        self.id, self.name, self.project, self.entity = rec["id"] + "-hash", rec["name"], "paper-like", "someone"
        self.group, self.tags, self.config, self.state = rec["group"], rec["tags"], rec["config"], rec["state"]
        self.summary = {**rec["summary"], "_wandb": {"runtime": 1}}
        self.path = [self.entity, self.project, self.id]
        self._attrs = {"heartbeatAt": "2025-08-01T00:00:00"}
        self._history = rec["history"]
        self.scans = 0

    def scan_history(self, keys):
        self.scans += 1
        return [{k: h[k] for k in keys} for h in self._history if all(k in h for k in keys)]


def test_the_api_path_maps_server_runs_as_the_offline_ones(project, imported, tmp_path):
    server = [ServerRun(r) for r in imported.records]

    class Api:
        def runs(self, path, filters, per_page):
            assert path == "someone/paper-like" and filters == {"state": "finished"}
            return server

    recs, counts = api_records(["someone/paper-like"], ["eval/dclm/loss"], {"state": "finished"},
                               str(tmp_path / "cache"), api=Api())
    assert counts == {"read": len(server), "cached": 0}
    tables, _ = import_tables(recs, ImportSettings(tags=[paper_runs.TAG], batch_size=64))
    t = pd.DataFrame(tables["tuning"]).sort_values("cell")
    pd.testing.assert_frame_equal(t.reset_index(drop=True),
                                  imported.tuning.sort_values("cell").reset_index(drop=True))
    r = api_record(server[0], ["eval/dclm/loss"])
    assert "_wandb" not in r["summary"] and r["source"] == "/".join(server[0].path)
    scans = [s.scans for s in server]
    _, again = api_records(["someone/paper-like"], ["eval/dclm/loss"], {"state": "finished"},
                           str(tmp_path / "cache"), api=Api())
    assert again == {"read": 0, "cached": len(server)} and [s.scans for s in server] == scans  # nothing fetched


def test_a_malformed_record_is_reported_and_the_import_goes_on(imported):
    recs = [dict(r) for r in imported.records]
    broken = next(r for r in recs if r["name"].startswith("150m4k-209Mx8-dclm-cos-lr0.0030-wd0.80"))
    broken["config"] = {"trainer": {"train_batch_size": 64}, "model": {"seq_len": 4096}}
    tables, report = import_tables(recs, ImportSettings(tags=[paper_runs.TAG], batch_size=64))
    entry = next(e for e in report if e["name"] == broken["name"])
    assert not entry["placed"] and "trainer.num_train_steps" in entry["reason"]
    cell = next(c for c in tables["tuning"] if c["cell"] == f"regularized-150m4k-d{paper_runs.TOKENS}")
    assert not cell["certified"] and cell["status"] == "incomplete"  # its optimum's run is gone: not certified


def test_an_ensemble_evaluation_without_its_training_runs_is_reported(imported):
    evals = [r for r in imported.records if r["name"].startswith("ppl-eval-ensemble-")]
    tables, report = import_tables(evals, ImportSettings(tags=[paper_runs.TAG]))
    assert not tables["ensembles"] and not any(e["placed"] for e in report)
    assert all("no imported training run of its members" in e["reason"] for e in report)


def test_this_studys_own_runs_place_by_their_spec_and_cpt_runs_are_reported():
    spec = {"run_id": "n2-d8k-ep4-lr0.03-wd3.2-s1", "model": {"name": "n2", "seq_len": 64}, "token_budget": 8192,
            "epochs": 4, "learning_rate": 0.03, "weight_decay": 3.2, "seed": 1, "batch_size": 32,
            "num_train_steps": 16, "data": "d8192", "teacher": None, "synthetic_share": 0.0}
    rec = {"id": spec["run_id"], "name": spec["run_id"], "state": "finished", "tags": [], "config": {"study": spec},
           "summary": {"eval/loss": 4.5, "parameter_count": 1000, "non_embedding_params": 600}, "history": []}
    cpt = {**rec, "id": "cpt-x", "name": "cpt-x", "config": {"study": {**spec, "init_from": "regularized-n2-d8k"}}}
    tables, report = import_tables([rec, cpt], ImportSettings(eval_key="eval/loss"))
    (row,) = tables["runs"]
    assert (row["run_id"], row["role"], row["loss"], row["non_embedding_params"]) == (spec["run_id"], "member", 4.5, 600)
    entry = next(e for e in report if e["name"] == "cpt-x")
    assert not entry["placed"] and "continued pre-training" in entry["reason"]


def test_the_seeds_of_a_selected_recipe_are_its_cells_reseeds():
    """Runs this study logged: a regularized cell's grid at seed 0, and its optimum again at seeds 1 and 2
    (the reseeds: they give its loss_mean and seed sd); the baseline cell's selection has no other seed."""
    def record(wd, seed, loss, model="n2"):
        rid = f"{model}-d8k-ep4-lr0.03-wd{wd:g}-s{seed}"
        spec = {"run_id": rid, "model": {"name": model, "seq_len": 64}, "token_budget": 8192, "epochs": 4,
                "learning_rate": 0.03, "weight_decay": wd, "seed": seed, "batch_size": 32, "num_train_steps": 16,
                "data": "d8192", "teacher": None, "synthetic_share": 0.0}
        return {"id": rid, "name": rid, "state": "finished", "tags": [], "config": {"study": spec},
                "summary": {"eval/loss": loss, "parameter_count": 1000, "non_embedding_params": 600}, "history": []}

    recs = [record(0.1, 0, 4.9), record(0.8, 0, 4.5), record(3.2, 0, 4.7), record(0.8, 1, 4.6), record(0.8, 2, 4.8),
            record(0.8, 0, 4.4, model="n3"), record(0.8, 3, 4.5, model="n3")]  # another size: another cell
    tables, _ = import_tables(recs, ImportSettings(eval_key="eval/loss"))
    t = {r["cell"]: r for r in tables["tuning"]}
    reg = t["regularized-n2-d8192"]
    assert (reg["run_id"], reg["selected_seed"]) == ("n2-d8k-ep4-lr0.03-wd0.8-s0", 0)
    assert reg["reseed_ids"] == ["n2-d8k-ep4-lr0.03-wd0.8-s1", "n2-d8k-ep4-lr0.03-wd0.8-s2"]
    assert reg["reseed_losses"] == [4.6, 4.8] and reg["loss_mean"] == pytest.approx(4.7)
    assert reg["seed_sd"] == pytest.approx(0.2 / math.sqrt(2)) and reg["winner_bias"] == pytest.approx(-0.2)
    assert reg["pooled_df"] == 1 and reg["pooled_sd"] == pytest.approx(reg["seed_sd"])  # n3's one reseed: no sd
    n3 = t["regularized-n3-d8192"]
    assert n3["reseed_ids"] == ["n3-d8k-ep4-lr0.03-wd0.8-s3"] and math.isnan(n3["seed_sd"])
    assert n3["loss_se"] == pytest.approx(reg["pooled_sd"])  # the pooled sd of its recipe and budget
    base = t["baseline-n2-d8192"]
    assert base["reseed_ids"] == [] and math.isnan(base["loss_mean"]) and base["pooled_df"] == 0


# --- through Snakemake ---


@pytest.mark.workflow
def test_import_to_fits_figures_and_paper_through_snakemake(project, tmp_path):
    from test_workflow import project_copy, smk

    wd = project_copy(tmp_path / "import")
    shutil.copytree(os.path.join(project.root, "wandb"), os.path.join(wd, "results", "wandb", "wandb"))
    t0 = time.time()
    smk(wd, "figures/all", "--configfile", ".test/import.yaml", "--cores", "2")
    took = time.time() - t0
    assert not os.path.exists(os.path.join(wd, "results", "models"))  # nothing was trained
    report = json.load(open(os.path.join(wd, "results", "import", "report.json")))
    assert report["counts"]["read"] == len(project.names) and report["unplaced"] == len(paper_runs.BAD)
    fits = pd.read_parquet(os.path.join(wd, "results", "fits.parquet"))
    reg = fits[(fits["fit"] == "params") & (fits["recipe"] == "regularized")].iloc[0]
    assert reg["E"] == pytest.approx(paper_runs.E, abs=1e-4)
    claims = pd.read_parquet(os.path.join(wd, "results", "claims.parquet")).set_index("claim")
    # the paper's projects run each cell once: with no reseeds the seed noise is not measured, and the
    # claims that weigh a difference against it say so rather than guess
    for c in ("C2", "C3"):
        assert claims.loc[c, "verdict"] == "not determined", claims.loc[c, "reason"]
        assert "no reseeds of the regularized selections" in claims.loc[c, "reason"]
    index = open(os.path.join(wd, "figures", "all")).read()
    assert "tokens.png" in index and "data.png" not in index  # no corpus in an import
    paper = open(os.path.join(wd, "paper", "paper.md")).read()
    assert "Imported from W&B (offline" in paper and f"{reg['E']:.3f}" in paper
    dry = smk(wd, "figures/all", "--configfile", ".test/import.yaml", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    t1 = time.time()
    smk(wd, "figures/all", "--configfile", ".test/import.yaml", "--cores", "2", "--forcerun", "import_runs")
    report = json.load(open(os.path.join(wd, "results", "import", "report.json")))
    assert report["counts"] == {"read": 0, "cached": len(project.names)}
    print(f"import -> paper {took:.1f} s; again with the cache {time.time() - t1:.1f} s")
