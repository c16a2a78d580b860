"""The paper's text, rendered from a jinja2 template with numbers taken only from results."""

from __future__ import annotations

import json
import os

import jinja2
import numpy as np

from ..science.analysis import ASYMPTOTE_LABELS, LIMITS


def format_num(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    if isinstance(x, float) and np.isinf(x):
        return "inf" if x > 0 else "-inf"
    if abs(x) >= 1e15:  # a degenerate fit's (an asymptote at 0): no token count is this large
        return f"{x:.3g}"
    return f"{x:.{digits}f}"


def format_sig(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}"


def _records(df):
    return df.to_dict("records")


def _joint(fits) -> list[dict]:
    """Each joint (N, K -> inf) fit beside the regularized N -> inf fit at the same budget, with
    their statuses: an asymptote is compared only where its fit is "ok"."""
    out = []
    for _, j in fits[fits["fit"] == "joint"].iterrows():
        reg = fits[(fits["fit"] == "params") & (fits["recipe"] == "regularized")
                   & (fits["token_budget"] == j["token_budget"])]
        r = reg.iloc[0] if not reg.empty else None
        out.append({"recipe": j["recipe"], "token_budget": int(j["token_budget"]), "status": j["status"],
                    "E": j["E"], "E_ci_low": j["E_ci_low"], "E_ci_high": j["E_ci_high"],
                    "regularized_status": None if r is None else r["status"],
                    "regularized_E": None if r is None else r["E"],
                    "regularized_ci_low": None if r is None else r["E_ci_low"],
                    "regularized_ci_high": None if r is None else r["E_ci_high"]})
    return out


def _token_scaling(fits, efficiency) -> list[dict]:
    """Per recipe asymptote (N -> inf, joint N, K -> inf), its E and multiplier at every token budget."""
    ok = fits[(fits["status"] == "ok") & fits["fit"].isin(list(LIMITS))]
    out = []
    for (fit, recipe), g in ok.groupby(["fit", "recipe"], sort=True):
        label = ASYMPTOTE_LABELS[fit]
        points = []
        for _, f in g.sort_values("token_budget").iterrows():
            e = efficiency[(efficiency["recipe"] == recipe) & (efficiency["label"] == label)
                           & (efficiency["token_budget"] == f["token_budget"])]
            e = e.iloc[0] if not e.empty else None
            points.append({"token_budget": int(f["token_budget"]), "E": f["E"], "E_ci_low": f["E_ci_low"],
                           "E_ci_high": f["E_ci_high"], "n_points": int(f["n_points"]),
                           "baseline_loss": None if e is None else e["baseline_loss"],
                           "multiplier": None if e is None else e["data_efficiency"],
                           "ci_low": None if e is None else e["data_efficiency_ci_low"],
                           "ci_high": None if e is None else e["data_efficiency_ci_high"]})
        out.append({"recipe": recipe, "limit": LIMITS[fit], "points": points})
    return out


def _cpt(c, fits) -> dict | None:
    """The CPT table's rows and its math L(D) fit, if the study has a CPT stage."""
    if c is None:
        return None
    fit = fits.iloc[0].to_dict()
    cell = c["base_cell"].iloc[0]  # null (read as NaN or None) for a Hugging Face base
    return {"rows": _records(c), "fit": fit, "base_cell": cell if isinstance(cell, str) else None,
            "base": c["base"].iloc[0], "tasks": sorted(json.loads(c["benchmarks"].iloc[0])),
            "budget": int(c.loc[c["recipe"] == "ensemble", "token_budget"].iloc[0])}


def context(t: dict, manifest: dict, baseline_wd: float) -> dict:
    """The template's variables, from the result tables `t` (results.read_tables) and the corpus manifest."""
    runs = t["runs"]
    fits = t["fits"]
    bench = t["benchmarks"]
    families = (bench.groupby(["task", "family"]).agg(acc=("acc", "mean"), acc_norm=("acc_norm", "mean"),
                                                      loss=("loss", "mean"), n=("model_id", "count"),
                                                      chance=("chance", "mean")).reset_index())
    return {
        "manifest": manifest,
        "n_runs": len(runs),
        "total_train_seconds": float(runs["wall_seconds"].sum()),
        "total_tokens": int(runs["tokens_seen"].sum()),
        "config_hash": runs["config_hash"].iloc[0],
        "code_version": runs["code_version"].iloc[0],
        "cells": _records(t["tuning"].sort_values(["recipe", "token_budget", "non_embedding_params"])),
        "wd_ratios": _records(
            t["tuning"][t["tuning"]["recipe"] == "regularized"]
            .sort_values(["token_budget", "non_embedding_params"])
            .assign(ratio=lambda d: d["weight_decay"] / baseline_wd)
        ),
        "baseline_wd": baseline_wd,
        "n_search_runs": int((runs["searches"].map(len) > 0).sum()),
        "fits": _records(fits),
        "ensembles": _records(t["ensembles"]),
        "distillation": _records(t["distillation"]),
        "efficiency": _records(t["efficiency"]),
        "joint": _joint(fits),
        "token_scaling": _token_scaling(fits, t["efficiency"]),
        "families": _records(families),
        "cpt": _cpt(t["cpt"], t["cpt_fits"]),
        "diverged": _records(runs[runs["diverged"]]),
        # the claims scorecard (science/claims.py), absent when the paper is rendered without it
        "claims": [] if t.get("claims") is None else _records(t["claims"]),
    }


def render(template: str, tables: dict, manifest: dict, baseline_wd: float) -> str:
    """The paper's text: `template` rendered with `context`'s variables."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(os.path.dirname(os.path.abspath(template))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = format_num
    env.filters["sig"] = format_sig
    env.filters["pct"] = lambda x: "n/a" if not np.isfinite(x) else f"{100 * x:.0f}%"
    return env.get_template(os.path.basename(template)).render(**context(tables, manifest, baseline_wd))
