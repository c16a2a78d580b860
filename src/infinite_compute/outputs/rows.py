"""The rows of the results tables, built from the study's records by pure functions: the plan, the
searches' final records, each run's spec, metrics and evaluation, the ensembles' curves, the CPT
evaluations. No file is read here (cli/results.py and cli/cpt.py read them); each function is a
unit under test (tests/test_rows.py), and results.SCHEMAS declares the columns."""

from __future__ import annotations

import json
import math
import re
from typing import Callable

import numpy as np

from ..study.plan import Plan
from ..study.specs import CptSpec, DistillSpec, spec_hash

NO_MEMBERSHIP = {"sweeps": [], "ensembles": []}


def searched_by(finals: list[dict]) -> dict[str, list[str]]:
    """run id -> the search cells that trained it."""
    searched: dict[str, list[str]] = {}
    for f in finals:
        for q in f["points"]:
            searched.setdefault(q["run_id"], []).append(f["cell"])
    return searched


def memberships(plan: Plan, ensembles: dict[str, dict]) -> dict[str, dict]:
    """run id -> its sweeps and ensembles; members of a search's ensemble are known only from the
    ensemble's record, so every ensemble's members come from `ensembles` (name -> record)."""
    out = {r: {"sweeps": list(m["sweeps"]), "ensembles": []} for r, m in plan.membership().items()}
    for name, e in ensembles.items():
        for r in e["members"]:
            out.setdefault(r, {"sweeps": [], "ensembles": []})["ensembles"].append(name)
    return out


def run_role(spec: dict, searched: bool, membership: dict, reseed: bool = False) -> str:
    """What a run is for: a student, a search point, a sweep point, an ensemble member, a reseed of a
    search's selection (`reseed`: one that is none of the others), or a teacher."""
    if spec["teacher"]:
        return "student"
    if searched:
        return "search"
    if membership["sweeps"]:
        return "sweep"
    if membership["ensembles"]:
        return "member"
    return "reseed" if reseed else "teacher"


def run_family(role: str, weight_decay: float, baseline_wd: float) -> str:
    """The benchmarks table's family of a run: a search or sweep point, or a reseed of a selection (a
    single model of a searched recipe), is `baseline` at the default weight decay and `tuned-wd`
    otherwise; other runs are their role."""
    if role not in ("sweep", "search", "reseed"):
        return role
    return "baseline" if np.isclose(weight_decay, baseline_wd) else "tuned-wd"


def run_row(rid: str, spec: dict, metrics: dict, ev: dict, role: str, membership: dict, searches: list[str]) -> dict:
    return {
        "run_id": rid, "spec_hash": spec_hash(spec), "role": role, "sweeps": membership["sweeps"], "searches": searches,
        "ensembles": membership["ensembles"],
        "model": spec["model"]["name"], "non_embedding_params": metrics["non_embedding_params"],
        "parameter_count": metrics["parameter_count"], "token_budget": spec["token_budget"],
        "epochs": spec["epochs"], "learning_rate": spec["learning_rate"],
        "weight_decay": spec["weight_decay"], "seed": spec["seed"], "batch_size": spec["batch_size"],
        "seq_len": spec["model"]["seq_len"], "num_train_steps": spec["num_train_steps"],
        "tokens_seen": metrics["tokens_seen"], "flops": metrics["flops"],
        "wall_seconds": metrics["wall_seconds"], "tokens_per_second": metrics["tokens_per_second"],
        "train_eval_loss": metrics["final_eval_loss"], "loss": ev["loss"],
        "diverged": bool(metrics["diverged"] or not np.isfinite(ev["loss"])), "data": spec["data"],
        "teacher": spec["teacher"], "synthetic_share": spec["synthetic_share"],
        "eval_curve": json.dumps(metrics["eval_loss"]),
    }


def ensemble_rows(name: str, record: dict) -> list[dict]:
    """One row per K of an ensemble's record (ensemble_curve's output)."""
    info, rows = record["info"], []
    for row in record["curve"]:
        k = row["ensemble_size"]
        rows.append(
            {
                "ensemble": name, "recipe": info["recipe"], "cell": info["cell"], "model": info["model"],
                "non_embedding_params": info["non_embedding_params"], "token_budget": info["token_budget"],
                "epochs": info["epochs"], "learning_rate": info["learning_rate"],
                "weight_decay": info["weight_decay"], "ensemble_size": k, "member_ids": record["members"][:k],
                "loss": row["loss_first"],
                "loss_mean": row["loss_mean"], "loss_std": row["loss_std"], "n_subsets": row["n_subsets"],
            }
        )
    return rows


def fraction_of_gain_kept(single: float, teacher: float, student: float) -> float:
    """How much of the teacher's gain over a single model of its recipe the student keeps:
    (single - student) / (single - teacher). Self-distillation has no gain to keep: nan."""
    gain = single - teacher
    return (single - student) / gain if gain > 0 else float("nan")


def distillation_row(d: DistillSpec, ensembles: dict[str, dict], losses: dict[str, float],
                     selected: dict[str, str]) -> dict:
    """A distillation's row: its teacher (an ensemble's full size, or one model), the single model
    of the teacher's recipe (the mean member of an ensemble), and its student."""
    if d.teacher_kind == "ensemble":
        e = ensembles[d.teacher_name]
        curve, teacher = e["curve"], e["members"]
        teacher_loss = curve[-1]["loss_first"]
        single = curve[0]["loss_mean"]  # the mean member: a single model of the same recipe
    else:  # one model: a given run, or a search cell's selected run (self-distillation)
        teacher = [selected[d.teacher_cell]] if d.teacher_kind == "search" else list(d.teacher_members)
        teacher_loss = single = losses[teacher[0]]
    student_loss = losses[d.student]
    return {
        "distillation": d.name, "teacher_kind": d.teacher_kind,
        "teacher": d.teacher_name if d.teacher_kind == "ensemble" else teacher[0],
        "teacher_size": len(teacher), "teacher_loss": teacher_loss,
        "single_model_loss": single, "student_id": d.student, "student_loss": student_loss,
        "synthetic_share": d.synthetic_share, "teacher_tokens": d.teacher_tokens,
        # self-distillation has no teacher gain to keep: nan, the figure shows losses
        "fraction_of_gain_kept": fraction_of_gain_kept(single, teacher_loss, student_loss),
    }


_SEED = re.compile(r"-s(\d+)$")


def tuning_row(final: dict, non_embedding_params: int, reseed_losses: dict[str, float] | None = None,
               selected_seed: int | None = None) -> dict:
    """A search cell's row: its selected run, its locally-optimal certificate, and its reseeds
    (`reseed_losses`: run id -> evaluated loss, in seed order; none when not given). `selected_seed`
    is the selected run's seed (default: the `-s<seed>` its run id ends with, if it does).
    `seed_noise_columns` adds the columns computed from the reseeds of every cell."""
    b = final["best"]
    if selected_seed is None and (m := _SEED.search(b["run_id"])):
        selected_seed = int(m[1])
    reseeds = dict(reseed_losses or {})
    return {
        "cell": final["cell"], "search": final["search"], "recipe": final["recipe"], "model": final["model"],
        "non_embedding_params": non_embedding_params, "token_budget": final["token_budget"],
        "run_id": b["run_id"], "loss": b["loss"], "learning_rate": b["learning_rate"],
        "weight_decay": b["weight_decay"], "epochs": b["epochs"], "status": final["status"],
        "certified": final["certified"], "edges": final["edges"], "on_grid": b["on_grid"], "rounds": final["rounds"],
        "n_trained": len(final["points"]), "neighbours": json.dumps(final["neighbours"]),
        "selected_seed": selected_seed, "reseed_ids": list(reseeds),
        "reseed_losses": [math.nan if v is None else float(v) for v in reseeds.values()],
    }


def seed_noise_columns(rows: list[dict]) -> list[dict]:
    """The tuning rows (`tuning_row`'s) with their seed noise, from the reseeds only (unbiased draws of
    the selected recipe; never the selected run, the lowest of many):

    - `loss_mean`: the mean of a cell's reseed losses, the recipe's unbiased loss (nan: no reseed);
    - `seed_sd`: their standard deviation, ddof 1 (nan with fewer than 2);
    - `pooled_sd`, `pooled_df`: over the cells of one (recipe, token_budget) with 2 or more reseeds,
      sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1)) and sum (n_i - 1) (nan and 0 when there is none);
    - `loss_se`: pooled_sd / sqrt(n), the standard error of this cell's loss_mean;
    - `winner_bias`: loss - loss_mean, the selection's winner's curse.

    A reseed whose loss is not finite (diverged) is listed but left out of these numbers."""
    per_cell = []
    for r in rows:
        x = np.array([v for v in r["reseed_losses"] if v is not None and math.isfinite(v)], dtype=np.float64)
        per_cell.append((len(x), float(x.mean()) if len(x) else math.nan,
                         float(x.std(ddof=1)) if len(x) >= 2 else math.nan))
    pooled: dict[tuple, tuple[float, int]] = {}
    for r, (n, _, sd) in zip(rows, per_cell):
        if n >= 2:
            key = (r["recipe"], r["token_budget"])
            ss, df = pooled.get(key, (0.0, 0))
            pooled[key] = (ss + (n - 1) * sd**2, df + n - 1)
    out = []
    for r, (n, mean, sd) in zip(rows, per_cell):
        ss, df = pooled.get((r["recipe"], r["token_budget"]), (0.0, 0))
        psd = math.sqrt(ss / df) if df else math.nan
        loss = math.nan if r["loss"] is None else float(r["loss"])
        out.append({**r, "loss_mean": mean, "seed_sd": sd, "pooled_sd": psd, "pooled_df": df,
                    "loss_se": psd / math.sqrt(n) if n else math.nan, "winner_bias": loss - mean})
    return out


def benchmark_rows(model_id: str, kind: str, family: str, loss: float, scores: dict[str, dict]) -> list[dict]:
    """One row per task of lm-eval's metrics (`scores`: task -> metrics) for a run or an ensemble."""
    return [{"model_id": model_id, "kind": kind, "family": family, "task": task, "loss": loss, **m}
            for task, m in scores.items()]


def study_rows(plan: Plan, finals: list[dict], specs: dict[str, dict], metrics: dict[str, dict],
               evals: dict[str, dict], ensembles: dict[str, dict], baseline_wd: float,
               score_run: Callable[[str], dict], score_ensemble: Callable[[str, int, list[str]], dict]) -> dict:
    """The rows of the runs, ensembles, distillation, benchmarks and tuning tables.

    `specs`, `metrics` and `evals` map every trained run id to its spec.json, metrics.json and
    eval.json (the searches' reseeds included); `ensembles` every ensemble's name to its record.
    `score_run(run id)` and `score_ensemble(name, K, member ids)` give lm-eval's metrics per task."""
    searched = searched_by(finals)
    membership = memberships(plan, ensembles)
    reseeds = {f["cell"]: plan.reseed_runs(f["cell"], f["best"]) for f in finals}
    reseeded = {r for ids in reseeds.values() for r in ids}
    runs, bench = [], []
    for rid in sorted(set(plan.runs) | set(searched) | set(membership) | reseeded):
        spec, ev = specs[rid], evals[rid]
        mem = membership.get(rid, NO_MEMBERSHIP)
        role = run_role(spec, rid in searched, mem, rid in reseeded)
        runs.append(run_row(rid, spec, metrics[rid], ev, role, mem, searched.get(rid, [])))
        bench += benchmark_rows(rid, "run", run_family(role, spec["weight_decay"], baseline_wd), ev["loss"],
                                score_run(rid))
    ens = []
    for name, e in ensembles.items():
        rows = ensemble_rows(name, e)
        ens += rows
        for row in rows:
            k = row["ensemble_size"]
            bench += benchmark_rows(f"{name}:K={k}", "ensemble", "ensemble", row["loss"],
                                    score_ensemble(name, k, e["members"][:k]))
    selected = {f["cell"]: f["best"]["run_id"] for f in finals}
    losses = {r: ev["loss"] for r, ev in evals.items()}
    dist = [distillation_row(d, ensembles, losses, selected) for _, d in sorted(plan.distillations.items())]
    params_of = {r["run_id"]: r["non_embedding_params"] for r in runs}
    tuning = seed_noise_columns([
        tuning_row(f, params_of[f["best"]["run_id"]], {r: losses[r] for r in reseeds[f["cell"]]},
                   specs[f["best"]["run_id"]]["seed"])
        for f in finals])
    return {"runs": runs, "ensembles": ens, "distillation": dist, "benchmarks": bench, "tuning": tuning}


def cpt_rows(cpt: CptSpec, specs: dict, evals: dict, selected: str, ensemble: dict,
             score=lambda members: {}) -> list[dict]:
    """One row per CPT model: the default recipe at each budget, the small batch, each regularized
    weight decay (the selected one marked), and the ensemble at each K; with `score` (run ids ->
    lm-eval's metrics per task of cpt.tasks, of one model or its members' mixture) their benchmarks."""
    rows = []

    def add(recipe, model_id, rid, ev, members=None, **extra):
        s = specs[rid]
        bench = score(members or [rid])
        rows.append({
            "recipe": recipe, "model_id": model_id,
            # a run's spec hash; an ensemble's members are named (their specs are not read here)
            "spec_hash": None if members else spec_hash(s), "member_ids": list(members or [rid]),
            "base_cell": cpt.base_cell, "base": cpt.base, "model": cpt.model,
            "token_budget": int(s["token_budget"]), "epochs": int(s["epochs"]), "learning_rate": s["learning_rate"],
            "weight_decay": s["weight_decay"], "batch_size": int(s["batch_size"]), "ensemble_size": 1,
            "selected": False, "loss": ev["loss"], "accuracy": ev["accuracy"],
            "accuracy_stderr": ev["accuracy_stderr"], "n_questions": int(ev["n_questions"]),
            "benchmark_accuracy": float(np.mean([m["acc"] for m in bench.values()])) if bench else float("nan"),
            "benchmarks": json.dumps(bench, sort_keys=True), **extra,
        })

    for _, rid in sorted(cpt.scaling.items()):
        add("default", rid, rid, evals[rid])
    add("small-batch", cpt.small_batch, cpt.small_batch, evals[cpt.small_batch])
    for rid in cpt.regularized:
        add("regularized", rid, rid, evals[rid], selected=rid == selected)
    for row in ensemble["curve"]:
        k = row["ensemble_size"]
        add("ensemble", f"{selected}:K={k}", selected, row, members=cpt.members[selected][:k], ensemble_size=int(k),
            selected=True)
    return rows
