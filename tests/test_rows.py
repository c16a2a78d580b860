"""The results tables' rows (outputs/rows.py) on hand-made records, each number checkable by hand."""

import dataclasses
import json
import math
import os

import numpy as np

import pytest
from conftest import ROOT

from infinite_compute.outputs import rows
from infinite_compute.study.config import load_config
from infinite_compute.study.plan import build_plan
from infinite_compute.study.specs import CptSpec, DistillSpec, spec_hash


def spec(rid, teacher=None, wd=0.1, model="t1"):
    return {"run_id": rid, "teacher": teacher, "model": {"name": model, "seq_len": 64}, "token_budget": 8192,
            "epochs": 2, "learning_rate": 0.01, "weight_decay": wd, "seed": 0, "batch_size": 8, "num_train_steps": 32,
            "data": "d8192" if teacher is None else f"distill/{teacher}", "synthetic_share": 0.0 if teacher is None else 0.5}


def metrics(rid, loss):
    return {"run_id": rid, "non_embedding_params": 1000, "parameter_count": 2000, "tokens_seen": 16384, "flops": 1e9,
            "wall_seconds": 2.0, "tokens_per_second": 8192.0, "final_eval_loss": loss, "diverged": False,
            "eval_loss": [{"step": 0, "loss": 6.0}, {"step": 31, "loss": loss}]}


def curve(*losses_first, means=None):
    means = means or losses_first
    return [{"ensemble_size": k + 1, "loss_first": lf, "loss_mean": lm, "loss_std": 0.0, "n_subsets": 1}
            for k, (lf, lm) in enumerate(zip(losses_first, means))]


def test_fraction_of_gain_kept_is_the_students_share_of_the_teachers_gain():
    assert rows.fraction_of_gain_kept(single=5.0, teacher=4.0, student=4.5) == pytest.approx(0.5)
    assert rows.fraction_of_gain_kept(single=5.0, teacher=4.0, student=3.5) == pytest.approx(1.5)  # beyond the teacher
    assert rows.fraction_of_gain_kept(single=5.0, teacher=4.0, student=5.5) == pytest.approx(-0.5)
    assert math.isnan(rows.fraction_of_gain_kept(single=4.0, teacher=4.0, student=3.0))  # no gain to keep
    assert math.isnan(rows.fraction_of_gain_kept(single=4.0, teacher=4.5, student=3.0))


def test_roles_and_families():
    none = {"sweeps": [], "ensembles": []}
    assert rows.run_role(spec("s", teacher="d"), True, {"sweeps": ["x"], "ensembles": []}) == "student"
    assert rows.run_role(spec("a"), True, {"sweeps": ["x"], "ensembles": ["e"]}) == "search"
    assert rows.run_role(spec("a"), False, {"sweeps": ["x"], "ensembles": ["e"]}) == "sweep"
    assert rows.run_role(spec("a"), False, {"sweeps": [], "ensembles": ["e"]}) == "member"
    assert rows.run_role(spec("a"), False, none) == "teacher"
    # a reseed of a search's selection, unless it is also an ensemble member (or a search or sweep point)
    assert rows.run_role(spec("a"), False, none, reseed=True) == "reseed"
    assert rows.run_role(spec("a"), False, {"sweeps": [], "ensembles": ["e"]}, reseed=True) == "member"
    assert rows.run_role(spec("a"), True, none, reseed=True) == "search"
    assert rows.run_family("reseed", 0.1, 0.1) == "baseline" and rows.run_family("reseed", 0.8, 0.1) == "tuned-wd"
    assert rows.run_family("search", 0.1, 0.1) == "baseline"
    assert rows.run_family("sweep", 0.1 + 1e-12, 0.1) == "baseline"
    assert rows.run_family("search", 0.8, 0.1) == "tuned-wd"
    assert rows.run_family("member", 0.8, 0.1) == "member"


def test_a_search_ensembles_members_are_known_from_its_record():
    plan = build_plan_of_smoke()
    ens = {"reg-ens-t1-d8k": {"members": ["m0", "m1"]}}
    m = rows.memberships(plan, ens)
    assert m["m0"] == {"sweeps": [], "ensembles": ["reg-ens-t1-d8k"]}
    fixed = plan.ensembles["t1-ens"].members[0]
    assert m[fixed]["ensembles"] == []  # the fixed ensemble's membership comes from its record too


def build_plan_of_smoke():
    return build_plan(load_config(os.path.join(ROOT, ".test", "config.yaml"),
                                  os.path.join(ROOT, "schemas", "config.schema.yaml")))


def test_ensemble_rows_take_the_first_k_members_and_the_subset_means():
    rec = {"info": {"recipe": "fixed", "cell": None, "model": "t1", "non_embedding_params": 1000, "token_budget": 8192,
                    "epochs": 2, "learning_rate": 0.01, "weight_decay": 0.1},
           "members": ["a", "b", "c"], "curve": curve(5.0, 4.8, 4.7, means=[5.1, 4.85, 4.7])}
    out = rows.ensemble_rows("e", rec)
    assert [r["ensemble_size"] for r in out] == [1, 2, 3]
    assert [r["member_ids"] for r in out] == [["a"], ["a", "b"], ["a", "b", "c"]]
    assert [r["loss"] for r in out] == [5.0, 4.8, 4.7] and out[0]["loss_mean"] == 5.1


def distill(kind, name, members=(), cell=None):
    return DistillSpec(name=f"{name}-d", teacher_members=tuple(members), teacher_kind=kind, teacher_name=name,
                       student=f"s-{name}", synthetic_share=0.5, teacher_tokens=512, temperature=1.0,
                       token_budget=8192, seed=0, teacher_cell=cell)


def test_distillation_rows_of_an_ensemble_a_search_and_a_given_teacher():
    ens = {"e": {"members": ["a", "b"], "curve": curve(4.9, 4.6, means=[5.0, 4.6])}}
    losses = {"s-e": 4.8, "s-cell": 4.4, "t": 4.5, "s-t": 4.6}
    r = rows.distillation_row(distill("ensemble", "e"), ens, losses, {})
    # the teacher is the full ensemble (4.6); the single model is the mean member (5.0): kept (5.0 - 4.8) / 0.4
    assert (r["teacher_loss"], r["single_model_loss"], r["student_loss"]) == (4.6, 5.0, 4.8)
    assert r["teacher_size"] == 2 and r["fraction_of_gain_kept"] == pytest.approx(0.5)
    r = rows.distillation_row(distill("search", "cell", cell="cell"), ens, {**losses, "t": 4.5}, {"cell": "t"})
    assert r["teacher"] == "t" and r["teacher_loss"] == r["single_model_loss"] == 4.5
    assert math.isnan(r["fraction_of_gain_kept"])  # self-distillation: no teacher gain
    r = rows.distillation_row(distill("single", "t", members=["t"]), ens, losses, {})
    assert (r["teacher"], r["teacher_size"], r["student_loss"]) == ("t", 1, 4.6)


def final(cell, best, points, status="certified"):
    return {"cell": cell, "search": "reg", "recipe": "regularized", "model": "t1", "token_budget": 8192,
            "best": {"run_id": best, "loss": 4.5, "learning_rate": 0.01, "weight_decay": 0.4, "epochs": 2,
                     "on_grid": True},
            "status": status, "certified": status == "certified", "edges": [], "rounds": 2,
            "points": [{"run_id": p} for p in points], "neighbours": [{"axis": "epochs", "loss": 4.6}]}


def test_tuning_row_is_the_selection_and_its_certificate():
    r = rows.tuning_row(final("c", "b", ["a", "b", "c"]), 1234)
    assert (r["run_id"], r["weight_decay"], r["n_trained"], r["rounds"], r["non_embedding_params"]) == ("b", 0.4, 3, 2,
                                                                                                     1234)
    assert json.loads(r["neighbours"]) == [{"axis": "epochs", "loss": 4.6}] and r["certified"]
    assert r["reseed_ids"] == [] and r["reseed_losses"] == [] and r["selected_seed"] is None  # "b": no -s<seed>
    r = rows.tuning_row(final("c", "t1-d8k-ep2-lr0.01-wd0.4-s3", ["a"]), 1234, {"r4": 4.7, "r5": None})
    assert r["selected_seed"] == 3 and r["reseed_ids"] == ["r4", "r5"]
    assert r["reseed_losses"][0] == 4.7 and math.isnan(r["reseed_losses"][1])
    assert rows.tuning_row(final("c", "b", ["a"]), 1, selected_seed=7)["selected_seed"] == 7


def noise_row(recipe, budget, loss, reseed_losses):
    return {"recipe": recipe, "token_budget": budget, "loss": loss, "reseed_losses": list(reseed_losses)}


def test_seed_noise_is_the_reseeds_spread_pooled_over_a_recipe_and_budget():
    out = rows.seed_noise_columns([
        noise_row("baseline", 8192, 0.5, [1.0, 2.0, 3.0]),  # mean 2, sd 1
        noise_row("baseline", 8192, 2.5, [2.0, 4.0]),  # mean 3, sd sqrt(2)
        noise_row("baseline", 8192, 1.0, [5.0]),  # one reseed: a mean, no sd, not pooled
        noise_row("baseline", 8192, 1.0, []),  # none: nothing but the pooled sd of its recipe and budget
        noise_row("baseline", 4096, 1.0, [1.0, float("nan"), 1.5]),  # a diverged reseed is left out
        noise_row("regularized", 8192, 1.0, [7.0, 9.0]),  # another recipe: pooled apart
    ])
    a, b, one, none, diverged, reg = out
    assert (a["loss_mean"], a["seed_sd"], b["loss_mean"]) == (2.0, 1.0, 3.0)
    assert b["seed_sd"] == pytest.approx(math.sqrt(2))
    pooled = math.sqrt((2 * 1.0 + 1 * 2.0) / 3)  # sum (n_i - 1) s_i^2 / sum (n_i - 1)
    for r in (a, b, one, none):
        assert r["pooled_sd"] == pytest.approx(pooled) and r["pooled_df"] == 3
    assert a["loss_se"] == pytest.approx(pooled / math.sqrt(3)) and b["loss_se"] == pytest.approx(pooled / math.sqrt(2))
    assert one["loss_se"] == pytest.approx(pooled) and math.isnan(none["loss_se"])
    # the winner's curse: the selected run's loss against the mean of its recipe's other seeds
    assert (a["winner_bias"], b["winner_bias"], one["winner_bias"]) == (-1.5, -0.5, -4.0)
    assert one["loss_mean"] == 5.0 and math.isnan(one["seed_sd"])
    assert all(math.isnan(none[k]) for k in ("loss_mean", "seed_sd", "winner_bias"))
    assert (diverged["loss_mean"], diverged["pooled_df"]) == (1.25, 1)
    assert diverged["seed_sd"] == pytest.approx(math.sqrt(0.125)) == pytest.approx(diverged["pooled_sd"])
    assert (reg["seed_sd"], reg["pooled_df"]) == (pytest.approx(math.sqrt(2)), 1)
    assert reg["pooled_sd"] == pytest.approx(math.sqrt(2))
    # nothing to pool: nan and 0
    (lone,) = rows.seed_noise_columns([noise_row("baseline", 8192, 1.0, [])])
    assert math.isnan(lone["pooled_sd"]) and lone["pooled_df"] == 0


def test_study_rows_join_every_record_once():
    plan = build_plan_of_smoke()
    search_runs = ["p1", "p2"]
    finals = [final("reg-t1-d8k", "p2", search_runs)]
    ens_members = list(plan.ensembles["t1-ens"].members)
    ensembles = {"t1-ens": {"info": {"recipe": "fixed", "cell": None, "model": "t1", "non_embedding_params": 1000,
                                     "token_budget": 8192, "epochs": 2, "learning_rate": 0.01, "weight_decay": 0.1},
                            "members": ens_members, "curve": curve(5.0, 4.9, 4.8)}}
    students = {d.student: d.name for d in plan.distillations.values()}
    # the reg cell's reseeds: its selection's recipe (lr 0.01, wd 0.4, 2 epochs) at seeds 1 and 2
    reseeds = plan.reseed_runs("reg-t1-d8k", finals[0]["best"])
    assert reseeds == ["t1-d8k-ep2-lr0.01-wd0.4-s1", "t1-d8k-ep2-lr0.01-wd0.4-s2"]
    ids = sorted(set(plan.runs) | set(search_runs) | set(reseeds))
    specs = {r: spec(r, teacher=students.get(r), wd=0.4 if r == "p2" or r in reseeds else 0.1) for r in ids}
    loss = {r: 5.0 - 0.01 * i for i, r in enumerate(ids)}
    evals = {r: {"run_id": r, "loss": loss[r]} for r in ids}
    scored = []

    def score_run(rid):
        scored.append(rid)
        return {"task": {"acc": 0.5}}

    def score_ensemble(name, k, members):
        scored.append(f"{name}:K={k}")
        assert members == ens_members[:k]
        return {"task": {"acc": 0.6}}

    # the distillation from the fixed ensemble only (the others' teachers are known after their searches)
    plan = dataclasses.replace(plan, distillations={k: v for k, v in plan.distillations.items()
                                                    if v.teacher_kind == "ensemble" and v.teacher_name == "t1-ens"})
    out = rows.study_rows(plan, finals, specs, {r: metrics(r, loss[r]) for r in ids}, evals, ensembles, 0.1,
                          score_run, score_ensemble)
    runs = {r["run_id"]: r for r in out["runs"]}
    assert sorted(runs) == ids and sorted(scored) == sorted(ids + [f"t1-ens:K={k}" for k in (1, 2, 3)])
    assert runs["p2"]["role"] == "search" and runs["p2"]["searches"] == ["reg-t1-d8k"]
    assert runs[ens_members[1]]["role"] == "member" and runs[ens_members[1]]["ensembles"] == ["t1-ens"]
    fam = {(b["model_id"]): b["family"] for b in out["benchmarks"]}
    assert fam["p2"] == "tuned-wd" and fam["p1"] == "baseline" and fam["t1-ens:K=3"] == "ensemble"
    assert [r["ensemble_size"] for r in out["ensembles"]] == [1, 2, 3]
    (d,) = out["distillation"]
    assert d["student_loss"] == loss[d["student_id"]] and d["teacher_loss"] == 4.8 and d["single_model_loss"] == 5.0
    (t,) = out["tuning"]
    assert t["run_id"] == "p2" and t["non_embedding_params"] == 1000
    # the reseeds: in the runs table (role reseed) and in the cell's row with their evaluated losses
    assert [runs[r]["role"] for r in reseeds] == ["reseed", "reseed"] and fam[reseeds[0]] == "tuned-wd"
    assert t["selected_seed"] == 0 and t["reseed_ids"] == reseeds and t["reseed_losses"] == [loss[r] for r in reseeds]
    mean = (loss[reseeds[0]] + loss[reseeds[1]]) / 2
    assert t["loss_mean"] == pytest.approx(mean) and t["winner_bias"] == pytest.approx(t["loss"] - mean)
    assert t["seed_sd"] == pytest.approx(abs(loss[reseeds[0]] - loss[reseeds[1]]) / math.sqrt(2))
    assert t["pooled_sd"] == pytest.approx(t["seed_sd"]) and t["pooled_df"] == 1
    from infinite_compute.outputs.results import to_table

    prov = {"config_hash": "h", "code_version": "v", "package_versions": "{}"}
    assert to_table("tuning", [{**t, **prov}]).num_rows == 1  # the table's schema holds every column


def test_cpt_rows_cover_every_recipe_and_mark_the_selection():
    cpt = CptSpec(base_cell="reg-t1-d8k", model="t1", token_budget=2048, scaling={4096: "d4", 1024: "d1", 2048: "d2"},
                  small_batch="sb", regularized=("r1", "r4"), members={"r1": ("r1", "r1b"), "r4": ("r4", "r4b")},
                  problems={}, answer_tokens=4, seed=0)
    ids = ["d1", "d2", "d4", "sb", "r1", "r4"]
    specs = {r: {"token_budget": {"d1": 1024, "d4": 4096}.get(r, 2048), "epochs": 1, "learning_rate": 0.01,
                 "weight_decay": 0.1, "batch_size": 8} for r in ids}
    ev = {r: {"loss": 3.0 + i, "accuracy": 0.1, "accuracy_stderr": 0.01, "n_questions": 20} for i, r in enumerate(ids)}
    ens = {"members": ["r4", "r4b"],
           "curve": [{"ensemble_size": k, "loss": 2.0, "accuracy": 0.2, "accuracy_stderr": 0.02, "n_questions": 20}
                     for k in (1, 2)]}
    out = rows.cpt_rows(cpt, specs, ev, "r4", ens)
    assert all(np.isnan(r["benchmark_accuracy"]) and r["benchmarks"] == "{}" for r in out)  # no cpt.tasks
    # with cpt.tasks: each model scored alone, the ensemble at K as the mixture of its first K members
    scored = rows.cpt_rows(cpt, specs, ev, "r4", ens,
                           lambda members: {"a": {"acc": 0.1 * len(members)}, "b": {"acc": 0.3 if "r4b" in members else 0.0}})
    assert [r["benchmark_accuracy"] for r in scored][-3:] == pytest.approx([0.05, 0.05, 0.25])
    assert json.loads(scored[-1]["benchmarks"]) == {"a": {"acc": 0.2}, "b": {"acc": 0.3}}
    assert [(r["recipe"], r["model_id"]) for r in out] == [
        ("default", "d1"), ("default", "d2"), ("default", "d4"), ("small-batch", "sb"), ("regularized", "r1"),
        ("regularized", "r4"), ("ensemble", "r4:K=1"), ("ensemble", "r4:K=2")]
    assert [r["selected"] for r in out] == [False] * 4 + [False, True, True, True]
    assert [r["token_budget"] for r in out[:3]] == [1024, 2048, 4096] and out[-1]["ensemble_size"] == 2
    assert [r["member_ids"] for r in out[-3:]] == [["r4"], ["r4"], ["r4", "r4b"]]
    assert out[0]["spec_hash"] == spec_hash(specs["d1"]) and out[-1]["spec_hash"] is None
