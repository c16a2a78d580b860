"""The study's tables from W&B runs that were not trained here: each run record (wandb_files.read_run
or wandb_runs.api_record: name, config, summary, history, state, tags) is placed in the study's
schema, and the tuning, ensembles and distillation tables are derived from the placed runs by the
study's own rules. Pure functions of the records; cli/imports.py reads and writes the files.

A run is placed from its name in the paper's grammar (study.paper_names) and its levanter config
(`trainer.num_train_steps`, `trainer.train_batch_size`, `model.seq_len` or its newer names), or,
for a run this study logged itself (runs.wandb_config), from the spec in its config. A run that
cannot be placed is returned with the reason, never dropped silently."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..study.paper_names import RunNameError, parse_ensemble_eval, parse_name
from ..study.specs import recipe_of, spec_hash
from ..study.tuning import AXES, Cell, advance
from .rows import ensemble_rows, seed_noise_columns, tuning_row  # the study's own row builders

# where levanter's configs keep the context length, newest first
SEQ_LEN_KEYS = (("model", "seq_len"), ("train_seq_len",), ("model", "max_seq_len"), ("data", "seq_len"))
STUDY_CONFIG = "study"  # the key under which this study logs a run's spec (runs.wandb_config)


@dataclass
class ImportSettings:
    data: str = "dclm"  # the study's training data: its eval key, and which runs are the study's
    eval_key: str = "eval/{data}/loss"  # the validation loss key; {data} is filled in
    baseline_weight_decay: float = 0.1
    batch_size: int | None = None  # keep runs of this batch size only (None: any)
    tags: list[str] = field(default_factory=list)  # keep runs with one of these tags (empty: all)
    skip_tags: list[str] = field(default_factory=lambda: ["ignore"])
    states: list[str] = field(default_factory=lambda: ["finished"])
    ensemble_teacher: str = "ens"  # a teacher data name holding this is an ensemble's samples

    @property
    def loss_key(self) -> str:
        return self.eval_key.format(data=self.data)


class Unplaced(ValueError):
    """A run the mapping cannot place; the message is the reason reported."""


def _get(config: dict, path: tuple) -> object:
    for k in path:
        if not isinstance(config, dict) or k not in config:
            return None
        config = config[k]
    return config


def final_value(record: dict, key: str) -> float | None:
    """The run's final value of `key`: its summary (exact, the last value logged), else its last history row."""
    v = record["summary"].get(key)
    if v is None:
        values = [row[key] for row in record["history"] if row.get(key) is not None]
        v = values[-1] if values else None
    return float(v) if isinstance(v, (int, float)) else None


def curve(record: dict, key: str) -> list[dict]:
    return [{"step": int(row.get("_step", i)), "loss": float(row[key])}
            for i, row in enumerate(record["history"]) if isinstance(row.get(key), (int, float))]


def check_record(record: dict, s: ImportSettings) -> None:
    """The filters: state, tags. Raises Unplaced with the reason."""
    if record["state"] not in s.states:
        raise Unplaced(f"state '{record['state']}' (kept: {', '.join(s.states)})")
    tags = set(record.get("tags") or [])
    if tags & set(s.skip_tags):
        raise Unplaced(f"tagged {sorted(tags & set(s.skip_tags))}")
    if s.tags and not tags & set(s.tags):
        raise Unplaced(f"none of the tags {s.tags} (has {sorted(tags)})")


def _loss(record: dict, s: ImportSettings) -> float:
    loss = final_value(record, s.loss_key)
    if loss is None:
        raise Unplaced(f"no value of '{s.loss_key}' in its summary or history")
    return loss


def _from_study_spec(record: dict, s: ImportSettings) -> dict:
    """A run this study logged: its spec is in the config (runs.wandb_config)."""
    spec = record["config"][STUDY_CONFIG]
    if spec.get("init_from"):
        raise Unplaced(f"a continued pre-training run (from {spec['init_from']}): the import rebuilds the "
                       "pre-training study's tables only")
    summary = record["summary"]
    return {
        "run_id": spec["run_id"], "spec_hash": spec_hash(spec), "model": spec["model"]["name"],
        "non_embedding_params": int(summary.get("non_embedding_params") or 0),
        "parameter_count": int(summary.get("parameter_count") or 0), "token_budget": int(spec["token_budget"]),
        "epochs": int(spec["epochs"]), "learning_rate": float(spec["learning_rate"]),
        "weight_decay": float(spec["weight_decay"]), "seed": int(spec["seed"]), "batch_size": int(spec["batch_size"]),
        "seq_len": int(spec["model"]["seq_len"]), "num_train_steps": int(spec["num_train_steps"]),
        "data": spec["data"], "teacher": spec["teacher"], "synthetic_share": float(spec["synthetic_share"]),
        # the seeds past 0 of one recipe are its ensemble's members
        "recipe_key": (key := recipe_of(spec["run_id"])), "member_of": key if spec["seed"] else None,
    }


def _from_paper_name(record: dict, s: ImportSettings) -> dict:
    try:
        p = parse_name(record["name"])
    except RunNameError as e:
        raise Unplaced(str(e)) from None
    c = record["config"]
    steps, batch = _get(c, ("trainer", "num_train_steps")), _get(c, ("trainer", "train_batch_size"))
    seq = next((v for k in SEQ_LEN_KEYS if (v := _get(c, k)) is not None), None)
    if steps is not None and batch is not None and seq is not None:
        # the authors' own count: steps x batch x seq / epochs, without the teacher's share of the mix
        budget = int(round(int(steps) * int(batch) * int(seq) * (1 - p.teacher_share) / p.epochs))
    else:
        missing = [n for n, v in (("trainer.num_train_steps", steps), ("trainer.train_batch_size", batch),
                                  ("model.seq_len", seq)) if v is None]
        raise Unplaced(f"config has no {', '.join(missing)} (the token budget is computed from them)")
    params = record["summary"].get("parameter_count")
    seed = p.train_seed if p.train_seed is not None else int(_get(c, ("trainer", "seed")) or 0)
    return {
        "run_id": p.name, "spec_hash": None, "model": p.model, "non_embedding_params": int(p.nominal_params),
        "parameter_count": int(params) if isinstance(params, (int, float)) else int(p.nominal_params),
        "token_budget": budget, "epochs": p.epochs, "learning_rate": p.learning_rate, "weight_decay": p.weight_decay,
        "seed": seed, "batch_size": int(batch), "seq_len": int(seq), "num_train_steps": int(steps), "data": p.data,
        "teacher": p.teacher, "synthetic_share": p.teacher_share,
        # seed variants of one recipe are ensemble members (the paper's `-ts{t}-ds{d}` runs)
        "recipe_key": p.recipe_key, "member_of": p.recipe_key if p.train_seed is not None else None,
        "tokens_label": p.tokens_label,
    }


def place_run(record: dict, s: ImportSettings) -> dict:
    """A training run's fields (before its role): from the study's spec if it logged one, else from its
    name in the paper's grammar. Raises Unplaced with the reason."""
    check_record(record, s)
    fields = (_from_study_spec if STUDY_CONFIG in record["config"] else _from_paper_name)(record, s)
    if STUDY_CONFIG not in record["config"] and fields["data"] != s.data:  # this study's data: its budgets
        raise Unplaced(f"trained on '{fields['data']}', not the study's data '{s.data}'")
    if s.batch_size is not None and fields["batch_size"] != s.batch_size:
        raise Unplaced(f"batch size {fields['batch_size']}, the study's is {s.batch_size}")
    loss = _loss(record, s)
    summary = record["summary"]
    runtime = summary.get("wall_seconds", summary.get("_runtime"))  # this study's own, else W&B's
    tokens = summary.get("throughput/total_tokens")
    tokens = int(tokens) if isinstance(tokens, (int, float)) else fields["num_train_steps"] * fields["batch_size"] \
        * fields["seq_len"]
    wall = float(runtime) if isinstance(runtime, (int, float)) else math.nan
    return {
        **fields, "tokens_seen": tokens, "flops": float(summary.get("throughput/total_gflops") or math.nan) * 1e9,
        "wall_seconds": wall, "tokens_per_second": tokens / wall if wall and wall > 0 else math.nan,
        "train_eval_loss": loss, "loss": loss, "diverged": not math.isfinite(loss),
        "eval_curve": json.dumps(curve(record, s.loss_key)),
    }


def cell_id(recipe: str, model: str, budget: int) -> str:
    return f"{recipe}-{model}-d{budget}"


def search_cells(runs: list[dict], baseline_wd: float) -> dict[str, list[dict]]:
    """The imported grid as the study's search cells: per (model, token budget) a regularized cell of
    every single-seed run, and a baseline cell of those at the default weight decay."""
    cells: dict[str, list[dict]] = {}
    for r in runs:
        if r["teacher"] or r["member_of"] is not None:
            continue
        cells.setdefault(cell_id("regularized", r["model"], r["token_budget"]), []).append(r)
        if np.isclose(r["weight_decay"], baseline_wd):
            cells.setdefault(cell_id("baseline", r["model"], r["token_budget"]), []).append(r)
    return cells


def tuning_final(cell: str, runs: list[dict]) -> dict:
    """A cell's outcome in the shape of a search's final record (study.tuning.final_record): its best
    run and the paper's certificate on the grid its runs span (each axis: the values trained)."""
    recipe, first = cell.split("-", 1)[0], runs[0]
    axes = tuple(tuple(sorted({r[a] for r in runs})) for a in AXES)
    by_point: dict[tuple, dict] = {}
    for r in runs:
        p = tuple(r[a] for a in AXES)
        if p not in by_point or r["loss"] < by_point[p]["loss"]:
            by_point[p] = r  # a point trained twice (a rerun): the lower loss counts
    losses = {p: (r["loss"] if math.isfinite(r["loss"]) else math.nan) for p, r in by_point.items()}
    best = min(losses, key=lambda p: (losses[p] if math.isfinite(losses[p]) else math.inf, p))
    c = Cell(cell_id=cell, search=f"imported-{recipe}", recipe=recipe, model=first["model"],
             token_budget=first["token_budget"], seed=0, axes=axes, grid=axes, start=best, mode="grid", max_rounds=1)
    v = advance(c, losses, 0)
    status = "incomplete" if v["status"] == "round_limit" else v["status"]  # a neighbour was never trained
    b = by_point[v["best"]]
    return {
        "cell": cell, "search": c.search, "recipe": recipe, "model": c.model, "token_budget": c.token_budget,
        "status": status, "certified": status == "certified", "edges": v["edges"], "rounds": 1,
        "best": {"run_id": b["run_id"], "loss": b["loss"], "learning_rate": b["learning_rate"],
                 "weight_decay": b["weight_decay"], "epochs": b["epochs"], "on_grid": True},
        "neighbours": [{"axis": n["axis"], "direction": n["direction"],
                        "run_id": by_point[n["point"]]["run_id"] if n["point"] in by_point else None, "loss": n["loss"]}
                       for n in v["neighbours"]],
        "points": [{"run_id": r["run_id"], "point": list(p), "round": 0, "loss": r["loss"]} for p, r in
                   sorted(by_point.items())],
    }


def reseeds_of(final: dict, placed: list[dict]) -> list[dict]:
    """A cell's reseeds among the imported runs: the runs (not students) of its model and token budget
    with its selected run's learning rate, weight decay and epochs and another seed, in seed order."""
    b = final["best"]
    sel = next(r for r in placed if r["run_id"] == b["run_id"])
    return sorted((r for r in placed if not r["teacher"] and r["run_id"] != sel["run_id"]
                   and r["model"] == sel["model"] and r["token_budget"] == sel["token_budget"]
                   and r["epochs"] == sel["epochs"] and r["seed"] != sel["seed"]
                   and math.isclose(r["learning_rate"], sel["learning_rate"], rel_tol=1e-9)
                   and math.isclose(r["weight_decay"], sel["weight_decay"], rel_tol=1e-9)),
                  key=lambda r: (r["seed"], r["run_id"]))


def member_fields(evals: list[tuple], placed: list[dict]) -> list[tuple[int, dict, float]]:
    """An ensemble evaluation's member fields (model, budget, hyperparameters) from the imported training
    runs: an evaluation's own config is its evaluation job's (its steps are not the members'), so they
    come from a member run of the recipe, else from a run of the same model and token count (the name's
    label), else the evaluation is not placed (its report entry says why)."""
    by_recipe = {r["recipe_key"]: r for r in placed if r["recipe_key"]}
    by_label = {(r["model"], r["tokens_label"]): r for r in placed if r.get("tokens_label")}
    out = []
    for k, member, loss, entry in evals:
        ref = by_recipe.get(member.recipe_key) or by_label.get((member.model, member.tokens_label))
        if ref is None:
            entry.update(placed=False, role=None, reason=f"no imported training run of its members "
                         f"({member.recipe_key}) or of {member.model} at {member.tokens_label} tokens")
            continue
        out.append((k, {**ref, "epochs": member.epochs, "learning_rate": member.learning_rate,
                        "weight_decay": member.weight_decay, "recipe_key": member.recipe_key}, loss))
    return out


def ensemble_records(evals: list[tuple[int, dict, float]], members: dict[str, list[dict]],
                     best_cells: dict[tuple, dict]) -> dict[str, dict]:
    """Ensembles from their evaluation runs: (K, the member recipe's fields, loss) per run, grouped by
    member recipe. K=1 is the mean member when seed runs of the recipe were imported (`members`:
    recipe key -> its runs), which gives the study its seed noise. Per (model, budget), the recipe
    whose largest ensemble is lowest is the study's ensemble recipe ("imported"); the others are kept
    as fixed ensembles (their own L(K) fits, outside the joint fit)."""
    by_recipe: dict[str, dict] = {}
    for k, m, loss in evals:
        e = by_recipe.setdefault(m["recipe_key"], {"info": m, "losses": {}})
        e["losses"][k] = min(loss, e["losses"].get(k, math.inf))
    best_of: dict[tuple, tuple[str, float]] = {}
    for key, e in by_recipe.items():
        top = e["losses"][max(e["losses"])]
        where = (e["info"]["model"], e["info"]["token_budget"])
        if where not in best_of or top < best_of[where][1]:
            best_of[where] = (key, top)
    out = {}
    for key, e in sorted(by_recipe.items()):
        m, seeds = e["info"], sorted(members.get(key, []), key=lambda r: r["seed"])
        where = (m["model"], m["token_budget"])
        recipe = "imported" if best_of[where][0] == key else "fixed"
        cell = best_cells.get(("regularized",) + where)
        seed_losses = [r["loss"] for r in seeds if math.isfinite(r["loss"])]
        curve_rows = []
        for k in sorted(e["losses"]):
            row = {"ensemble_size": k, "loss_first": e["losses"][k], "loss_mean": e["losses"][k],
                   "loss_std": math.nan, "n_subsets": 1}
            if k == 1 and len(seed_losses) > 1:
                row.update(loss_mean=float(np.mean(seed_losses)), loss_std=float(np.std(seed_losses, ddof=1)),
                           n_subsets=len(seed_losses))
            curve_rows.append(row)
        out[f"ens-{key}"] = {
            "ensemble": f"ens-{key}", "members": [r["run_id"] for r in seeds],
            "info": {"recipe": recipe, "cell": cell["cell"] if cell else None, "model": m["model"],
                     "non_embedding_params": m["non_embedding_params"], "token_budget": m["token_budget"],
                     "epochs": m["epochs"], "learning_rate": m["learning_rate"], "weight_decay": m["weight_decay"]},
            "curve": curve_rows,
        }
    return out


def distillation_rows(students: list[dict], ensembles: dict[str, dict], s: ImportSettings) -> list[dict]:
    """A student's row: its teacher from its teacher data's name (an ensemble's samples when the name
    holds `ensemble_teacher`), the teacher's loss where the import holds it (nan otherwise)."""
    rows = []
    for st in sorted(students, key=lambda r: r["run_id"]):
        kind = "ensemble" if s.ensemble_teacher in st["teacher"] else "self"
        ens = next((e for e in ensembles.values() if e["info"]["model"] in st["teacher"]
                    and e["info"]["recipe"] == "imported"), None) if kind == "ensemble" else None
        teacher_loss = ens["curve"][-1]["loss_first"] if ens else math.nan
        single = ens["curve"][0]["loss_mean"] if ens else math.nan
        gain = single - teacher_loss
        rows.append({
            "distillation": st["run_id"], "teacher_kind": kind, "teacher": st["teacher"],
            "teacher_size": len(ens["curve"]) if ens else 1, "teacher_loss": teacher_loss,
            "single_model_loss": single, "student_id": st["run_id"], "student_loss": st["loss"],
            "synthetic_share": st["synthetic_share"],
            # the teacher's tokens per epoch of the mix: the real budget's share/(1 - share) of it
            "teacher_tokens": int(round(st["token_budget"] * st["synthetic_share"] / (1 - st["synthetic_share"]))),
            "fraction_of_gain_kept": (single - st["loss"]) / gain if gain > 0 else math.nan,
        })
    return rows


def import_tables(records: list[dict], s: ImportSettings) -> tuple[dict[str, list[dict]], list[dict]]:
    """The runs, tuning, ensembles, distillation and benchmarks tables' rows from run records, and the
    report: one entry per record, placed (its role) or not (the reason)."""
    placed, evals, report = [], [], []
    for rec in sorted(records, key=lambda r: (r["name"] or "", r["id"])):
        entry = {"id": rec["id"], "name": rec["name"], "project": rec.get("project"), "source": rec.get("source")}
        try:
            ens = parse_ensemble_eval(rec["name"] or "")
            if ens is not None:  # placed once the training runs are (its members' fields are theirs)
                check_record(rec, s)
                evals.append((ens[0], ens[1], _loss(rec, s), entry))
                entry.update(placed=True, role=f"ensemble evaluation (K={ens[0]})")
            else:
                placed.append(place_run(rec, s))
                entry.update(placed=True, role=None)
        except (Unplaced, RunNameError) as e:
            entry.update(placed=False, reason=str(e))
        except (KeyError, TypeError, ValueError) as e:  # a malformed config or summary
            entry.update(placed=False, reason=f"malformed record: {type(e).__name__}: {e}")
        report.append(entry)

    dupes = {i for i, n in Counter(r["run_id"] for r in placed).items() if n > 1}
    if dupes:  # two records of one run (a resumed or re-logged run): the later-sorted record is kept
        keep = {r["run_id"]: r for r in placed}
        placed = list(keep.values())
        for e in report:
            if e.get("placed") and e["name"] in dupes and e["role"] is None:
                e["note"] = "a run of this name was imported twice; one record kept"
    evals = member_fields(evals, placed)
    cells = search_cells(placed, s.baseline_weight_decay)
    finals = [tuning_final(c, rs) for c, rs in sorted(cells.items())]
    best_cells = {(f["recipe"], f["model"], f["token_budget"]): f for f in finals}
    members: dict[str, list[dict]] = {}
    for r in placed:
        if r["member_of"] is not None:
            members.setdefault(r["member_of"], []).append(r)
    ensembles = ensemble_records(evals, members, best_cells)
    searched: dict[str, list[str]] = {}
    for c, rs in cells.items():
        for r in rs:
            searched.setdefault(r["run_id"], []).append(c)
    in_ensemble = {rid: name for name, e in ensembles.items() for rid in e["members"]}
    runs = []
    for r in sorted(placed, key=lambda r: r["run_id"]):
        role = "student" if r["teacher"] else "search" if r["run_id"] in searched else \
            "member" if r["run_id"] in in_ensemble or r["member_of"] is not None else "teacher"
        row = {k: v for k, v in r.items() if k not in ("recipe_key", "member_of", "tokens_label")}
        runs.append({**row, "role": role, "sweeps": [], "searches": sorted(searched.get(r["run_id"], [])),
                     "ensembles": [in_ensemble[r["run_id"]]] if r["run_id"] in in_ensemble else []})
    roles = {r["run_id"]: r["role"] for r in runs}
    for e in report:
        if e.get("placed") and e["role"] is None:
            e["role"] = roles.get(e["name"]) or roles.get(e["name"].split(":")[0], "run")
    params_of = {r["run_id"]: r["non_embedding_params"] for r in runs}
    tables = {
        "runs": runs,
        "tuning": seed_noise_columns([
            tuning_row(f, params_of[f["best"]["run_id"]], {r["run_id"]: r["loss"] for r in reseeds_of(f, placed)},
                       next(r["seed"] for r in placed if r["run_id"] == f["best"]["run_id"]))
            for f in finals]),
        "ensembles": [row for name, e in ensembles.items() for row in ensemble_rows(name, e)],
        "distillation": distillation_rows([r for r in placed if r["teacher"]], ensembles, s),
        "benchmarks": [],  # the paper's downstream accuracies are not in its runs' logged keys
    }
    return tables, report
