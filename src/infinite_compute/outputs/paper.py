"""The paper's text, rendered from a jinja2 template with numbers taken only from results."""

from __future__ import annotations

import base64
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


def format_ci(x) -> str:
    """A CI end: nan is an end the data do not bound (science/fits.py), read n.d. (not determined)."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n.d."
    return format_num(x)


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
        compared = j["status"] == "ok" and r is not None and r["status"] == "ok"
        out.append({"compared": compared, "lower": compared and bool(j["E"] < r["E"]),
                    "gap": r["E"] - j["E"] if compared else None,
                    "recipe": j["recipe"], "token_budget": int(j["token_budget"]), "status": j["status"],
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


def _environment(template: str, html: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(os.path.dirname(os.path.abspath(template))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=html,  # a run id or a reason is text in the HTML paper, never markup
    )
    env.filters["num"] = format_num
    env.filters["sig"] = format_sig
    env.filters["ci"] = format_ci
    env.filters["pct"] = lambda x: "n/a" if not np.isfinite(x) else f"{100 * x:.0f}%"
    return env


def render(template: str, tables: dict, manifest: dict, baseline_wd: float) -> str:
    """The paper's text: `template` rendered with `context`'s variables."""
    env = _environment(template, html=False)
    return env.get_template(os.path.basename(template)).render(**context(tables, manifest, baseline_wd))


# The HTML paper's sections after the scorecard, in reading order: (id, title, the scorecard's claims
# it tests, the figures it shows). The claims are science/claims.py's ids, the figures the registry's
# names (outputs/figures.py); a section whose claims and figures are all absent from the study (the
# floor, off a synthetic corpus) is left out, and a figure of no section is shown under OTHER.
SCORECARD_FIGURES = ("claims",)
HTML_SECTIONS = (
    ("setup", "Setup", (), ("data", "training")),
    ("single-models", "Single models: epochs, parameters, weight decay", ("C1",), ("epochs", "weight_decay")),
    ("power-laws", "Power laws", ("C2",), ("params",)),
    ("ensembles", "Ensembles", ("C3",), ("ensembles", "joint", "asymptotes")),
    ("data-efficiency", "Token scaling and data efficiency", ("C4",), ("tokens", "data_scaling", "efficiency")),
    ("distillation", "Distillation", ("C5",), ("distillation",)),
    ("benchmarks", "Downstream benchmarks (lm-eval-harness)", ("C6",), ("benchmarks",)),
    ("cpt", "Continued pre-training on math", ("C7",), ("cpt",)),
    ("floor", "A corpus of known entropy: the loss floor", ("F1", "F2"), ("floor",)),
)
OTHER = ("other-figures", "Other figures")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes, name: str) -> tuple[int, int]:
    """(width, height) of a PNG from its header (IHDR, the first chunk), so that the page reserves
    each image's box before it is decoded; anything else is an error naming `name`."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError(f"{name}: not a PNG image")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _figure(name: str, data: bytes, caption: str) -> dict:
    width, height = png_size(data, name)
    return {"name": name, "caption": caption, "width": width, "height": height,
            "uri": "data:image/png;base64," + base64.b64encode(data).decode("ascii")}


def _claim(row: dict) -> dict:
    """A scorecard row with its quantities (JSON) laid out for reading, keys sorted."""
    try:
        quantities = json.loads(row["quantities"])
    except (TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"the claims scorecard's row {row['claim']}: its quantities are not JSON ({e})") from e
    return {**row, "css": row["verdict"].replace(" ", "-"),
            "quantities_text": json.dumps(quantities, indent=1, sort_keys=True)}


def html_context(tables: dict, manifest: dict, baseline_wd: float, figures: dict[str, bytes],
                 captions: dict[str, str]) -> dict:
    """`context`'s variables plus the HTML paper's: the scorecard's claims by id, each section with
    its claims and figures (PNG bytes by figure name, shown as data URIs, and their captions)."""
    if tables.get("claims") is None:
        raise ValueError("the HTML paper opens with the claims scorecard: results/claims.parquet must be "
                         "among the tables")
    ctx = context(tables, manifest, baseline_wd)
    claims = {c["claim"]: _claim(c) for c in ctx["claims"]}
    shown = {f for _, _, _, figs in HTML_SECTIONS for f in figs} | set(SCORECARD_FIGURES)
    sections = []
    for sid, title, ids, names in HTML_SECTIONS + ((*OTHER, (), tuple(sorted(set(figures) - shown))),):
        s = {"id": sid, "title": title, "claims": [claims[c] for c in ids if c in claims],
             "figures": [_figure(f, figures[f], captions.get(f, "")) for f in names if f in figures]}
        if sid in ("floor", OTHER[0]) and not (s["claims"] or s["figures"]):
            continue  # nothing of this study belongs there
        sections.append(s)
    scorecard_figures = [_figure(f, figures[f], captions.get(f, "")) for f in SCORECARD_FIGURES if f in figures]
    return {**ctx, "claims": list(claims.values()), "sections": sections, "scorecard_figures": scorecard_figures}


def render_html(template: str, tables: dict, manifest: dict, baseline_wd: float, figures: dict[str, bytes],
                captions: dict[str, str]) -> str:
    """The standalone HTML paper: `template` rendered with `html_context`'s variables. The same tables,
    figures and captions give the same bytes (no time, no path, sections in a fixed order)."""
    env = _environment(template, html=True)
    return env.get_template(os.path.basename(template)).render(
        **html_context(tables, manifest, baseline_wd, figures, captions))
