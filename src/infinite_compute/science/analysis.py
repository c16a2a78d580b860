"""Recipes as selections over the trained runs, power-law fits, and data efficiency."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .fits import (
    STEP_ALPHA,
    PowerLawFit,
    bootstrap_laws,
    data_efficiency,
    data_efficiency_interval,
    fit_power_law,
    inverse_power_law,
    is_flat,
    is_step,
    levels_at_zero,
)

FIT_FIELDS = (
    "A alpha E A_stderr alpha_stderr E_stderr A_ci_low A_ci_high alpha_ci_low alpha_ci_high E_ci_low E_ci_high "
    "gof_chi2 gof_p noise_df"
).split()
# A law the points reject at this level (its chi-square's p-value, from the points' measured errors) is
# reported as a misfit, not read off: 1% rather than 5%, so that a true law is called a misfit once in
# a hundred fits, not once in the twenty or so a study makes.
GOF_P_MIN = 0.01
# A CI of a fitted value turned into a standard error (half its width over this) where it becomes a
# point of another fit or a loss compared with another: the normal quantile of a 95% CI.
Z95 = 1.959963984540054


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


def fit_law(x, y, x_name, n_bootstrap, ci_level, seed, asymptote=True, sigma=None,
            noise_df: float = math.inf) -> tuple[PowerLawFit | None, str]:
    """The power-law fit of (x, y) (with each point's standard error `sigma` when the noise was
    measured) and its status: "ok", too few points (no fit), step (the best law is a drop at the
    smallest x), failed (the optimiser's last values are kept), misfit (the points reject the law),
    flat, or (when its E is read as an `asymptote`) no asymptote (E at 0); a fit that is kept but not
    "ok" has no asymptote, law or multiplier read off it."""
    if len(set(x)) < 3:
        return None, f"too few points ({len(set(x))} distinct {x_name}; a fit needs 3)"
    try:
        f = fit_power_law(np.asarray(x, float), np.asarray(y, float), n_bootstrap=n_bootstrap, ci_level=ci_level,
                          seed=seed, sigma=sigma, noise_df=noise_df)
    except ValueError as e:
        return None, f"failed: {e}"
    if is_step(f):
        # checked before success: lmfit stops on its evaluation limit while alpha runs off to infinity
        return f, (f"step: the best law has alpha {f.alpha:.3g} > {STEP_ALPHA:g}, every point but the smallest "
                   f"{x_name} on one level, so the points show no power law")
    if not f.success:
        return f, f"failed: {f.message}"
    if f.gof_p < GOF_P_MIN:
        return f, (f"misfit: the points reject the law (chi-square {f.gof_chi2:.2f} on {f.gof_dof} df, "
                   f"p = {f.gof_p:.2g} < {GOF_P_MIN:g})")
    if is_flat(f, x):
        return f, f"flat: the loss does not fall with {x_name} over these points (alpha or A at 0), so E is not determined"
    if asymptote and levels_at_zero(f, y):
        return f, f"no asymptote: E is at its bound 0, the loss does not level off over these {x_name}"
    return f, "ok"


def fit_row(fit: str, recipe: str, group: str, x_name: str, x, y, ids, n_bootstrap, ci_level, seed, *,
             token_budget=None, model=None, non_embedding_params=None, result=None, sigma=None,
             noise_df: float = math.inf) -> dict:
    """A row of the fits table; `result` is the `fit_law` of these points (with their errors `sigma`)
    when the caller made it already."""
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
        # each point's standard error (null: not measured, the fit estimated the noise from its residuals)
        "y_se": None if sigma is None else [float(v) for v in np.broadcast_to(sigma, (len(x),))],
        "ci_level": ci_level,
        "n_points": len(x),
    }
    f, status = result or fit_law(x, y, x_name, n_bootstrap, ci_level, seed, sigma=sigma, noise_df=noise_df)
    values = {k: float("nan") if f is None else float(getattr(f, k)) for k in FIT_FIELDS}
    values["gof_dof"] = 0 if f is None else int(f.gof_dof)
    values["noise"] = None if f is None else f.noise
    return {**row, **values, "status": status}


def point_errors(points: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None, float]:
    """The losses a fit takes from selected cells, their standard errors and the errors' degrees of
    freedom: each cell's mean over its reseeds (the search's minimum is biased low: it is for
    choosing only) with its error from the recipe's pooled seed sd. A cell without reseeds gives its
    selected run's loss, and then no point has an error (the fit estimates the noise itself)."""
    n = len(points)
    if n == 0:
        return points["loss"].to_numpy(float), None, math.inf
    mean = _column(points, "loss_mean", n)
    se = _column(points, "loss_se", n)
    y = np.where(np.isfinite(mean), mean, points["loss"].to_numpy(float))
    if not (np.isfinite(mean).all() and np.isfinite(se).all() and (se > 0).all()):
        return points["loss"].to_numpy(float) if not np.isfinite(mean).all() else y, None, math.inf
    df = _column(points, "pooled_df", n)
    return y, se, float(np.min(df)) if np.isfinite(df).all() and (df > 0).all() else math.inf


def _column(df: pd.DataFrame, name: str, n: int) -> np.ndarray:
    return df[name].to_numpy(float) if name in df else np.full(n, math.nan)


def ci_se(low: float, high: float) -> float:
    """A standard error from a 95% CI (nan when an end is not determined)."""
    return (high - low) / (2 * Z95) if finite(low) and finite(high) else math.nan


def compute_fits(
    tuning: pd.DataFrame, ensembles: pd.DataFrame, *, data_scaling_models: list[str], n_bootstrap: int,
    ci_level: float, seed: int,
) -> tuple[list[dict], list[dict]]:
    """All fits of the study, and every recipe's data-efficiency multiplier against the baseline law.

    Each fit's points carry their standard errors where the study measured the noise: a cell's mean
    over its reseeds, an ensemble curve's points from its recipe's pooled seed sd, an asymptote from
    its own CI."""
    kw = dict(n_bootstrap=n_bootstrap, ci_level=ci_level, seed=seed)
    fits: list[dict] = []
    points = recipe_points(tuning)
    for recipe, pts in points.items():
        for budget, g in pts.groupby("token_budget"):
            y, se, df = point_errors(g)
            fits.append(
                fit_row("params", recipe, f"D={budget}", "non_embedding_params", g["non_embedding_params"],
                         y, g["run_id"], token_budget=budget, sigma=se, noise_df=df, **kw)
            )
    # L(K) per ensemble, on the mean over member subsets of each size (the first-K loss is one draw)
    for name, g in ensembles.groupby("ensemble"):
        g = g.sort_values("ensemble_size")
        first = g.iloc[0]
        se, df = ensemble_errors(tuning, first["cell"], int(g["ensemble_size"].max()))
        fits.append(
            fit_row("ensemble", first["recipe"], name, "ensemble_size", g["ensemble_size"], g["loss_mean"],
                     [f"{name}:K={k}" for k in g["ensemble_size"]], token_budget=first["token_budget"],
                     model=first["model"], non_embedding_params=first["non_embedding_params"],
                     sigma=None if not finite(se) else se, noise_df=df, **kw)
        )
    # the joint (N -> inf, K -> inf) asymptote: the K -> inf asymptotes of one ensemble recipe over N,
    # each with the error its own CI gives (none when a CI is not determined)
    per_k = [f for f in fits if f["fit"] == "ensemble" and f["status"] == "ok" and f["recipe"] != "fixed"]
    for (recipe, budget), group in _groupby(per_k, lambda f: (f["recipe"], f["token_budget"])).items():
        group.sort(key=lambda f: f["non_embedding_params"])
        ses = np.array([ci_se(f["E_ci_low"], f["E_ci_high"]) for f in group])
        fits.append(
            fit_row("joint", recipe, f"D={budget}", "non_embedding_params", [f["non_embedding_params"] for f in group],
                     [f["E"] for f in group], [f["group"] for f in group], token_budget=budget,
                     sigma=ses if np.isfinite(ses).all() and (ses > 0).all() else None, **kw)
        )
    data_points = data_scaling_points(tuning, data_scaling_models)
    dy, dse, ddf = point_errors(data_points)
    # L(D) is a law to invert, not an asymptote: a pure power law (E = 0) serves
    data_fit = fit_law(data_points["token_budget"], dy, "token_budget", **kw, asymptote=False, sigma=dse,
                       noise_df=ddf)
    fits.append(fit_row("data", "baseline", "all", "token_budget", data_points["token_budget"], dy,
                         data_points["run_id"], result=data_fit, sigma=dse, noise_df=ddf, **kw))

    efficiency: list[dict] = []
    law = data_fit[0] if data_fit[1] == "ok" else None
    if law is not None:
        base_se = dict(zip(data_points["token_budget"], dse if dse is not None else [math.nan] * len(dy)))
        best_base = dict(zip(data_points["token_budget"], dy))
        laws = bootstrap_laws(law)  # the law's own uncertainty: its parametric-bootstrap refits

        def add(recipe: str, label: str, budget: int, loss: float, loss_se: float) -> None:
            if budget not in best_base:
                return
            base, b_se = best_base[budget], base_se[budget]
            lo, hi = data_efficiency_interval(laws, loss, base, ci_level=ci_level, recipe_loss_se=loss_se,
                                              baseline_loss_se=b_se, seed=seed)
            efficiency.append(
                {
                    "recipe": recipe,
                    "label": label,
                    "token_budget": int(budget),
                    "loss": float(loss),
                    "loss_se": float(loss_se),
                    "baseline_loss": float(base),
                    "baseline_loss_se": float(b_se),
                    "effective_tokens": float(inverse_power_law(law, loss)),
                    "data_efficiency": float(data_efficiency(law, loss, base)),
                    "data_efficiency_ci_low": lo,
                    "data_efficiency_ci_high": hi,
                }
            )

        for recipe, pts in points.items():
            for budget, g in pts.groupby("token_budget"):
                y, se, _ = point_errors(g)
                i = int(np.argmin(y))
                add(recipe, g["run_id"].iloc[i], budget, y[i], math.nan if se is None else se[i])
        for name, g in ensembles.groupby("ensemble"):
            top = g.loc[g["ensemble_size"].idxmax()]
            se, _ = ensemble_errors(tuning, top["cell"], int(top["ensemble_size"]))
            add("ensemble", f"{name} (K={int(top['ensemble_size'])})", int(top["token_budget"]), top["loss"], se)
        # the paper's comparison: a recipe's asymptote against the baseline's L(D): N -> inf for the
        # single-model recipes, K -> inf for a fixed ensemble, N, K -> inf for an ensemble recipe
        for f in fits:
            if f["status"] != "ok" or f["fit"] not in ("params", "joint", "ensemble"):
                continue
            if f["fit"] == "ensemble" and f["recipe"] != "fixed":
                continue
            recipe = "ensemble" if f["fit"] == "ensemble" else f["recipe"]
            label = ASYMPTOTE_LABELS.get(f["fit"], f"{f['group']} asymptote (K -> inf)")
            add(recipe, label, f["token_budget"], f["E"], ci_se(f["E_ci_low"], f["E_ci_high"]))
    return fits, efficiency


def ensemble_errors(tuning: pd.DataFrame, cell, members: int) -> tuple[float, float]:
    """The standard error of an ensemble curve's points and its degrees of freedom: the pooled seed
    sd of the search cell whose recipe the members share, over sqrt(members). Every point of the curve
    averages the same members, so their seed noise is mostly one shift of the whole curve, of about
    that size; treating the points as independent with that error is the cautious reading (nan when
    the cell has no reseeds)."""
    row = tuning[tuning["cell"] == cell] if cell is not None and "pooled_sd" in tuning else tuning.iloc[:0]
    if row.empty or not finite(float(row["pooled_sd"].iloc[0])):
        return math.nan, math.inf
    df = float(row["pooled_df"].iloc[0])
    return float(row["pooled_sd"].iloc[0]) / math.sqrt(members), df if df > 0 else math.inf


def _groupby(items, key) -> dict:
    out: dict = {}
    for it in items:
        out.setdefault(key(it), []).append(it)
    return out


def finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)
