"""Recipes as selections over the trained runs, power-law fits, and data efficiency."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .fits import (
    PowerLawFit,
    bootstrap_laws,
    data_efficiency,
    data_efficiency_interval,
    fit_power_law,
    inverse_power_law,
    is_flat,
    levels_at_zero,
)

FIT_FIELDS = (
    "A alpha E A_stderr alpha_stderr E_stderr A_ci_low A_ci_high alpha_ci_low alpha_ci_high E_ci_low E_ci_high"
).split()


def usable(runs: pd.DataFrame) -> pd.DataFrame:
    """Sweep and search runs that finished with a finite loss (diverged runs are reported, never fitted)."""
    sweep = runs[(runs["sweeps"].map(len) > 0) | (runs["searches"].map(len) > 0)]
    return sweep[~sweep["diverged"] & np.isfinite(sweep["loss"])]


def best_per(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The lowest-loss run of each group."""
    if runs.empty:
        return runs
    return runs.loc[runs.groupby(keys)["loss"].idxmin()].sort_values(keys)


RECIPES = ("baseline", "regularized")
# the limit each asymptote fit takes, and the label of its row in the efficiency table
LIMITS = {"params": "N -> inf", "joint": "N, K -> inf"}
ASYMPTOTE_LABELS = {"params": "asymptote E (N -> inf)", "joint": "joint asymptote (N, K -> inf)"}


def recipe_points(tuning: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per (model, token budget), each recipe's selected run: the outcome of its search cells
    (baseline: default weight decay, epochs and lr searched; regularized: all three jointly).
    Where two cells of a recipe cover the same (model, budget), the lower loss is taken."""
    ok = tuning[np.isfinite(tuning["loss"])]
    return {r: best_per(ok[ok["recipe"] == r], ["token_budget", "non_embedding_params"]) for r in RECIPES}


def data_scaling_points(tuning: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """The baseline's L(D) points: per budget, the lowest baseline loss among `models` (all if empty)."""
    base = recipe_points(tuning)["baseline"]
    if models:
        base = base[base["model"].isin(models)]
    return best_per(base, ["token_budget"])


def fit_law(x, y, x_name, n_bootstrap, ci_level, seed, asymptote=True) -> tuple[PowerLawFit | None, str]:
    """The power-law fit of (x, y) and its status: "ok", too few points (no fit), failed (the
    optimiser's last values are kept), flat, or (when its E is read as an `asymptote`) no asymptote
    (E at 0); a fit that is kept but not "ok" has no asymptote, law or multiplier read off it."""
    if len(set(x)) < 3:
        return None, f"too few points ({len(set(x))} distinct {x_name}; a fit needs 3)"
    try:
        f = fit_power_law(np.asarray(x, float), np.asarray(y, float), n_bootstrap=n_bootstrap, ci_level=ci_level, seed=seed)
    except ValueError as e:
        return None, f"failed: {e}"
    if not f.success:
        return f, f"failed: {f.message}"
    if is_flat(f, x):
        return f, f"flat: the loss does not fall with {x_name} over these points (alpha or A at 0), so E is not determined"
    if asymptote and levels_at_zero(f, y):
        return f, f"no asymptote: E is at its bound 0, the loss does not level off over these {x_name}"
    return f, "ok"


def fit_row(fit: str, recipe: str, group: str, x_name: str, x, y, ids, n_bootstrap, ci_level, seed, *,
             token_budget=None, model=None, non_embedding_params=None, result=None) -> dict:
    """A row of the fits table; `result` is the `fit_law` of these points when the caller made it already."""
    row = {
        "fit": fit,
        "recipe": recipe,
        "group": group,
        "model": model,
        "non_embedding_params": None if non_embedding_params is None else int(non_embedding_params),
        "token_budget": None if token_budget is None else int(token_budget),
        "x_name": x_name,
        "x": [float(v) for v in x],
        "y": [float(v) for v in y],
        "point_ids": [str(i) for i in ids],
        "ci_level": ci_level,
        "n_points": len(x),
    }
    f, status = result or fit_law(x, y, x_name, n_bootstrap, ci_level, seed)
    values = {k: float("nan") if f is None else float(getattr(f, k)) for k in FIT_FIELDS}
    return {**row, **values, "status": status}


def compute_fits(
    tuning: pd.DataFrame, ensembles: pd.DataFrame, *, data_scaling_models: list[str], n_bootstrap: int,
    ci_level: float, seed: int,
) -> tuple[list[dict], list[dict]]:
    """All fits of the study, and every recipe's data-efficiency multiplier against the baseline law."""
    kw = dict(n_bootstrap=n_bootstrap, ci_level=ci_level, seed=seed)
    fits: list[dict] = []
    points = recipe_points(tuning)
    for recipe, pts in points.items():
        for budget, g in pts.groupby("token_budget"):
            fits.append(
                fit_row("params", recipe, f"D={budget}", "non_embedding_params", g["non_embedding_params"],
                         g["loss"], g["run_id"], token_budget=budget, **kw)
            )
    # L(K) per ensemble, on the mean over member subsets of each size (the first-K loss is one draw)
    for name, g in ensembles.groupby("ensemble"):
        g = g.sort_values("ensemble_size")
        first = g.iloc[0]
        fits.append(
            fit_row("ensemble", first["recipe"], name, "ensemble_size", g["ensemble_size"], g["loss_mean"],
                     [f"{name}:K={k}" for k in g["ensemble_size"]], token_budget=first["token_budget"],
                     model=first["model"], non_embedding_params=first["non_embedding_params"], **kw)
        )
    # the joint (N -> inf, K -> inf) asymptote: the K -> inf asymptotes of one ensemble recipe over N
    per_k = [f for f in fits if f["fit"] == "ensemble" and f["status"] == "ok" and f["recipe"] != "fixed"]
    for (recipe, budget), group in _groupby(per_k, lambda f: (f["recipe"], f["token_budget"])).items():
        group.sort(key=lambda f: f["non_embedding_params"])
        fits.append(
            fit_row("joint", recipe, f"D={budget}", "non_embedding_params", [f["non_embedding_params"] for f in group],
                     [f["E"] for f in group], [f["group"] for f in group], token_budget=budget, **kw)
        )
    data_points = data_scaling_points(tuning, data_scaling_models)
    # L(D) is a law to invert, not an asymptote: a pure power law (E = 0) serves
    data_fit = fit_law(data_points["token_budget"], data_points["loss"], "token_budget", **kw, asymptote=False)
    fits.append(fit_row("data", "baseline", "all", "token_budget", data_points["token_budget"], data_points["loss"],
                         data_points["run_id"], result=data_fit, **kw))

    efficiency: list[dict] = []
    law = data_fit[0] if data_fit[1] == "ok" else None
    if law is not None:
        best_base = dict(zip(data_points["token_budget"], data_points["loss"]))
        laws = bootstrap_laws(law)  # the law's own uncertainty: the refits behind its CIs

        def add(recipe: str, label: str, budget: int, loss: float, loss_ci=(math.nan, math.nan)) -> None:
            if budget not in best_base:
                return
            base = best_base[budget]
            lo, hi = data_efficiency_interval(laws, loss, base, ci_level=ci_level, recipe_loss_ci=loss_ci)
            efficiency.append(
                {
                    "recipe": recipe,
                    "label": label,
                    "token_budget": int(budget),
                    "loss": float(loss),
                    "baseline_loss": float(base),
                    "effective_tokens": float(inverse_power_law(law, loss)),
                    "data_efficiency": float(data_efficiency(law, loss, base)),
                    "data_efficiency_ci_low": lo,
                    "data_efficiency_ci_high": hi,
                }
            )

        for recipe, pts in points.items():
            for budget, g in pts.groupby("token_budget"):
                best = g.loc[g["loss"].idxmin()]
                add(recipe, best["run_id"], budget, best["loss"])
        for name, g in ensembles.groupby("ensemble"):
            top = g.loc[g["ensemble_size"].idxmax()]
            add("ensemble", f"{name} (K={int(top['ensemble_size'])})", int(top["token_budget"]), top["loss"])
        # the paper's comparison: a recipe's asymptote against the baseline's L(D): N -> inf for the
        # single-model recipes, K -> inf for a fixed ensemble, N, K -> inf for an ensemble recipe
        for f in fits:
            if f["status"] != "ok" or f["fit"] not in ("params", "joint", "ensemble"):
                continue
            if f["fit"] == "ensemble" and f["recipe"] != "fixed":
                continue
            recipe = "ensemble" if f["fit"] == "ensemble" else f["recipe"]
            label = ASYMPTOTE_LABELS.get(f["fit"], f"{f['group']} asymptote (K -> inf)")
            add(recipe, label, f["token_budget"], f["E"], (f["E_ci_low"], f["E_ci_high"]))
    return fits, efficiency


def _groupby(items, key) -> dict:
    out: dict = {}
    for it in items:
        out.setdefault(key(it), []).append(it)
    return out


def finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)
