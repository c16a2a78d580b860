"""Continued pre-training on the math domain: the regularized recipe's selection, and each recipe's
data-efficiency multiplier against the default recipe's math data-scaling law L(D)."""

from __future__ import annotations

import math

import numpy as np

from .analysis import fit_law, fit_row
from .fits import (
    bootstrap_laws,
    data_efficiency,
    data_efficiency_interval,
    inverse_power_law,
)


def select_regularized(losses: dict[str, float]) -> str:
    """The regularized recipe's weight decay: its run with the lowest held-out math loss."""
    finite = {r: v for r, v in losses.items() if np.isfinite(v)}
    if not finite:
        raise ValueError(f"every regularized CPT run diverged: {sorted(losses)}")
    return min(sorted(finite), key=lambda r: finite[r])


def efficiency(rows: list[dict], *, n_bootstrap: int, ci_level: float, seed: int,
               reseed_losses: list[float] = ()) -> tuple[dict, list[dict]]:
    """The default recipe's math L(D) (a fit row) and, per row, its data-efficiency multiplier:
    D_eff(its loss) / D_eff(the default recipe's loss at the same budget), with a CI that combines
    the law's bootstrap refits and the losses' seed noise. Rows gain data_efficiency, its CI and
    effective_tokens.

    The seed noise is the sd (ddof 1) of `reseed_losses`: the ensemble's members other than the
    selected run, seeds of one CPT recipe. It is the error of every single-run loss (the L(D) points,
    the small batch, each regularized weight decay: a row is one run, and its multiplier is that
    run's), and an ensemble of K has error sd / sqrt(K). Without two reseeds the law estimates its noise from its residuals and the
    multipliers carry the law's uncertainty only."""
    kw = dict(n_bootstrap=n_bootstrap, ci_level=ci_level, seed=seed)
    reseeds = np.asarray([v for v in reseed_losses if np.isfinite(v)], float)
    sd = float(np.std(reseeds, ddof=1)) if reseeds.size >= 2 else math.nan
    df = float(reseeds.size - 1) if reseeds.size >= 2 else math.inf
    measured = math.isfinite(sd) and sd > 0
    points = [r for r in rows if r["recipe"] == "default" and np.isfinite(r["loss"])]
    x, y = [r["token_budget"] for r in points], [r["loss"] for r in points]
    sigma = [sd] * len(points) if measured else None
    result = fit_law(x, y, "token_budget", **kw, asymptote=False, sigma=sigma, noise_df=df)  # a law to invert
    law_row = fit_row("cpt-data", "default", "math", "token_budget", x, y, [r["model_id"] for r in points],
                       result=result, sigma=sigma, noise_df=df, **kw)
    law = result[0] if result[1] == "ok" else None
    base = {r["token_budget"]: r["loss"] for r in points}
    laws = bootstrap_laws(law) if law is not None else None
    out = []
    for r in rows:
        r = dict(r)
        r["effective_tokens"] = r["data_efficiency"] = math.nan
        r["data_efficiency_ci_low"] = r["data_efficiency_ci_high"] = math.nan
        loss, se = r["loss"], sd
        if r["recipe"] == "ensemble":
            se = sd / math.sqrt(r["ensemble_size"])
        if law is not None and r["token_budget"] in base and np.isfinite(loss):
            b = base[r["token_budget"]]
            r["effective_tokens"] = float(inverse_power_law(law, loss))
            r["data_efficiency"] = float(data_efficiency(law, loss, b))
            lo, hi = data_efficiency_interval(laws, loss, b, ci_level=ci_level, recipe_loss_se=se,
                                              baseline_loss_se=sd, seed=seed)
            r["data_efficiency_ci_low"], r["data_efficiency_ci_high"] = lo, hi
        out.append(r)
    return law_row, out
