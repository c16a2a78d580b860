"""The workflow run through Snakemake itself on .test/config.yaml, in a copy of the project."""

import ast
import base64
import glob
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pandas as pd
import pytest
import yaml
from clusters import start_pool, wait_for_checkpoint
from conftest import ROOT, worked_example

pytestmark = pytest.mark.workflow
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


COPY_TAG = "v-test"
# a fixed identity and date, so that the copy's one commit is the same wherever the tests run
COPY_GIT_ENV = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@localhost",
                "GIT_AUTHOR_DATE": "2025-01-01T00:00:00+00:00", "GIT_COMMITTER_NAME": "test",
                "GIT_COMMITTER_EMAIL": "test@localhost", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00+00:00"}


def project_copy(dest) -> str:
    """The project's tracked and new files (not results, not the venv) in `dest`, as a git repository
    of one commit tagged COPY_TAG, so that the code version (`git describe`) is known there."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
        check=True,
    ).stdout.split()
    for f in files:
        if os.path.exists(os.path.join(ROOT, f)):
            os.makedirs(os.path.dirname(os.path.join(dest, f)) or dest, exist_ok=True)
            shutil.copy2(os.path.join(ROOT, f), os.path.join(dest, f))
    env = {**os.environ, **COPY_GIT_ENV}
    git = ["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", "-c", "core.hooksPath=/dev/null"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "--no-verify", "-m", "project copy"],
                 ["tag", COPY_TAG]):
        subprocess.run([*git, *args], cwd=dest, env=env, capture_output=True, text=True, check=True)
    return str(dest)


def copy_code_version(wd) -> str:
    """What results.code_version records in the copy: `git describe --always --dirty --tags` there."""
    return subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=wd, capture_output=True,
                          text=True, check=True).stdout.strip()


def smk(workdir, *args, check=True, timeout=1800):
    p = subprocess.run([*SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{p.stdout[-6000:]}\n{p.stderr[-6000:]}")
    return p


def dry_run_jobs(workdir, *args) -> dict[str, list[str]]:
    """rule -> wildcard strings of the jobs a dry run schedules."""
    out = smk(workdir, "-n", *args).stdout
    jobs: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=(?:localrule|rule) \w+:)", out):
        m = re.match(r"(?:localrule|rule) (\w+):", block)
        if m:
            w = re.search(r"wildcards: (.*)", block)
            jobs.setdefault(m.group(1), []).append(w.group(1).strip() if w else "")
    return jobs


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    wd = project_copy(tmp_path_factory.mktemp("smoke"))
    smk(wd, "figures/all", "--configfile", ".test/config.yaml", "--cores", "2")
    return wd


def table(wd, kind):
    return pd.read_parquet(os.path.join(wd, "results", f"{kind}.parquet"))


def final(wd, cell):
    return json.load(open(os.path.join(wd, "results", "tuning", cell, "final.json")))


def test_searches_select_locally_optimal_runs(smoke):
    tuning = table(smoke, "tuning").set_index("cell")
    runs = table(smoke, "runs").set_index("run_id")
    plan = json.load(open(os.path.join(smoke, "results", "plan.json")))
    assert sorted(tuning.index) == sorted(plan["cells"])
    for cell, row in tuning.iterrows():
        rec = final(smoke, cell)
        trained = {q["run_id"]: q["loss"] for q in rec["points"]}
        # the selected run is the lowest of the cell's runs, with the runs table's loss
        assert row["loss"] == min(trained.values()) == pytest.approx(runs.loc[row["run_id"], "loss"])
        assert row["n_trained"] == len(trained) and row["rounds"] == rec["round"] + 1
        nbrs = json.loads(row["neighbours"])
        existing = [n for n in nbrs if n["run_id"] is not None]
        if row["certified"]:
            assert row["status"] == "certified" and len(row["edges"]) == 0
            # none is lower; a diverged neighbour (NaN: trained, never best) is not lower either
            assert all(n["run_id"] in trained and (n["loss"] >= row["loss"] or n["run_id"] == DIVERGED) for n in nbrs)
            assert all(n["loss"] >= row["loss"] or not math.isfinite(trained[n["run_id"]]) for n in nbrs)
        else:
            assert row["status"] in ("edge", "round_limit")
            if row["status"] == "edge":  # every neighbour that exists was trained; the missing ones are named
                assert all(n["run_id"] in trained for n in existing)
                assert sorted(row["edges"]) == sorted(f"{n['axis']} {n['direction']}" for n in nbrs
                                                      if n["run_id"] is None)
        # a fixed axis has no neighbours: the baseline searches only move epochs here (the div
        # search, of the diverging run, only its learning rate)
        if row["recipe"] == "baseline":
            assert {n["axis"] for n in nbrs} == ({"learning_rate"} if row["search"] == "div" else {"epochs"})
            assert row["weight_decay"] == 0.1
        # one round record per round, round0.json .. round<k>.json, and nothing else on disk
        files = sorted(os.path.basename(f) for f in glob.glob(os.path.join(smoke, "results", "tuning", cell, "round*.json")))
        assert row["rounds"] == len(files) and files == sorted(f"round{i}.json" for i in range(row["rounds"])), cell
    # the regularized search explored past the configured weight decays (0.1, 0.4) when needed
    reg = tuning[tuning["recipe"] == "regularized"]
    assert len(reg) == 3
    cfg = yaml.safe_load(open(os.path.join(smoke, ".test", "config.yaml")))
    (search,) = [s for s in cfg["tuning"]["searches"] if s["recipe"] == "regularized"]
    grid = search["weight_decays"]
    assert sorted(grid) == [0.1, 0.4]
    off_grid = [q for cell in reg.index for q in final(smoke, cell)["points"] if q["point"][1] not in grid]
    assert off_grid, "no regularized search trained a weight decay beyond its grid"
    for cell, row in reg.iterrows():
        assert row["on_grid"] == (row["weight_decay"] in grid), cell
    assert (~reg["on_grid"]).any()  # ...and some selected one there
    assert (reg["rounds"] > 1).any()  # which took a round after the first


def test_reseeds_measure_the_selected_recipes_seed_noise(smoke):
    """Once a search has ended, its selection's recipe trains again at seeds 1..reseeds: the tuning table
    lists them with their losses (the runs table's), their mean, sd, the sd pooled over the sizes of a
    recipe and budget, and the selection's winner's curse (its loss minus the mean)."""
    tuning = table(smoke, "tuning").set_index("cell")
    runs = table(smoke, "runs").set_index("run_id")
    plan = json.load(open(os.path.join(smoke, "results", "plan.json")))
    for cell, row in tuning.iterrows():
        c, best = plan["cells"][cell], final(smoke, cell)["best"]
        assert row["selected_seed"] == c["seed"] == runs.loc[row["run_id"], "seed"]
        expected = [row["run_id"].removesuffix(f"-s{c['seed']}") + f"-s{c['seed'] + k}" for k in range(1, c["reseeds"] + 1)]
        assert list(row["reseed_ids"]) == expected, cell
        for rid, loss in zip(expected, row["reseed_losses"]):
            r = runs.loc[rid]
            assert (r["learning_rate"], r["weight_decay"], r["epochs"]) == (best["learning_rate"], best["weight_decay"],
                                                                             best["epochs"])
            assert loss == pytest.approx(r["loss"]) and r["role"] in ("reseed", "member")
        if expected:
            assert row["loss_mean"] == pytest.approx(np.mean(row["reseed_losses"]))
            assert row["seed_sd"] == pytest.approx(np.std(row["reseed_losses"], ddof=1))
            assert row["winner_bias"] == pytest.approx(row["loss"] - row["loss_mean"])
        else:  # the data and div searches have none
            assert row["search"] in ("data", "div") and math.isnan(row["loss_mean"]) and row["pooled_df"] == 0
    # the main budget's baseline and regularized sizes pool their seed sd: 3 cells x (2 - 1) degrees of freedom
    for recipe in ("baseline", "regularized"):
        main = tuning[(tuning["recipe"] == recipe) & (tuning["token_budget"] == 8192)]
        assert len(main) == 3 and (main["pooled_df"] == 3).all() and np.isfinite(main["pooled_sd"]).all()
        assert main["pooled_sd"].iloc[0] == pytest.approx(np.sqrt(np.mean(main["seed_sd"] ** 2)))
        np.testing.assert_allclose(main["loss_se"], main["pooled_sd"] / np.sqrt(2))
    # a reseed that is a member of an ensemble is that member, trained once (t1's baseline at 2 epochs is t1-ens)
    reseeds = {r for ids in tuning["reseed_ids"] for r in ids}
    assert set(runs.index[runs["role"] == "reseed"]) <= reseeds
    shared = reseeds & {m for e in runs["ensembles"] for m in e} & set(runs.index)
    assert all(runs.loc[r, "role"] == "member" for r in shared)
    # the tuning cell's provenance lists them beside the runs its search trained
    cell = "base-t2-d8k"
    answer = json.loads(provenance(smoke, "tuning", cell, "--json").stdout)
    searched = {q["run_id"] for q in final(smoke, cell)["points"]}
    _check_provenance_runs(smoke, answer, searched | set(tuning.loc[cell, "reseed_ids"]))
    assert [r["via"] for r in answer["runs"] if r["run_id"] in tuning.loc[cell, "reseed_ids"]] == \
        [[f"tuning {cell} > reseed"]] * 2


def test_the_claims_scorecard_has_a_verdict_for_every_claim(smoke):
    """results/claims.parquet: one row per claim of the paper, each with a verdict, its reason and the
    quantities it was judged on; the paper opens with it."""
    from infinite_compute.science.claims import (
        CLAIMS,
        NOT_DETERMINED,
        NOT_REPRODUCED,
        REPRODUCED,
    )

    c = table(smoke, "claims")
    assert list(c["claim"]) == [k for k in CLAIMS if k.startswith("C")]  # the floor checks only on a synthetic corpus
    assert set(c["verdict"]) <= {REPRODUCED, NOT_REPRODUCED, NOT_DETERMINED} and c["reason"].str.len().min() > 0
    assert all(isinstance(json.loads(q), dict) for q in c["quantities"])
    paper = open(os.path.join(smoke, "paper", "paper.md")).read()
    assert paper.index("## Claims scorecard") < paper.index("## Setup")
    for r in c.itertuples():
        assert f"| {r.claim} | {r.statement} | **{r.verdict}** | {r.reason} |" in paper


def test_every_stage_produced_its_outputs(smoke):
    for f in ["figures/all", "paper/paper.md", "paper/paper.html", "results/fits.json", "results/data/corpus/manifest.json"]:
        assert os.path.getsize(os.path.join(smoke, f)) > 0, f
    for name in open(os.path.join(smoke, "figures", "all")).read().split("\n"):
        if name:
            assert os.path.exists(os.path.join(smoke, name.split()[1]))
    model = os.path.join(smoke, "results", "models", "t1-d8k-ep2-lr0.01-wd0.1-s0")
    assert sorted(os.listdir(model)) == ["hf", "metrics.json", "spec.json"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(os.path.join(model, "hf")))
    # finished runs leave no resumable checkpoint behind
    assert not os.listdir(os.path.join(smoke, "results", "checkpoints"))


def test_runs_table_is_real_training(smoke):
    runs = table(smoke, "runs")
    plan = json.load(open(os.path.join(smoke, "results", "plan.json")))
    searched = {q["run_id"] for c in plan["cells"] for q in final(smoke, c)["points"]}
    members = {m for e in plan["ensembles"]
               for m in json.load(open(os.path.join(smoke, "results", "ensembles", f"{e}.json")))["members"]}
    reseeds = {r for ids in table(smoke, "tuning")["reseed_ids"] for r in ids}
    assert reseeds and sorted(runs["run_id"]) == sorted(set(plan["runs"]) | searched | members | reseeds)
    vocab = 512
    assert runs.loc[runs["diverged"], "run_id"].tolist() == [DIVERGED]  # the smoke config's diverging sweep
    runs = runs[~runs["diverged"]]
    assert (runs["loss"] < math.log(vocab)).all(), "every model beats the uniform distribution"
    # our evaluation of the exported weights matches levanter's own final eval on the same stream;
    # measured gaps are ~2e-3 of either sign (levanter masks a few positions differently), while
    # wrongly loaded weights would be off by tenths
    np.testing.assert_allclose(runs["loss"], runs["train_eval_loss"], atol=1e-2)
    # levanter's parameter count = our non-embedding count + embedding + LM head
    from infinite_compute.study.specs import ModelShape

    for _, r in runs.iterrows():
        shape = ModelShape(**json.load(open(os.path.join(smoke, "results", "models", r["run_id"], "spec.json")))["model"])
        assert r["parameter_count"] == shape.total_params(vocab)
    assert set(runs["code_version"]) and runs["config_hash"].nunique() == 1
    assert json.loads(runs["package_versions"].iloc[0])["levanter"] == "1.2.dev1644"


DIVERGED = "t1-d4k-ep1-lr10000-wd0.1-s0"


RESULT_TABLES = ("runs", "tuning", "ensembles", "distillation", "benchmarks", "fits", "efficiency", "cpt", "cpt_fits")


def test_every_table_row_carries_its_provenance(smoke):
    """code_version is `git describe` of the code that ran (the copy is a git repository, tagged),
    config_hash the plan's."""
    plan = json.load(open(os.path.join(smoke, "results", "plan.json")))
    version = copy_code_version(smoke)
    assert version == COPY_TAG  # the copy is clean and at its tag: what results.code_version ran
    from infinite_compute.outputs.results import code_version

    assert code_version.__wrapped__(smoke) == version
    for kind in RESULT_TABLES:
        t = table(smoke, kind)
        assert len(t), kind
        assert (t["code_version"] == version).all(), (kind, set(t["code_version"]))
        assert (t["config_hash"] == plan["config_hash"]).all(), kind
        assert (t["package_versions"] == t["package_versions"].iloc[0]).all(), kind


def provenance(wd, *selector, check=True) -> subprocess.CompletedProcess:
    """`python -m infinite_compute provenance <selector>` in the study's folder, as a reader runs it."""
    p = subprocess.run([sys.executable, "-m", "infinite_compute", "provenance", *selector], cwd=wd,
                       capture_output=True, text=True, env=_job_env(wd), timeout=300)
    if check:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def _check_provenance_runs(wd, answer, expected):
    """The listed runs are exactly `expected`, each with the spec hash of its spec.json, the config
    hash of the plan and the code version of the copy."""
    from infinite_compute.study.specs import spec_hash

    assert sorted(r["run_id"] for r in answer["runs"]) == sorted(expected)
    plan = json.load(open(os.path.join(wd, "results", "plan.json")))
    for r in answer["runs"]:
        spec = json.load(open(os.path.join(wd, "results", "models", r["run_id"], "spec.json")))
        assert r["spec_hash"] == spec_hash(spec)
        assert (r["config_hash"], r["code_version"]) == (plan["config_hash"], COPY_TAG)


def test_provenance_of_a_fits_asymptote_lists_the_runs_its_points_name(smoke):
    """The regularized L(N) fit: its points are the reseed means of the runs its `point_ids` name (the
    selected run of each size, which chose the recipe), and those runs and their reseeds are the runs
    listed, in the text and in --json."""
    fits = table(smoke, "fits")
    rows = fits[(fits["fit"] == "params") & (fits["recipe"] == "regularized")]
    assert len(rows)
    selected = {r for ids in rows["point_ids"] for r in ids}
    tuning = table(smoke, "tuning")
    assert selected <= set(tuning["run_id"])  # they are selections of the searches
    reseeds = {r for ids in tuning[tuning["run_id"].isin(selected)]["reseed_ids"] for r in ids}
    assert len(reseeds) == 2 * len(selected)  # the smoke's reg search: 2 reseeds each
    expected = selected | reseeds
    answer = json.loads(provenance(smoke, "fits", "kind=params", "recipe=regularized", "--json").stdout)
    _check_provenance_runs(smoke, answer, expected)
    assert sorted(r["row"] for r in answer["rows"]) == sorted(f"params regularized {g}" for g in rows["group"])
    text = provenance(smoke, "fits", "kind=params", "recipe=regularized").stdout
    runs = table(smoke, "runs").set_index("run_id")
    for rid in expected:
        line = next(ln for ln in text.splitlines() if ln.startswith(rid + " "))
        assert runs.loc[rid, "spec_hash"] in line and COPY_TAG in line


def test_provenance_of_an_ensemble_row_lists_its_members(smoke):
    ens = table(smoke, "ensembles")
    row = ens[ens["ensemble_size"] > 1].iloc[0]
    name, k = row["ensemble"], int(row["ensemble_size"])
    answer = json.loads(provenance(smoke, "ensembles", name, f"K={k}", "--json").stdout)
    _check_provenance_runs(smoke, answer, list(row["member_ids"]))
    assert len(answer["rows"]) == 1 and len(answer["runs"]) == k


def test_provenance_that_names_nothing_says_what_exists(smoke, tmp_path):
    p = provenance(smoke, "fits", "kind=params", "recipe=regularised", check=False)
    recipes = sorted(set(table(smoke, "fits")["recipe"]))
    assert p.returncode != 0 and "recipe is one of" in p.stderr and "regularized" in p.stderr
    assert all(r in p.stderr for r in recipes if r in ("baseline", "regularized"))
    shutil.copy(os.path.join(smoke, "results", "runs.parquet"), tmp_path / "runs.parquet")
    p = provenance(smoke, "fits", "kind=params", "--results", str(tmp_path), check=False)
    assert p.returncode != 0 and "no fits table" in p.stderr and "the tables here: runs" in p.stderr


def test_a_diverged_run_is_recorded_and_excluded_from_fits_with_a_note(smoke):
    """lr 1e4 makes the loss NaN: the job still succeeds, runs.parquet marks the run diverged, the
    fits never see it, the paper lists it, and the rest of the study is complete."""
    from infinite_compute.science.analysis import usable

    runs = table(smoke, "runs").set_index("run_id")
    assert runs.loc[DIVERGED, "diverged"] and not np.isfinite(runs.loc[DIVERGED, "loss"])
    metrics = json.load(open(os.path.join(smoke, "results", "models", DIVERGED, "metrics.json")))
    assert metrics["diverged"] and not math.isfinite(metrics["final_eval_loss"])
    assert DIVERGED not in set(usable(runs.reset_index())["run_id"])
    paper = open(os.path.join(smoke, "paper", "paper.md")).read()
    assert f"Diverged runs (excluded from fits): `{DIVERGED}`" in paper
    assert np.isfinite(table(smoke, "fits")["E"]).any()
    # it is also a point of a search cell that feeds a fit: the baseline cell div-t1-d4k trained it
    # (a neighbour of its start), and the L(D) fit's point at 4k is chosen among that cell's and
    # data-t1-d4k's runs. It is trained but never selected, and no fit has it among its points.
    assert set(runs.loc[DIVERGED, "searches"]) == {"div-t1-d4k"} and list(runs.loc[DIVERGED, "sweeps"]) == ["diverge"]
    div = final(smoke, "div-t1-d4k")
    (point,) = [q for q in div["points"] if q["run_id"] == DIVERGED]
    assert point["loss"] is None or not math.isfinite(point["loss"])
    assert div["best"]["run_id"] != DIVERGED and math.isfinite(div["best"]["loss"])
    tuning = table(smoke, "tuning").set_index("cell")
    fits = table(smoke, "fits")
    assert not any(DIVERGED in ids for ids in fits["point_ids"])
    (law,) = fits[fits["fit"] == "data"].to_dict("records")
    assert law["status"] == "ok" and np.isfinite([law["A"], law["alpha"], law["E"]]).all()
    assert np.isfinite(law["y"]).all() and 4096 in law["x"]
    # the L(D) point at 4k is the lowest finite loss of the baseline t1 cells at 4k, the div cell included
    at_4k = [c for c, r in tuning.iterrows() if r["recipe"] == "baseline" and r["model"] == "t1" and r["token_budget"] == 4096]
    assert "div-t1-d4k" in at_4k and len(at_4k) == 2
    candidates = {q["run_id"]: q["loss"] for c in at_4k for q in final(smoke, c)["points"]
                  if q["loss"] is not None and math.isfinite(q["loss"])}
    i = list(law["x"]).index(4096)
    assert law["point_ids"][i] == min(candidates, key=candidates.get)
    assert law["y"][i] == pytest.approx(candidates[law["point_ids"][i]])
    assert DIVERGED not in candidates


def test_ensemble_table_is_log_mean_exp_of_members(smoke):
    ens = table(smoke, "ensembles")
    ens = ens[ens["ensemble"] == "t1-ens"].sort_values("ensemble_size")
    runs = table(smoke, "runs").set_index("run_id")
    assert list(ens["ensemble_size"]) == [1, 2, 3]
    # K = 1 is the first member itself
    assert ens.iloc[0]["loss"] == pytest.approx(runs.loc[ens.iloc[0]["member_ids"][0], "loss"], abs=1e-5)
    members = [np.load(os.path.join(smoke, "results", "evals", m, "logprobs.npz"))["validation"]
               for m in ens.iloc[-1]["member_ids"]]
    lp = np.stack(members).astype(np.float64)
    expected = -np.mean(np.log(np.mean(np.exp(lp), axis=0)))
    assert ens.iloc[-1]["loss"] == pytest.approx(expected, abs=1e-6)
    # an ensemble is never worse than its average member (Jensen)
    assert ens.iloc[-1]["loss"] <= runs.loc[list(ens.iloc[-1]["member_ids"]), "loss"].mean()


def test_fits_and_distillation_tables(smoke):
    fits = table(smoke, "fits")
    assert set(fits["fit"]) == {"params", "ensemble", "joint", "data"}
    ok = fits[fits["status"] == "ok"]
    assert len(ok) >= 3 and np.isfinite(ok[["A", "alpha", "E"]].to_numpy()).all()
    dist = table(smoke, "distillation")
    assert len(dist) == 3 and np.isfinite(dist["student_loss"]).all()  # fixed ensemble, search ensemble, self
    bench = table(smoke, "benchmarks")
    assert ((bench["acc"] >= 0) & (bench["acc"] <= 1)).all() and (bench["n_items"] == 40).all()
    paper = open(os.path.join(smoke, "paper", "paper.md")).read()
    best = table(smoke, "runs")["loss"].min()
    assert f"{best:.3f}" in paper


def _same(a, b) -> bool:
    """Equal, with nan equal to nan (and None to nan: a JSON null is a nan in Parquet)."""
    if isinstance(a, (list, tuple, np.ndarray)) or isinstance(b, (list, tuple, np.ndarray)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    missing = [v is None or (isinstance(v, float) and math.isnan(v)) for v in (a, b)]
    if any(missing):
        return all(missing)
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12, abs=1e-300)
    return a == b


def fitted_losses(cells: pd.DataFrame) -> np.ndarray:
    """The losses a fit takes from selected cells: their means over reseeds where every cell has
    them, else the selected runs' own losses."""
    mean = cells["loss_mean"].to_numpy(float)
    return mean if np.isfinite(mean).all() else cells["loss"].to_numpy(float)


def _law(row):
    """A fitted law as infinite_compute.science.fits' inverse functions read it (A, alpha, E)."""
    return types.SimpleNamespace(A=row["A"], alpha=row["alpha"], E=row["E"])


def test_fraction_of_gain_kept_is_recomputed_from_the_losses(smoke):
    """(single - student) / (single - teacher) per distillation, from runs.parquet and
    ensembles.parquet; nan when the teacher gains nothing over a single model (self-distillation)."""
    dist = table(smoke, "distillation")
    runs = table(smoke, "runs").set_index("run_id")
    ens = table(smoke, "ensembles")
    tuning = table(smoke, "tuning").set_index("cell")
    plan = json.load(open(os.path.join(smoke, "results", "plan.json")))
    assert len(dist) == len(plan["distillations"]) == 3
    for _, d in dist.iterrows():
        if d["teacher_kind"] == "ensemble":
            g = ens[ens["ensemble"] == d["teacher"]].sort_values("ensemble_size")
            teacher, single = g.iloc[-1]["loss"], g.iloc[0]["loss_mean"]  # all members; the mean member
            assert d["teacher_size"] == g.iloc[-1]["ensemble_size"]
        else:
            cell = plan["distillations"][d["distillation"]]["teacher_cell"]
            assert d["teacher"] == tuning.loc[cell, "run_id"]
            teacher = single = runs.loc[d["teacher"], "loss"]
        student = runs.loc[d["student_id"], "loss"]
        assert (d["teacher_loss"], d["single_model_loss"], d["student_loss"]) == pytest.approx((teacher, single, student))
        gain = single - teacher
        if gain > 0:
            assert d["fraction_of_gain_kept"] == pytest.approx((single - student) / gain)
        else:
            assert math.isnan(d["fraction_of_gain_kept"]), d["distillation"]
    assert dist["fraction_of_gain_kept"].notna().sum() == 2  # the two ensemble teachers gain; self does not


def test_fits_json_efficiency_and_cpt_fits_agree_with_the_tables(smoke):
    from infinite_compute.science.fits import data_efficiency, inverse_power_law

    fits = table(smoke, "fits")
    eff = table(smoke, "efficiency")
    tuning = table(smoke, "tuning")
    ens = table(smoke, "ensembles")
    # fits.json: the same rows as fits.parquet and efficiency.parquet (without the provenance columns)
    js = json.load(open(os.path.join(smoke, "results", "fits.json")))
    for rows, t in ((js["fits"], fits), (js["efficiency"], eff)):
        assert len(rows) == len(t) > 0
        for row, (_, r) in zip(rows, t.iterrows()):
            assert set(row) == set(t.columns) - {"config_hash", "code_version", "package_versions"}
            for k, v in row.items():
                assert _same(v, r[k]), (k, v, r[k])
    # every multiplier is read off the L(D) fit that fits.parquet holds, at a budget of its points
    (law,) = fits[fits["fit"] == "data"].to_dict("records")
    assert law["status"] == "ok"
    base_at = dict(zip(law["x"], law["y"]))
    asymptotes = {"asymptote E (N -> inf)": ("params", "regularized"), "joint asymptote (N, K -> inf)": ("joint", None)}
    for _, e in eff.iterrows():
        assert e["baseline_loss"] == pytest.approx(base_at[e["token_budget"]])
        assert e["effective_tokens"] == pytest.approx(inverse_power_law(_law(law), e["loss"]))
        assert e["data_efficiency"] == pytest.approx(data_efficiency(_law(law), e["loss"], e["baseline_loss"]))
        label = e["label"]
        if label.endswith("asymptote (K -> inf)"):  # a fixed ensemble's K -> inf, from its ok L(K) fit
            (f,) = fits[(fits["fit"] == "ensemble") & (fits["group"] == label.split()[0])].to_dict("records")
            assert f["status"] == "ok" and f["recipe"] == "fixed" and e["loss"] == f["E"]
        elif label in asymptotes:
            fit, recipe = asymptotes[label]
            f = fits[(fits["fit"] == fit) & (fits["recipe"] == (recipe or e["recipe"]))
                     & (fits["token_budget"] == e["token_budget"]) & (fits["status"] == "ok")]
            assert len(f) == 1 and e["loss"] == f.iloc[0]["E"], label
        elif " (K=" in label:  # an ensemble's largest K
            g = ens[ens["ensemble"] == label.split()[0]]
            assert e["loss"] == g.loc[g["ensemble_size"].idxmax(), "loss"]
        else:  # a recipe's best selected cell at that budget, by its mean over reseeds
            same = tuning[(tuning["recipe"] == e["recipe"]) & (tuning["token_budget"] == e["token_budget"])]
            losses = dict(zip(same["run_id"], fitted_losses(same)))
            assert label in losses and e["loss"] == losses[label] == min(losses.values())
    # an asymptote gets a multiplier exactly when its fit is ok
    ok_asymptotes = fits[(fits["status"] == "ok") & (fits["fit"].isin(["params", "joint"])
                                                     | ((fits["fit"] == "ensemble") & (fits["recipe"] == "fixed")))]
    assert len(ok_asymptotes) == eff["label"].str.contains("asymptote").sum()

    # cpt_fits.parquet is the math L(D) on the default recipe's rows; cpt.parquet's multipliers invert it
    cpt = table(smoke, "cpt")
    (cf,) = table(smoke, "cpt_fits").to_dict("records")
    default = cpt[cpt["recipe"] == "default"].sort_values("token_budget")
    assert (cf["fit"], cf["recipe"], cf["status"]) == ("cpt-data", "default", "ok")
    assert list(cf["x"]) == list(default["token_budget"]) and np.allclose(cf["y"], default["loss"])
    assert list(cf["point_ids"]) == list(default["model_id"])
    base = dict(zip(default["token_budget"], default["loss"]))
    for _, r in cpt.iterrows():
        assert r["effective_tokens"] == pytest.approx(inverse_power_law(_law(cf), r["loss"]))
        assert r["data_efficiency"] == pytest.approx(data_efficiency(_law(cf), r["loss"], base[r["token_budget"]]))
        if r["recipe"] == "default":
            assert r["data_efficiency"] == pytest.approx(1.0)


def test_the_papers_numbers_come_from_the_tables(smoke):
    """Sentences and table rows of the rendered paper, each with its number recomputed from the
    tables it comes from and formatted with paper.py's own helpers."""
    from infinite_compute.outputs.paper import format_ci, format_num, format_sig

    paper = open(os.path.join(smoke, "paper", "paper.md")).read()
    lines = paper.splitlines()
    flat = " ".join(paper.split())
    runs = table(smoke, "runs").set_index("run_id")
    fits = table(smoke, "fits")
    plan = json.load(open(os.path.join(smoke, "results", "plan.json")))
    assert f"config `{plan['config_hash']}`, code `{copy_code_version(smoke)}`" in paper
    # every table has rows, or a sentence says why it has none (never a header alone)
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            assert i + 1 < len(lines) and lines[i + 1].startswith("| "), f"an empty table under {lines[i - 1]}"
    assert "six neighbours" not in paper  # the searches tune 2 or 3 axes: 4 or 6 neighbours

    def pct(x):
        return "n/a" if not np.isfinite(x) else f"{100 * x:.0f}%"

    # the regularized recipe's L(N) fit: its row of the power-law table
    (f,) = fits[(fits["fit"] == "params") & (fits["recipe"] == "regularized")].to_dict("records")
    assert (
        f"| params | regularized | D=8192 | 3 | {format_sig(f['A'])} ± {format_sig(f['A_stderr'])} [{format_sig(f['A_ci_low'])}, "
        f"{format_sig(f['A_ci_high'])}] | {format_num(f['alpha'])} ± {format_num(f['alpha_stderr'])} [{format_ci(f['alpha_ci_low'])}, "
        f"{format_ci(f['alpha_ci_high'])}] | {format_num(f['E'])} ± {format_num(f['E_stderr'])} [{format_ci(f['E_ci_low'])}, "
        f"{format_ci(f['E_ci_high'])}] | {format_num(f['gof_p'])} | {f['status']} |"
    ) in lines
    # its points are the regularized selections, whose losses are the runs' own
    sel = table(smoke, "tuning").set_index("cell")
    reg = sel[sel["recipe"] == "regularized"].sort_values("non_embedding_params")
    assert list(f["point_ids"]) == list(reg["run_id"])
    assert np.allclose(f["y"], fitted_losses(reg))
    assert (reg["reseed_ids"].map(len) == 2).all()  # .test's reseeds: each point is the mean of its
    for (_, r), y in zip(reg.iterrows(), f["y"]):  # reseeds' runs, never the (biased low) selected run
        assert y == pytest.approx(runs.loc[list(r["reseed_ids"]), "loss"].mean())

    # the tuned weight decay as a multiple of the default, from tuning.parquet and the config
    from test_report import study_config

    base_wd = study_config(smoke, ".test/config.yaml")["training"]["baseline_weight_decay"]
    ratios = "; ".join(f"{r['model']} (D={r['token_budget']}) {r['weight_decay']} = {format_num(r['weight_decay'] / base_wd, 1)}x"
                       for _, r in reg.iterrows())
    assert f"Tuned weight decay against the default ({base_wd}): {ratios}." in flat
    assert "t1 (D=8192) 1.6 = 16.0x" in ratios  # the smoke's regularized selections: past the grid's 0.4

    # an ensemble's loss: the row of its largest K, whose loss is the log-mean-exp of its members
    ens = table(smoke, "ensembles")
    e = ens[ens["ensemble"] == "reg-ens-t3-d8k"].sort_values("ensemble_size").iloc[-1]
    lp = np.stack([np.load(os.path.join(smoke, "results", "evals", m, "logprobs.npz"))["validation"]
                   for m in e["member_ids"]]).astype(np.float64)
    loss = -np.mean(np.log(np.mean(np.exp(lp), axis=0)))
    assert e["loss"] == pytest.approx(loss, abs=1e-6)
    assert (f"| reg-ens-t3-d8k | reg-ens | t3 | 8192 | {e['epochs']} | {e['learning_rate']} | {e['weight_decay']} | "
            f"{e['ensemble_size']} | {format_num(loss)} | {format_num(e['loss_mean'])} | {format_num(e['loss_std'], 4)} |") in lines

    # the joint asymptote against the regularized one: compared only where both fits are ok
    (j,) = fits[fits["fit"] == "joint"].to_dict("records")
    head = f"Joint asymptote of `{j['recipe']}` at D={int(j['token_budget'])} (N, K -> inf):"
    if j["status"] == "ok" and f["status"] == "ok":
        word = f"lower by {format_num(f['E'] - j['E'])}" if j["E"] < f["E"] else "not lower"
        assert f"{head} **{format_num(j['E'])}** [{format_ci(j['E_ci_low'])}, {format_ci(j['E_ci_high'])}], against the regularized " \
               f"single models' N -> inf asymptote {format_num(f['E'])} [{format_ci(f['E_ci_low'])}, {format_ci(f['E_ci_high'])}]: " \
               f"the ensembles' asymptote is {word}." in flat
    elif j["status"] == "ok":
        assert f"{head} **{format_num(j['E'])}** [{format_ci(j['E_ci_low'])}, {format_ci(j['E_ci_high'])}]; the regularized single " \
               f"models' N -> inf asymptote is not determined ({f['status']})." in flat
    else:
        assert f"{head} not determined ({j['status']})." in flat
        assert "lower by" not in flat
    # the token-scaling table: one row per ok asymptote fit (the smoke study has none: its L(N) is
    # flat and its joint fit has no asymptote, so the table is empty, as the paper says nothing there)
    section = paper[paper.index("### Token scaling"):paper.index("## Distillation")]
    ts_rows = [r for r in section.splitlines() if r.startswith("| ") and not r.startswith(("| recipe", "|---"))]
    ok = fits[(fits["status"] == "ok") & fits["fit"].isin(["params", "joint"])]
    assert len(ts_rows) == len(ok)
    eff = table(smoke, "efficiency")
    for _, o in ok.iterrows():
        lim = "N -> inf" if o["fit"] == "params" else "N, K -> inf"
        assert any(r.startswith(f"| {o['recipe']} | {lim} | {int(o['token_budget'])} | {o['n_points']} | {format_num(o['E'])} ")
                   for r in ts_rows)

    # the efficiency table: every row of efficiency.parquet
    for _, x in eff.iterrows():
        assert (f"| {x['recipe']} | `{x['label']}` | {x['token_budget']} | {format_num(x['loss'])} | {format_num(x['baseline_loss'])} | "
                f"{format_num(x['effective_tokens'], 0)} | {format_num(x['data_efficiency'], 2)}x | "
                f"[{format_num(x['data_efficiency_ci_low'], 2)}, {format_num(x['data_efficiency_ci_high'], 2)}] |") in lines

    # the distillation bullets: losses from runs.parquet and ensembles.parquet, the kept fraction recomputed
    dist = table(smoke, "distillation")
    for _, d in dist.iterrows():
        student = runs.loc[d["student_id"], "loss"]
        gain = d["single_model_loss"] - d["teacher_loss"]
        kept = (d["single_model_loss"] - student) / gain if gain > 0 else float("nan")
        assert (f"**{d['distillation']}**: teacher {d['teacher_kind']} `{d['teacher']}` ({d['teacher_size']} model(s)) at "
                f"loss {format_num(d['teacher_loss'])}; a single model of its recipe {format_num(d['single_model_loss'])}; the student "
                f"(`{d['student_id']}`, {pct(d['synthetic_share'])} synthetic tokens) reaches {format_num(student)}, keeping "
                f"{pct(kept)} of the ensemble's gain.") in flat

    # CPT: the math L(D) sentence from cpt_fits.parquet and every row of cpt.parquet
    (cf,) = table(smoke, "cpt_fits").to_dict("records")
    assert (f"({cf['status']}: A = {format_sig(cf['A'])}, alpha = {format_num(cf['alpha'])} [{format_ci(cf['alpha_ci_low'])}, "
            f"{format_ci(cf['alpha_ci_high'])}], E = {format_num(cf['E'])})") in flat
    cpt = table(smoke, "cpt")
    for _, r in cpt.iterrows():
        name = r["recipe"] + (" (selected)" if r["selected"] and r["recipe"] == "regularized" else "")
        assert (f"| {name} | `{r['model_id']}` | {r['token_budget']} | {r['epochs']} | {format_sig(r['weight_decay'])} | "
                f"{r['batch_size']} | {r['ensemble_size']} | {format_num(r['loss'])} | {format_num(r['accuracy'])} ± "
                f"{format_num(r['accuracy_stderr'])} | {format_num(r['benchmark_accuracy'])} | "
                f"{format_num(r['data_efficiency'], 2)}x [{format_num(r['data_efficiency_ci_low'], 2)}, "
                f"{format_num(r['data_efficiency_ci_high'], 2)}] |") in lines, r["model_id"]


def test_the_html_paper_shows_every_figure_in_a_browser_at_laptop_size(smoke, tmp_path):
    """paper/paper.html opened by headless chromium in a 1366x768 window: it loads, every figure the
    DAG made is shown (decoded, inside the page), its tables scroll inside their own boxes, and
    nothing overflows the page sideways. Skipped, naming what is missing, where no browser is."""
    from browser import LAPTOP, open_page

    from infinite_compute.outputs.paper import png_size

    figures = [line.split()[1] for line in open(os.path.join(smoke, "figures", "all")).read().splitlines()]
    page = os.path.join(smoke, "paper", "paper.html")
    started = time.monotonic()
    m, screenshot = open_page(page, str(tmp_path))
    print(f"browser check: {time.monotonic() - started:.1f} s, {m}")
    assert m["title"].startswith("Pre-training under infinite compute")
    assert m["inner_width"] == LAPTOP[0]
    assert m["images"] == len(figures) > 0 and m["images_loaded"] == m["images"] and m["images_inside"] == m["images"]
    assert m["scroll_width"] <= m["inner_width"], m  # nothing overflows horizontally
    assert m["tables"] == m["tables_in_a_scroll_box_inside_the_page"] > 0, m
    assert m["smallest_cell_font_px"] >= 12, m  # readable at 100% zoom
    assert png_size(open(screenshot, "rb").read(), screenshot) == LAPTOP
    # the page stands alone: every figure is in it (its bytes), nothing is fetched
    text = open(page).read()
    for f in figures:
        assert base64.b64encode(open(os.path.join(smoke, f), "rb").read()).decode() in text, f
    assert not re.search(r"""(src|href)="(?!data:|#)""", text)


def test_benchmarks_through_lm_eval_for_runs_and_ensembles(smoke):
    bench = table(smoke, "benchmarks")
    chance = bench.groupby("task")["chance"].unique().to_dict()
    assert {t: list(c) for t, c in chance.items()} == {"heldout_next_line": [0.25], "heldout_minimal_pairs": [0.5]}
    ens = table(smoke, "ensembles")
    for task, per_task in bench.groupby("task"):
        by_id = per_task.set_index("model_id")
        for name, g in ens.groupby("ensemble"):
            first = g.loc[g["ensemble_size"] == 1, "member_ids"].iloc[0][0]
            # a one-member mixture is its member: the same choices, so the same accuracy
            assert by_id.loc[f"{name}:K=1", "acc"] == pytest.approx(by_id.loc[first, "acc"])
            assert by_id.loc[f"{name}:K=1", "acc_norm"] == pytest.approx(by_id.loc[first, "acc_norm"])
        assert os.path.exists(os.path.join(smoke, "results", "data", "lm_eval_tasks", f"{task}.yaml"))


def test_cpt_stage(smoke):
    cpt = table(smoke, "cpt")
    assert list(cpt[cpt["recipe"] == "default"]["token_budget"]) == [1024, 2048, 4096]
    reg = cpt[cpt["recipe"] == "regularized"]
    assert len(reg) == 2 and reg["selected"].sum() == 1
    chosen = reg[reg["selected"]].iloc[0]
    assert chosen["loss"] == reg["loss"].min()  # the grid's lowest held-out loss is selected
    ens = cpt[cpt["recipe"] == "ensemble"].sort_values("ensemble_size")
    assert list(ens["ensemble_size"]) == [1, 2]
    assert ens.iloc[0]["loss"] == pytest.approx(chosen["loss"], abs=1e-6)
    # the default recipe's multiplier at its own budget is 1 by definition; the others are read off L(D)
    default = cpt[(cpt["recipe"] == "default") & (cpt["token_budget"] == 2048)].iloc[0]
    assert default["data_efficiency"] == pytest.approx(1.0)
    assert ((cpt["accuracy"] >= 0) & (cpt["accuracy"] <= 1)).all() and (cpt["n_questions"] == 20).all()
    # cpt.tasks: lm-eval's heldout_math_choice on every model, over the held-out questions; the
    # one-member ensemble is its member
    scores = [json.loads(b)["heldout_math_choice"] for b in cpt["benchmarks"]]
    assert all(s["n_items"] == 20 and s["chance"] == 0.25 and 0 <= s["acc"] <= 1 for s in scores)
    assert list(cpt["benchmark_accuracy"]) == [s["acc"] for s in scores]
    assert ens.iloc[0]["benchmark_accuracy"] == pytest.approx(chosen["benchmark_accuracy"])
    spec = json.load(open(os.path.join(smoke, "results", "cpt", "models", chosen["model_id"], "spec.json")))
    assert spec["init_from"] == "reg-t1-d8k" and spec["data"] == "math/d2048"
    held = [json.loads(line)["question"] for line in open(os.path.join(smoke, "results", "data", "math", "corpus",
                                                                          "held_out.jsonl"))]
    train = open(os.path.join(smoke, "results", "data", "math", "corpus", "train.jsonl")).read()
    assert not any(q in train for q in held)


def test_nothing_to_do_after_a_complete_run(smoke):
    assert dry_run_jobs(smoke, "figures/all", "--configfile", ".test/config.yaml") == {}


def test_editing_one_run_reruns_only_it_and_its_dependents(smoke):
    cfg = yaml.safe_load(open(os.path.join(smoke, ".test", "config.yaml")))
    cfg["run_overrides"] = {"t1-d8k-ep2-lr0.01-wd0.1-s1": {"learning_rate": 0.02}}
    with open(os.path.join(smoke, "edited.yaml"), "w") as f:
        yaml.safe_dump(cfg, f)
    jobs = dry_run_jobs(smoke, "figures/all", "--configfile", "edited.yaml")
    new = "run=t1-d8k-ep2-lr0.02-wd0.1-s1"
    student = "run=t1-d8k-ep2-lr0.01-wd0.1-s0-distill-ens-distill"
    # the edited ensemble member and the student distilled from that ensemble; no other training
    assert sorted(jobs["train_model"]) == sorted([new, student])
    assert sorted(jobs["evaluate_model"]) == sorted([new, student])
    assert jobs["ensemble_curve"] == ["name=t1-ens"]
    assert jobs["sample_teacher"] == ["name=ens-distill"] and jobs["distill_cache"] == ["name=ens-distill"]
    for rule in ("results_tables", "fit_power_laws", "render_paper", "render_paper_html", "all_figures", "draw_figure"):
        assert rule in jobs
    assert not {"prepare_corpus", "train_tokenizer", "tokenize_corpus", "build_cache"} & set(jobs)


def test_ensembles_of_a_search_follow_its_selected_runs(smoke):
    ens = table(smoke, "ensembles")
    runs = table(smoke, "runs").set_index("run_id")
    derived = ens[ens["recipe"] == "reg-ens"]
    assert sorted(derived["ensemble"].unique()) == ["reg-ens-t1-d8k", "reg-ens-t2-d8k", "reg-ens-t3-d8k"]
    for name, g in derived.groupby("ensemble"):
        best = final(smoke, g["cell"].iloc[0])["best"]
        top = g.loc[g["ensemble_size"].idxmax()]
        assert list(g.sort_values("ensemble_size")["ensemble_size"]) == [1, 2, 3]
        # the paper's rule: the selected lr, twice the epochs, half the weight decay, seeds 0..K-1
        members = runs.loc[list(top["member_ids"])]
        assert (members["learning_rate"] == best["learning_rate"]).all()
        assert (members["epochs"] == 2 * best["epochs"]).all()
        assert np.allclose(members["weight_decay"], best["weight_decay"] / 2)
        assert list(members["seed"]) == [0, 1, 2] and (members["role"] != "teacher").all()
        assert all(name in e for e in members["ensembles"])
    fits = table(smoke, "fits")
    per_k = fits[(fits["fit"] == "ensemble") & (fits["recipe"] == "reg-ens")]
    assert sorted(per_k["model"]) == ["t1", "t2", "t3"] and (per_k["token_budget"] == 8192).all()
    ok = per_k[per_k["status"] == "ok"].sort_values("non_embedding_params")
    joint = fits[fits["fit"] == "joint"]
    # the joint fit is over the K -> inf asymptotes of the sizes, in order of N
    assert len(joint) == 1 and list(joint.iloc[0]["point_ids"]) == list(ok["group"])
    np.testing.assert_allclose(joint.iloc[0]["y"], ok["E"])


def test_teachers_from_a_search_are_its_selection_and_its_ensemble(smoke):
    dist = table(smoke, "distillation").set_index("distillation")
    ens = table(smoke, "ensembles")
    runs = table(smoke, "runs").set_index("run_id")
    selected = final(smoke, "reg-t1-d8k")["best"]["run_id"]
    # self-distillation: one teacher, the tuned single model, whose loss is the "single model" too
    s = dist.loc["self-distill"]
    assert (s["teacher_kind"], s["teacher"], s["teacher_size"]) == ("search", selected, 1)
    assert s["teacher_loss"] == pytest.approx(runs.loc[selected, "loss"]) == pytest.approx(s["single_model_loss"])
    e = dist.loc["reg-ens-distill"]
    top = ens[ens["ensemble"] == "reg-ens-t1-d8k"].sort_values("ensemble_size").iloc[-1]
    assert (e["teacher_kind"], e["teacher"], e["teacher_size"]) == ("ensemble", "reg-ens-t1-d8k", 3)
    assert e["teacher_loss"] == pytest.approx(top["loss"])
    for name in ("self-distill", "reg-ens-distill"):
        student = runs.loc[dist.loc[name, "student_id"]]
        assert student["role"] == "student" and np.isfinite(student["loss"])


def test_adding_an_ensemble_member_trains_only_it(smoke):
    cfg = yaml.safe_load(open(os.path.join(smoke, ".test", "config.yaml")))
    cfg["ensemble_recipes"][0]["members"] = 4
    cfg["ensembles"][0]["members"] = 4
    with open(os.path.join(smoke, "more.yaml"), "w") as f:
        yaml.safe_dump(cfg, f)
    jobs = dry_run_jobs(smoke, "figures/all", "--configfile", "more.yaml")
    runs = table(smoke, "runs").set_index("run_id")
    new = ["run=t1-d8k-ep2-lr0.01-wd0.1-s3"]  # the fixed ensemble's fourth member
    for name in ("reg-ens-t1-d8k", "reg-ens-t2-d8k", "reg-ens-t3-d8k"):
        first = runs.loc[[r for r in runs.index if name in runs.loc[r, "ensembles"]]].sort_values("seed").iloc[0]
        new.append("run=" + first.name.removesuffix("-s0") + "-s3")
    # only the fourth members train; the students of the grown ensembles follow their teachers
    students = ["run=t1-d8k-ep2-lr0.01-wd0.1-s0-distill-ens-distill", "run=t1-d8k-ep2-lr0.01-wd0.4-s0-distill-reg-ens-distill"]
    assert sorted(jobs["train_model"]) == sorted(new + students)
    assert sorted(jobs["sample_teacher"]) == ["name=ens-distill", "name=reg-ens-distill"]
    assert sorted(jobs["ensemble_curve"]) == sorted(["name=t1-ens", "name=reg-ens-t1-d8k", "name=reg-ens-t2-d8k",
                                                     "name=reg-ens-t3-d8k"])
    assert "tune_round" not in jobs and not {"prepare_corpus", "train_tokenizer", "build_cache"} & set(jobs)


def test_lint_is_clean(smoke):
    p = smk(smoke, "--lint", "--configfile", ".test/config.yaml", check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Lints for" not in p.stdout + p.stderr


def test_the_rules_are_formatted_as_snakefmt_formats_them():
    """`snakefmt --check` (pinned; its settings in pyproject.toml) leaves the Snakefile and rules/ as they are."""
    p = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "--diff", "Snakefile", "rules/"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]


def report_results(html: str) -> dict:
    """The report's embedded items (Snakemake 9's `var results = {path: {caption, data_uri, ...}}`)."""
    m = re.search(r"<script id=\"results\">\s*var results = ", html)
    return json.JSONDecoder().raw_decode(html, m.end())[0]


def html_text(fragment: str) -> str:
    import html

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def test_report_has_every_figure(smoke):
    """Every figure, both tables and the paper are embedded in report.html (their bytes, base64, in a
    data URI: present only when the file was there), each figure with its own caption, which states
    the config's ensemble member rule; the HTML paper too, with its caption."""
    from test_report import render_caption, study_config

    from infinite_compute.outputs.figures import FIGURES

    smk(smoke, "--report", "report.html", "--configfile", ".test/config.yaml")
    results = report_results(open(os.path.join(smoke, "report.html")).read())
    config = study_config(smoke, ".test/config.yaml")
    figures = [name for name in FIGURES if name != "floor"]  # the floor figure only on a synthetic corpus
    for path in [f"figures/{name}.png" for name in figures] + ["results/runs.parquet", "results/tuning.parquet",
                                                              "paper/paper.md", "paper/paper.html"]:
        assert path in results, path
        data = base64.b64encode(open(os.path.join(smoke, path), "rb").read()).decode()
        assert results[path]["data_uri"].endswith(f";base64,{data}"), path
    captions = {name: html_text(results[f"figures/{name}.png"]["caption"]) for name in figures}
    for name in figures:
        expected = " ".join(render_caption(config, name, smoke).split())
        assert expected and expected in captions[name], name
    assert len(set(captions.values())) == len(figures)  # each figure its own caption
    assert results["figures/ensembles.png"]["mime_type"] == "image/png"
    # the smoke config keeps the schema's member factors (2, 0.5): the paper's rule, and the members say so
    (recipe,) = config["ensemble_recipes"]
    assert (recipe["epochs_factor"], recipe["weight_decay_factor"]) == (2, 0.5)
    assert (f"Members of the ensemble recipe {recipe['name']} (search {recipe['search']}) take the tuned single "
            "model's lr, twice its epochs, half its weight decay, new seeds") in captions["ensembles"]
    assert results["paper/paper.html"]["mime_type"] == "text/html"
    assert "The paper as one standalone HTML page" in html_text(results["paper/paper.html"]["caption"])
    assert "One row per trained model" in html_text(results["results/runs.parquet"]["caption"])
    assert "The outcome of every hyperparameter search cell" in html_text(results["results/tuning.parquet"]["caption"])


def test_the_paper_configs_dry_run_lists_what_the_docs_say(tmp_path):
    """docs/paper-scale.md's `snakemake -n figures/all --configfile config/paper.yaml`, run: it plans
    without the paper's data, and its job table has the trainings and jobs the page states."""
    wd = project_copy(tmp_path / "paper")
    out = smk(wd, "-n", "figures/all", "--configfile", "config/paper.yaml").stdout
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], re.M))
    readme = open(os.path.join(ROOT, "docs", "paper-scale.md")).read()
    trainings, total = re.search(r"The dry run lists (\d+) trainings.*? in (\d+) jobs", readme, re.S).groups()
    assert int(jobs["train_model"]) + int(jobs["train_cpt"]) == int(trainings)
    assert int(jobs["total"]) == int(total)
    assert not os.path.exists(os.path.join(wd, "results"))  # a dry run writes nothing


def test_the_worked_example_figure_draws_from_the_study_tables(smoke, tmp_path):
    """docs/extending.md's figure, run as the page shows it: its function registers under its name, draws
    the smoke study's reseed means and selected runs from the tables (a PNG with its points), and its
    FIGURE_READS entry is a selector provenance parses."""
    from infinite_compute.outputs import figures, provenance
    from infinite_compute.outputs.results import read_tables

    code, reads = worked_example("extending.md", "a figure")
    namespace = {"figure": figures.figure}
    exec(compile(code, "docs/extending.md", "exec"), namespace)
    (name,) = set(figures.REGISTRY) - set(figures.FIGURES)
    try:
        entry = ast.literal_eval("{" + reads + "}")
        assert list(entry) == [name]
        for selector in entry[name]:
            provenance.parse_selector(selector)
        tables = read_tables(sorted(glob.glob(os.path.join(smoke, "results", "*.parquet"))))
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        namespace["fig_winners_curse"](tables, ax, fig)
        # the markers drawn: every line's finite points, the error bars' own segments aside (collections)
        points = sorted(y for line in ax.get_lines() for y in line.get_ydata() if np.isfinite(y))
        plt.close(fig)
        out = tmp_path / f"{name}.png"
        figures.draw(name, tables, str(out))
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        reg = tables["tuning"][tables["tuning"]["recipe"] == "regularized"]
        expected = sorted([*reg["loss"], *reg["loss_mean"].dropna()])
        assert len(expected) > len(reg) and np.allclose(points, expected)
    finally:
        figures.REGISTRY.pop(name, None)


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda c: c["tuning"]["searches"][2].update(weight_decays=[-0.1]), ["weight_decays", "-0.1"]),
        (lambda c: c["tuning"]["searches"][0].update(epochs=[0]), ["epochs", "0"]),
        (lambda c: c.update(learning_rat=0.1), ["learning_rat"]),
        (lambda c: c["ensembles"][0].update(model="nope"), ["ensembles[0].model", "nope"]),
        (lambda c: c["data"].update(source="files", files=["corpus/*.txt", "missing/*.jsonl"]),
         ["data.files[1]", "no file matches", "missing/*.jsonl"]),
        (lambda c: c["data"].update(source="files", files=["corpus/empty.txt"]), ["data.files", "empty"]),
        (lambda c: c["data"].update(source="files", files=["corpus/small.txt"]),
         ["data.token_budgets", "16384", "2000 bytes"]),
        (lambda c: c["data"].update(source="files", files=["corpus/a.txt", "corpus/blob.txt"]),
         ["corpus/blob.txt", "not valid utf-8"]),
        (lambda c: "malformed: [", ["Config file is not valid JSON or YAML"]),  # Snakemake's own check
        (lambda c: c.update({"import": {"source": "offline", "offline_dirs": ["corpus"]}}),
         ["import.offline_dirs", "no W&B run file", "corpus"]),
        (lambda c: c.update({"import": {"source": "wandb"}}), ["import.projects", "entity/project"]),
        (lambda c: c.update({"import": {"source": "wandb", "projects": ["no-entity"]}}),
         ["import", "projects", "no-entity"]),
    ],
    ids=["negative weight decay", "epochs 0", "unknown key", "unknown model", "missing corpus file",
         "empty corpus", "budget larger than the corpus", "binary corpus file", "malformed yaml", "import: no offline runs",
         "import: no projects", "import: a project without its entity"],
)
def test_bad_config_fails_before_any_job_naming_the_key(tmp_path, edit, words):
    """A bad config or corpus fails before any job runs, with an error that names the key or file;
    nothing is written (and so nothing of an earlier study could be deleted)."""
    wd = project_copy(tmp_path)
    os.makedirs(os.path.join(wd, "corpus"))
    open(os.path.join(wd, "corpus", "a.txt"), "w").write("def f():\n    return 1\n" * 400)
    open(os.path.join(wd, "corpus", "empty.txt"), "w").write(" \n\n")
    open(os.path.join(wd, "corpus", "small.txt"), "w").write("x = 1\n" * 333 + "yy")  # 2000 bytes
    open(os.path.join(wd, "corpus", "blob.txt"), "wb").write(bytes(range(128, 256)) * 800)
    cfg = yaml.safe_load(open(os.path.join(wd, ".test", "config.yaml")))
    text = edit(cfg)
    with open(os.path.join(wd, "bad.yaml"), "w") as f:
        f.write(text) if isinstance(text, str) else yaml.safe_dump(cfg, f)
    before = sorted(os.listdir(wd))
    p = smk(wd, "figures/all", "--configfile", "bad.yaml", "--cores", "1", check=False)
    assert p.returncode != 0
    for w in words:
        assert w in p.stdout + p.stderr, p.stdout[-2000:] + p.stderr[-2000:]
    assert not os.path.exists(os.path.join(wd, "results")), "no job may run on a bad config"
    assert sorted(set(os.listdir(wd)) - {".snakemake"}) == before  # (.snakemake: Snakemake's own state)


def _train_cmd(wd, spec, out, checkpoints, checkpoint_minutes, engine="loop", evals_per_run=4, wandb=None, **more):
    settings = {"evals_per_run": evals_per_run, "checkpoint_minutes": checkpoint_minutes,
                "wandb": wandb or {"enabled": False}, "engine": engine, **more}
    return [sys.executable, "-m", "infinite_compute", "--threads", "1", "train", "--spec", json.dumps(spec),
            "--cache", os.path.join(wd, "results", "data", "cache", "d8192"),
            "--tokenizer", os.path.join(wd, "results", "data", "tokenizer"),
            "--out", out, "--checkpoints", checkpoints, "--settings", json.dumps(settings)]


def _job_env(wd, **extra) -> dict:
    """The environment of a training job run by a test in a process of its own (not on a warm worker)."""
    env = {**os.environ, "PYTHONPATH": os.path.join(wd, "src"), **extra}
    env.pop("IC_WORKER", None)
    return env


@pytest.fixture
def pool(smoke, tmp_path):
    """A pool of one warm worker (runtime/worker.py, cli/pool.py) owned by this test process; its socket path."""
    sock = str(tmp_path / "workers" / "pool.sock")
    env = {**os.environ, "PYTHONPATH": os.path.join(smoke, "src")}
    process = start_pool(sock, os.getpid(), env=env, log=open(tmp_path / "workers.log", "w"))
    yield types.SimpleNamespace(sock=sock, process=process, log=tmp_path / "workers.log")
    process.terminate()
    process.wait(30)
    assert not os.path.exists(sock)


@pytest.mark.parametrize("engine,runner", [("loop", "own process"), ("loop", "warm worker")])
def test_a_killed_training_resumes_from_its_checkpoint_to_the_same_weights(smoke, tmp_path, engine, runner, request):
    """SIGKILL a training job after its first checkpoint and run the same command again: it resumes
    from that checkpoint and ends with exactly the weights and losses of an uninterrupted run (in a
    process of its own). On a warm worker, the kill takes the worker with it, as it would the job's
    own process; the pool starts a fresh one, which runs the rerun. (The trainer engine's kill and
    resume: test_a_training_killed_on_four_devices_resumes_there_bit_for_bit_and_restores_on_two.)"""
    from safetensors.numpy import load_file

    spec = json.load(open(os.path.join(smoke, "results", "models", "t1-d8k-ep1-lr0.01-wd0.1-s0", "spec.json")))
    spec.update(epochs=32, num_train_steps=32 * 8192 // (8 * 64), run_id="t1-d8k-ep32-lr0.01-wd0.1-s0")
    env = _job_env(smoke)
    whole = tmp_path / "whole"
    subprocess.run(_train_cmd(smoke, spec, str(whole / "out"), str(whole / "ck"), 0.02, engine), env=env,
                   check=True, capture_output=True, timeout=600)

    if runner == "warm worker":
        pool = request.getfixturevalue("pool")
        env["IC_WORKER"] = pool.sock
        workers = pool.process.children()
        assert len(workers) == 1
    killed = tmp_path / "killed"
    cmd = _train_cmd(smoke, spec, str(killed / "out"), str(killed / "ck"), 0.02, engine)
    log = open(tmp_path / "killed.log", "w")
    p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_for_checkpoint(str(killed / "ck"), p, 300, lambda: open(tmp_path / "killed.log").read()[-3000:])
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    if runner == "warm worker":
        workers[0].wait(10)  # the worker running the job is gone too...
        for _ in range(50):
            if pool.process.children():
                break
            time.sleep(0.1)
        assert [w.pid for w in pool.process.children()] != [workers[0].pid]  # ...and replaced
    assert not (killed / "out").exists()
    steps = [int(s.rsplit("-", 1)[1]) for s in glob.glob(str(killed / "ck" / "*" / "checkpoints" / "step-*"))]
    assert 0 < max(steps) < spec["num_train_steps"] - 1
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "Resuming training from step" in rerun.stdout + rerun.stderr  # the job's log, from either runner
    if runner == "warm worker":
        assert re.search(rf"rc=0 .* train {re.escape(str(killed / 'out'))}$", open(pool.log).read(), re.M)

    a = load_file(str(whole / "out" / "hf" / "model.safetensors"))
    b = load_file(str(killed / "out" / "hf" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ma = json.load(open(whole / "out" / "metrics.json"))
    mb = json.load(open(killed / "out" / "metrics.json"))
    # the metrics hold the whole run, the steps before the kill included
    assert ma["eval_loss"] == mb["eval_loss"] and ma["train_loss"] == mb["train_loss"]
    assert [e["step"] for e in mb["eval_loss"]][0] == 0
    assert not (killed / "ck" / f"{spec['run_id']}").exists() and not glob.glob(str(killed / "ck" / "*"))


@pytest.mark.parametrize("engine,runner", [("loop", "own process"), ("loop", "warm worker"), ("trainer", "own process")])
def test_a_run_logged_to_wandb_offline_reads_back_and_imports_as_the_run(smoke, tmp_path, engine, runner, request):
    """A smoke run trained with W&B logging on (offline, as the default mode is): its offline run holds
    the run's name, group, tags and spec, levanter's per-step keys and its eval losses, exactly those of
    its metrics.json; the importer places it from its spec with the same loss. On a warm worker, the
    job returns as soon as it ends: the wandb service the worker starts does not keep its pipes open."""
    from infinite_compute.outputs.imported import ImportSettings, import_tables
    from infinite_compute.outputs.wandb_files import offline_run_files, read_run

    spec = json.load(open(os.path.join(smoke, "results", "models", "t1-d8k-ep1-lr0.01-wd0.1-s0", "spec.json")))
    spec.update(epochs=2, num_train_steps=2 * 8192 // (8 * 64), run_id="t1-d8k-ep2-lr0.01-wd0.1-s1", seed=1)
    wandb = {"enabled": True, "project": "smoke", "mode": "offline", "entity": None, "tags": ["test"],
             "dir": str(tmp_path / "wandb")}
    out = tmp_path / "out"
    env = _job_env(smoke, WANDB_SILENT="true")
    env.pop("WANDB_DIR", None)
    if runner == "warm worker":
        env["IC_WORKER"] = request.getfixturevalue("pool").sock
    subprocess.run(_train_cmd(smoke, spec, str(out), str(tmp_path / "ck"), 10, engine, 4, wandb), env=env,
                   check=True, capture_output=True, timeout=300)
    (path,) = offline_run_files([str(tmp_path / "wandb")])
    run, metrics = read_run(path), json.load(open(out / "metrics.json"))
    assert run["name"] == run["id"] == spec["run_id"] and run["state"] == "finished"
    assert run["group"] == "t1-d8k-ep2-lr0.01-wd0.1" and {"d8192", "pretraining", "test"} <= set(run["tags"])
    assert run["config"]["study"] == spec
    assert run["config"]["trainer"]["num_train_steps"] == spec["num_train_steps"]
    evals = [{"step": h["_step"], "loss": h["eval/loss"]} for h in run["history"] if "eval/loss" in h]
    train = {h["_step"]: h["train/loss"] for h in run["history"] if "train/loss" in h}
    assert sorted(train) == list(range(spec["num_train_steps"]))
    if engine == "loop":  # levanter's Trainer logs its own keys (and at its own steps)
        np.testing.assert_allclose([e["loss"] for e in evals], [e["loss"] for e in metrics["eval_loss"]], rtol=1e-6)
        lrs = [h["optim/learning_rate"] for h in run["history"] if "optim/learning_rate" in h]
        o, n = spec["optimizer"], spec["num_train_steps"]
        assert o["warmup"] * n < 1  # no warmup step at this length: the cosine from the first step
        cosine = [spec["learning_rate"] * ((1 - o["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * t / n))
                                           + o["min_lr_ratio"]) for t in range(n)]
        np.testing.assert_allclose(lrs, cosine, rtol=1e-5)
        assert all("throughput/tokens_per_second" in h for h in run["history"] if "train/loss" in h)
        assert run["summary"]["parameter_count"] == metrics["parameter_count"]
    tables, report = import_tables([run], ImportSettings(eval_key="eval/loss"))
    assert report[0]["placed"], report
    (row,) = tables["runs"]
    assert row["run_id"] == spec["run_id"] and row["token_budget"] == 8192 and row["seed"] == 1
    assert row["role"] == "member"  # seed 1 of its recipe
    np.testing.assert_allclose(row["loss"], evals[-1]["loss"])


def test_the_loop_engine_trains_as_levanters_trainer_does(smoke, tmp_path):
    """The same spec through levanter's Trainer (levanter.main.train_lm): the same in-training eval
    losses at the same steps and the same final weights, up to float rounding (the loop runs its steps
    inside one compiled scan, the Trainer one call per step)."""
    from safetensors.numpy import load_file

    loop = os.path.join(smoke, "results", "models", "t2-d8k-ep2-lr0.01-wd0.1-s0")
    spec = json.load(open(os.path.join(loop, "spec.json")))
    env = _job_env(smoke)
    per_run = yaml.safe_load(open(os.path.join(smoke, ".test", "config.yaml")))["training"]["evals_per_run"]
    subprocess.run(_train_cmd(smoke, spec, str(tmp_path / "out"), str(tmp_path / "ck"), 10, "trainer", per_run),
                   env=env, check=True, capture_output=True, timeout=600)
    a, b = json.load(open(os.path.join(loop, "metrics.json"))), json.load(open(tmp_path / "out" / "metrics.json"))
    assert [e["step"] for e in a["eval_loss"]] == [e["step"] for e in b["eval_loss"]]
    np.testing.assert_allclose([e["loss"] for e in a["eval_loss"]], [e["loss"] for e in b["eval_loss"]], atol=1e-4)
    np.testing.assert_allclose([e["loss"] for e in a["train_loss"]], [e["loss"] for e in b["train_loss"]], atol=1e-4)
    wa, wb = load_file(os.path.join(loop, "hf", "model.safetensors")), load_file(str(tmp_path / "out" / "hf" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], atol=1e-4, err_msg=k)
    assert a["parameter_count"] == b["parameter_count"]


# Several devices and processes (model/distributed.py, runtime/launch.py). Simulated CPU devices and
# jax processes joined over localhost (gloo) compute the same training as one device, up to the order
# of float32 sums: over the runs below (2-4 devices, up to 512 steps) the eval losses moved by at most
# 2.1e-5 nats from the 1-device run's; the tolerance is 1e-4, 5x that and 100x below the smallest
# difference the study reads (a seed's noise).
LOSS_TOLERANCE = 1e-4


def _devices_env(smoke, devices: int, **extra) -> dict:
    return _job_env(smoke, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **extra)


def _eval_losses(out) -> list[float]:
    return [e["loss"] for e in json.load(open(os.path.join(out, "metrics.json")))["eval_loss"]]


def _mesh_line(log: str) -> str:
    (line,) = set(re.findall(r"(\d+ devices in \d+ processes, mesh .*)", log))
    return line


LAYOUTS = [  # (devices, sharding, levanter settings, the mesh levanter lays out)
    (4, "fsdp", {}, "4 devices in 1 processes, mesh replica 1 x data 4 x model 1"),
    (4, "fsdp", {"model_axis_size": 2}, "4 devices in 1 processes, mesh replica 1 x data 2 x model 2"),
    (4, "data", {}, "4 devices in 1 processes, mesh replica 4 x data 1 x model 1"),
]


def test_the_trainer_engine_on_four_devices_trains_as_on_one_in_each_layout(smoke, tmp_path):
    """FSDP, FSDP x tensor parallel and plain data parallel over 4 simulated CPU devices give the
    1-device run's eval losses (LOSS_TOLERANCE), on the mesh each layout asks for."""
    spec = json.load(open(os.path.join(smoke, "results", "models", "t1-d8k-ep2-lr0.01-wd0.1-s0", "spec.json")))
    one = tmp_path / "one"
    subprocess.run(_train_cmd(smoke, spec, str(one / "out"), str(one / "ck"), 10, "trainer"),
                   env=_devices_env(smoke, 1), check=True, capture_output=True, timeout=300)
    reference = _eval_losses(one / "out")
    for i, (devices, sharding, levanter, mesh) in enumerate(LAYOUTS):
        d = tmp_path / f"layout{i}"
        p = subprocess.run(_train_cmd(smoke, spec, str(d / "out"), str(d / "ck"), 10, "trainer", sharding=sharding,
                                      trainer=levanter), env=_devices_env(smoke, devices), capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        assert _mesh_line(p.stderr) == mesh
        np.testing.assert_allclose(_eval_losses(d / "out"), reference, atol=LOSS_TOLERANCE, rtol=0, err_msg=mesh)


def test_the_loop_engine_on_four_devices_trains_as_on_one(smoke, tmp_path):
    """The loop engine splits each batch over the devices it sees, on levanter's mesh: on 4 simulated
    CPU devices it gives the eval losses the study's own run had on one (LOSS_TOLERANCE)."""
    one = os.path.join(smoke, "results", "models", "t1-d8k-ep2-lr0.01-wd0.1-s0")
    spec = json.load(open(os.path.join(one, "spec.json")))
    d = tmp_path / "d4"
    p = subprocess.run(_train_cmd(smoke, spec, str(d / "out"), str(d / "ck"), 10), env=_devices_env(smoke, 4),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    np.testing.assert_allclose(_eval_losses(d / "out"), _eval_losses(one), atol=LOSS_TOLERANCE, rtol=0)


def test_tensor_parallel_splits_the_mlp_and_key_value_heads_and_fsdp_the_embedding(smoke):
    """The parameters as levanter shards them on each layout's mesh: with model_axis_size 2 every MLP
    and attention weight is split over the model axis, under FSDP the embedding axis over the data
    axis, and under plain data parallelism nothing is split."""
    script = """
import json, sys
import haliax as hax, jax
from infinite_compute.model.distributed import mesh_settings
from infinite_compute.model.shapes import llama_config
from infinite_compute.study.specs import RunSpec
from levanter.trainer import TrainerConfig
spec = RunSpec.from_dict(json.load(open(sys.argv[1])))
out = {}
for name, sharding, lev in (("tp", "fsdp", {"model_axis_size": 2}), ("fsdp", "fsdp", {}), ("data", "data", {})):
    t = TrainerConfig(train_batch_size=8, **mesh_settings(sharding, lev))
    lm = llama_config(spec.model, sys.argv[2])
    with t.use_device_mesh(), hax.axis_mapping(t.parameter_axis_mapping):
        model = hax.named_jit(lambda k: lm.build(hax.Axis("vocab", 512), key=k), axis_resources=t.parameter_axis_mapping)(
            jax.random.PRNGKey(0))
    leaves = jax.tree_util.tree_leaves_with_path(model)
    out[name] = {jax.tree_util.keystr(p): [list(x.shape), list(x.addressable_shards[0].data.shape)]
                 for p, x in leaves if hasattr(x, "addressable_shards")}
print(json.dumps(out))
"""
    p = subprocess.run([sys.executable, "-c", script,
                        os.path.join(smoke, "results", "models", "t1-d8k-ep2-lr0.01-wd0.1-s0", "spec.json"),
                        os.path.join(smoke, "results", "data", "tokenizer")],
                       env=_devices_env(smoke, 4, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    shards = json.loads(p.stdout.strip().splitlines()[-1])

    def split(layout, name):  # the factor by which a device's shard is smaller than the array
        (whole, shard), = [v for k, v in shards[layout].items() if name in k]
        return [a // b for a, b in zip(whole, shard)]
    for weight in ("gate_proj", "up_proj", "down_proj", "q_proj", "k_proj", "v_proj", "o_proj"):
        assert 2 in split("tp", weight), (weight, shards["tp"])
        assert sorted(split("data", weight)) == [1] * len(split("data", weight))
    assert 4 in split("fsdp", "token_embeddings")
    assert sorted(split("data", "token_embeddings")) == [1, 1]


def test_a_training_killed_on_four_devices_resumes_there_bit_for_bit_and_restores_on_two(smoke, tmp_path):
    """SIGKILL a 4-device FSDP training (the trainer engine) after a checkpoint: rerun on 4 devices, it
    resumes from that checkpoint and ends with the weights, eval and train losses of an uninterrupted
    4-device run, bit for bit, and removes its checkpoints; the same checkpoint restored on 2 devices
    ends with its losses (LOSS_TOLERANCE)."""
    from safetensors.numpy import load_file

    spec = json.load(open(os.path.join(smoke, "results", "models", "t1-d8k-ep1-lr0.01-wd0.1-s0", "spec.json")))
    spec.update(epochs=16, num_train_steps=16 * 8192 // (8 * 64), run_id="t1-d8k-ep16-lr0.01-wd0.1-s0")
    whole = tmp_path / "whole"
    subprocess.run(_train_cmd(smoke, spec, str(whole / "out"), str(whole / "ck"), 10, "trainer"),
                   env=_devices_env(smoke, 4), check=True, capture_output=True, timeout=600)
    killed = tmp_path / "killed"
    log = open(tmp_path / "killed.log", "w")
    p = subprocess.Popen(_train_cmd(smoke, spec, str(killed / "out"), str(killed / "ck"), 0.02, "trainer"),
                         env=_devices_env(smoke, 4), stdout=log, stderr=subprocess.STDOUT)
    wait_for_checkpoint(str(killed / "ck"), p, 300, lambda: open(tmp_path / "killed.log").read()[-3000:])
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL and not (killed / "out").exists()
    steps = [int(s.rsplit("-", 1)[1]) for s in glob.glob(str(killed / "ck" / "*" / "checkpoints" / "step-*"))]
    assert 0 < max(steps) < spec["num_train_steps"] - 1
    shutil.copytree(killed / "ck", tmp_path / "ck2")
    for ck, out, devices in ((killed / "ck", killed / "out", 4), (tmp_path / "ck2", tmp_path / "out2", 2)):
        rerun = subprocess.run(_train_cmd(smoke, spec, str(out), str(ck), 0.02, "trainer"),
                               env=_devices_env(smoke, devices), capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert "Resuming training from step" in rerun.stderr
        assert _mesh_line(rerun.stderr).startswith(f"{devices} devices")
    a, b = load_file(str(whole / "out" / "hf" / "model.safetensors")), load_file(str(killed / "out" / "hf" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ma, mb = (json.load(open(d / "out" / "metrics.json")) for d in (whole, killed))
    # the metrics hold the whole run, the steps before the kill included
    assert ma["eval_loss"] == mb["eval_loss"] and ma["train_loss"] == mb["train_loss"]
    assert [e["step"] for e in mb["eval_loss"]][0] == 0 and not glob.glob(str(killed / "ck" / "*"))
    np.testing.assert_allclose(_eval_losses(tmp_path / "out2"), _eval_losses(whole / "out"), atol=LOSS_TOLERANCE, rtol=0)


def test_two_processes_through_the_launcher_train_one_run_and_a_killed_rank_ends_the_other(smoke, tmp_path):
    """IC_PROCESSES=2: the job's command launches two jax processes on localhost (2 simulated devices
    each) that train one run on 4 devices. Rank 0 alone publishes: one set of outputs, one record per
    step, the 1-device losses. Then a rank killed mid-training ends the other: the job fails within a
    minute, naming the rank, leaves no process and publishes nothing."""
    import psutil

    spec = json.load(open(os.path.join(smoke, "results", "models", "t1-d8k-ep2-lr0.01-wd0.1-s0", "spec.json")))
    env = _devices_env(smoke, 2, IC_PROCESSES="2")
    out, ck = tmp_path / "out", tmp_path / "ck"
    p = subprocess.run(_train_cmd(smoke, spec, str(out), str(ck), 10, "trainer"), env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "launched 2 processes" in p.stderr and _mesh_line(p.stderr) == "4 devices in 2 processes, mesh replica 1 x data 4 x model 1"
    assert len(p.stdout.strip().splitlines()) == 1  # rank 0's summary line only
    assert sorted(os.listdir(out)) == ["hf", "metrics.json", "spec.json"] and not os.listdir(ck)
    metrics = json.load(open(out / "metrics.json"))
    steps = [r["step"] for r in metrics["train_loss"]]
    assert steps == sorted(set(steps)) and len(steps) == spec["num_train_steps"]
    one = os.path.join(smoke, "results", "models", "t1-d8k-ep2-lr0.01-wd0.1-s0")
    np.testing.assert_allclose(_eval_losses(out), _eval_losses(one), atol=LOSS_TOLERANCE, rtol=0)

    long = dict(spec, epochs=32, num_train_steps=32 * 8192 // (8 * 64), run_id="t1-d8k-ep32-lr0.01-wd0.1-s0")
    log = open(tmp_path / "killed.log", "w")
    job = subprocess.Popen(_train_cmd(smoke, long, str(tmp_path / "out2"), str(tmp_path / "ck2"), 0.02, "trainer"),
                           env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_for_checkpoint(str(tmp_path / "ck2"), job, 300, lambda: open(tmp_path / "killed.log").read()[-3000:])
    ranks = psutil.Process(job.pid).children()
    assert len(ranks) == 2
    rank1 = [r for r in ranks if r.environ().get("IC_PROCESS_ID") == "1"][0]
    rank1.kill()
    killed_at = time.time()
    job.wait(timeout=120)
    assert time.time() - killed_at < 60
    text = open(tmp_path / "killed.log").read()
    assert job.returncode != 0 and "the training failed: rank 1 of 2 was killed by SIGKILL" in text, text[-3000:]
    assert not any(r.is_running() for r in ranks) and not (tmp_path / "out2").exists()


def test_a_loop_run_does_not_depend_on_the_jax_settings_its_process_had(smoke, tmp_path):
    """A warm worker may have run a Trainer job before, which sets levanter's jax settings process-wide
    (jax_softmax_custom_jvp changes softmax's gradient). A loop run applies them itself: the same run
    in a process that starts with the other setting ends with the study's weights, bit for bit."""
    from safetensors.numpy import load_file

    study = os.path.join(smoke, "results", "models", "t1-d8k-ep1-lr0.01-wd0.1-s0")
    spec = json.load(open(os.path.join(study, "spec.json")))
    per_run = yaml.safe_load(open(os.path.join(smoke, ".test", "config.yaml")))["training"]["evals_per_run"]
    # the study's workers started with jax's default; this process starts with the other value
    env = _job_env(smoke, JAX_SOFTMAX_CUSTOM_JVP="0" if _jax_default_softmax_custom_jvp() else "1")
    subprocess.run(_train_cmd(smoke, spec, str(tmp_path / "out"), str(tmp_path / "ck"), 10, "loop", per_run),
                   env=env, check=True, capture_output=True, timeout=600)
    a = load_file(os.path.join(study, "hf", "model.safetensors"))
    b = load_file(str(tmp_path / "out" / "hf" / "model.safetensors"))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ma, mb = json.load(open(os.path.join(study, "metrics.json"))), json.load(open(tmp_path / "out" / "metrics.json"))
    assert ma["train_loss"] == mb["train_loss"] and ma["eval_loss"] == mb["eval_loss"]


def _jax_default_softmax_custom_jvp() -> bool:
    """jax_softmax_custom_jvp in a fresh process (this one may have run a Trainer, which sets it)."""
    out = subprocess.run([sys.executable, "-c", "import jax; print(jax.config.jax_softmax_custom_jvp)"],
                         env=_job_env(ROOT), capture_output=True, text=True, check=True).stdout
    return out.strip() == "True"


def test_a_warm_worker_traces_a_shapes_training_program_once(smoke):
    """Runs that differ only in lr, weight decay, epochs or seed share the loop engine's compiled
    programs: on each warm worker, only the first training of a shape (model and batch) traced them."""
    lines = open(os.path.join(smoke, "logs", "workers.log")).read().splitlines()
    seen, traced = set(), []
    for m in (re.search(r"worker (\d+): rc=0 .* train (\S+)$", ln) for ln in lines):
        if m:
            spec = json.load(open(os.path.join(smoke, m.group(2), "spec.json")))
            metrics = json.load(open(os.path.join(smoke, m.group(2), "metrics.json")))
            key = (m.group(1), spec["model"]["name"], spec["batch_size"])
            assert metrics["programs_traced"] == (0 if key in seen else 1), m.group(2)
            seen.add(key)
            traced.append(metrics["programs_traced"])
    assert len(traced) > 3 * len({k[1:] for k in seen}) and sum(traced) == len(seen)


def test_jobs_ran_on_warm_workers_that_left_with_snakemake(smoke):
    """Snakemake's onstart started a pool; every training, evaluation and sampling job ran on one of
    its workers, and the pool was gone when Snakemake was."""
    import psutil

    lines = open(os.path.join(smoke, "logs", "workers.log")).read().splitlines()
    ran = {tuple(m.groups()) for m in (re.search(r"rc=(\d+) .* (\S+) (\S+)$", ln) for ln in lines) if m}
    models = os.listdir(os.path.join(smoke, "results", "models"))
    assert models and all(("0", "train", f"results/models/{r}") in ran for r in models)
    assert all(("0", "evaluate", f"results/evals/{r}/eval.json") in ran for r in models)
    pools = [int(m.group(1)) for m in (re.match(r"pool (\d+):", ln) for ln in lines) if m]
    assert pools and not any(psutil.pid_exists(p) and "infinite_compute.cli.pool" in " ".join(psutil.Process(p).cmdline())
                             for p in pools)
    assert not os.listdir(os.path.join(smoke, "results", "workers"))
