"""Recipes, L(N) and L(D) fits and data efficiency from a tuning table with known laws."""

import numpy as np
import pandas as pd
import pytest

from infinite_compute.science.analysis import (
    compute_fits,
    data_scaling_points,
    fit_law,
    recipe_points,
)
from infinite_compute.science.fits import STEP_ALPHA

SIZES = {"n1": 1e4, "n2": 3e4, "n3": 1e5, "n4": 3e5}
D0 = 16384


def base_law(n):  # the baseline recipe at D0: L(N) = 50/N^0.5 + 2
    return 50 / n**0.5 + 2.0


def reg_law(n):  # the regularized recipe at D0: same shape, asymptote 1.5
    return 50 / n**0.5 + 1.5


# the baseline data law of n2, through its point at D0: L(D) = A/D^0.5 + 1.5
A_D = (base_law(SIZES["n2"]) - 1.5) * D0**0.5


def data_law(d):
    return A_D / d**0.5 + 1.5


def row(recipe, model, budget, loss, cell=None):
    return {"cell": cell or f"{recipe}-{model}-d{budget}", "search": recipe, "recipe": recipe, "model": model,
            "non_embedding_params": int(SIZES[model]), "token_budget": budget, "run_id": f"{recipe}-{model}-{budget}",
            "loss": loss, "certified": True}


@pytest.fixture
def tuning():
    rows = [row("baseline", m, D0, base_law(n)) for m, n in SIZES.items()]
    rows += [row("regularized", m, D0, reg_law(n)) for m, n in SIZES.items()]
    rows += [row("baseline", "n2", d, data_law(d), cell=f"data-n2-d{d}") for d in (8192, 32768, 65536)]
    # a second baseline cell of n2 at D0 with a worse outcome: the lower loss of the two counts
    rows.append(row("baseline", "n2", D0, base_law(SIZES["n2"]) + 0.3, cell="other-n2"))
    # a diverged selection is never a recipe point
    rows.append({**row("regularized", "n1", 8192, float("nan")), "cell": "reg-n1-d8k"})
    return pd.DataFrame(rows)


def test_recipe_points_take_the_best_cell_per_size_and_budget(tuning):
    pts = recipe_points(tuning)
    base = pts["baseline"]
    assert len(base[base["token_budget"] == D0]) == 4
    n2 = base[(base["model"] == "n2") & (base["token_budget"] == D0)]["loss"].item()
    assert n2 == pytest.approx(base_law(SIZES["n2"]))
    assert len(pts["regularized"]) == 4  # the NaN cell is dropped
    law = data_scaling_points(tuning, ["n2"])
    assert list(law["token_budget"]) == [8192, D0, 32768, 65536]
    assert len(data_scaling_points(tuning, [])) == 4  # every model, the best per budget


def test_fits_recover_the_laws_and_the_multiplier(tuning):
    fits, eff = compute_fits(tuning, pd.DataFrame(columns=["ensemble", "ensemble_size", "loss", "token_budget"]),
                             data_scaling_models=["n2"], n_bootstrap=50, ci_level=0.9, seed=0)
    by = {(f["fit"], f["recipe"], f["group"]): f for f in fits}
    assert by[("params", "baseline", f"D={D0}")]["E"] == pytest.approx(2.0, abs=1e-4)
    assert by[("params", "regularized", f"D={D0}")]["E"] == pytest.approx(1.5, abs=1e-4)
    assert by[("params", "regularized", f"D={D0}")]["alpha"] == pytest.approx(0.5, abs=1e-4)
    data = by[("data", "baseline", "all")]
    assert data["E"] == pytest.approx(1.5, abs=1e-4) and data["alpha"] == pytest.approx(0.5, abs=1e-4)
    # the regularized recipe's best loss at D0 (its largest model) needs D_eff = (A/(L-E))^2 tokens
    # of baseline data; the baseline's n2 is on the law, so its D_eff is D0
    reg = [e for e in eff if e["recipe"] == "regularized" and e["token_budget"] == D0][0]
    expected = (A_D / (reg_law(SIZES["n4"]) - 1.5)) ** 2 / D0
    assert reg["data_efficiency"] == pytest.approx(expected, rel=1e-3)
    base = [e for e in eff if e["recipe"] == "baseline" and e["token_budget"] == D0][0]
    # the baseline's best at D0 is n4, better than the n2 point the law was fitted on
    assert base["data_efficiency"] == pytest.approx((A_D / (base_law(SIZES["n4"]) - 1.5)) ** 2 / D0, rel=1e-3)
    # the paper's comparison: the baseline's N -> inf asymptote (E = 2) needs (A_D / (2 - 1.5))^2 tokens
    asym = {e["recipe"]: e for e in eff if e["label"].startswith("asymptote")}
    expected = (A_D / 0.5) ** 2 / D0
    assert asym["baseline"]["data_efficiency"] == pytest.approx(expected, rel=1e-3)
    assert asym["baseline"]["data_efficiency_ci_low"] == pytest.approx(expected, rel=1e-2)
    assert asym["baseline"]["data_efficiency_ci_high"] == pytest.approx(expected, rel=1e-2)
    # the regularized asymptote equals the data law's own: no amount of baseline data reaches it
    assert asym["regularized"]["data_efficiency"] == np.inf or asym["regularized"]["data_efficiency"] > 1e6
    # a single run's CI comes from L(D)'s bootstrap alone: the law is exact, so it is the point itself
    assert reg["data_efficiency_ci_low"] == pytest.approx(reg["data_efficiency"], rel=1e-3)
    assert reg["data_efficiency_ci_high"] == pytest.approx(reg["data_efficiency"], rel=1e-3)


def test_multiplier_cis_carry_the_data_laws_uncertainty(tuning):
    """With noise on the L(D) points, a single run's multiplier gets a CI that holds the point and
    has width; the asymptote's CI (its own loss CI on top) is at least as wide."""
    noisy = tuning.copy()
    data = noisy["cell"].str.startswith("data-") | ((noisy["model"] == "n2") & (noisy["recipe"] == "baseline"))
    bumps = np.resize([0.02, -0.015, 0.01, -0.02, 0.015], data.sum())
    noisy.loc[data, "loss"] = noisy.loc[data, "loss"] + bumps
    empty = pd.DataFrame(columns=["ensemble", "ensemble_size", "loss", "token_budget"])
    _, eff = compute_fits(noisy, empty, data_scaling_models=["n2"], n_bootstrap=100, ci_level=0.9, seed=0)
    reg = [e for e in eff if e["recipe"] == "regularized" and e["token_budget"] == D0 and e["label"].startswith("reg")][0]
    assert reg["data_efficiency_ci_low"] < reg["data_efficiency"] < reg["data_efficiency_ci_high"]
    assert reg["data_efficiency_ci_high"] / reg["data_efficiency_ci_low"] > 1.05
    asym = [e for e in eff if e["recipe"] == "baseline" and e["label"].startswith("asymptote")][0]
    assert asym["data_efficiency_ci_low"] <= asym["data_efficiency"] <= asym["data_efficiency_ci_high"]


def ensemble_rows(name, recipe, model, budget, e_k, kmax=6):
    """An ensemble whose subset-mean loss follows L(K) = 0.5 / K^0.8 + e_k exactly."""
    return [{"ensemble": name, "recipe": recipe, "cell": None, "model": model,
             "non_embedding_params": int(SIZES[model]), "token_budget": budget, "ensemble_size": k,
             "loss": 0.5 / k**0.8 + e_k + 0.01, "loss_mean": 0.5 / k**0.8 + e_k} for k in range(1, kmax + 1)]


def joint_law(n):  # the K -> inf asymptote per N: E_K(N) = 30 / N^0.5 + 1.6, so N, K -> inf gives 1.6
    return 30 / n**0.5 + 1.6


def test_ensemble_and_joint_asymptotes(tuning):
    rows = [r for m in SIZES for r in ensemble_rows(f"ens-{m}", "ens", m, D0, joint_law(SIZES[m]))]
    rows += ensemble_rows("fixed-n2", "fixed", "n2", D0, 1.8)
    fits, eff = compute_fits(tuning, pd.DataFrame(rows), data_scaling_models=["n2"], n_bootstrap=50,
                             ci_level=0.9, seed=0)
    by = {(f["fit"], f["group"]): f for f in fits}
    for m, n in SIZES.items():  # L(K) per N, fitted on the subset means
        f = by[("ensemble", f"ens-{m}")]
        assert f["E"] == pytest.approx(joint_law(n), abs=1e-4) and f["alpha"] == pytest.approx(0.8, abs=1e-3)
        assert f["model"] == m and f["non_embedding_params"] == int(n) and f["token_budget"] == D0
    joint = by[("joint", f"D={D0}")]
    assert joint["recipe"] == "ens" and joint["point_ids"] == [f"ens-{m}" for m in SIZES]
    assert joint["E"] == pytest.approx(1.6, abs=1e-3) and joint["alpha"] == pytest.approx(0.5, abs=1e-2)
    assert joint["E_ci_low"] <= joint["E"] + 1e-6 <= joint["E_ci_high"] + 2e-6
    assert "fixed" not in {f["recipe"] for f in fits if f["fit"] == "joint"}  # a fixed ensemble has one N
    # multipliers against L(D) = A_D / D^0.5 + 1.5, whose n2 point at D0 is the baseline's loss there
    labels = {e["label"]: e for e in eff}
    j = labels["joint asymptote (N, K -> inf)"]
    assert j["recipe"] == "ens"
    assert j["data_efficiency"] == pytest.approx((A_D / (1.6 - 1.5)) ** 2 / D0, rel=1e-2)
    fixed = labels["fixed-n2 asymptote (K -> inf)"]
    assert fixed["recipe"] == "ensemble"
    assert fixed["data_efficiency"] == pytest.approx((A_D / (1.8 - 1.5)) ** 2 / D0, rel=1e-3)
    top = labels["fixed-n2 (K=6)"]  # the largest fixed ensemble's own (first-K) loss
    assert top["loss"] == pytest.approx(0.5 / 6**0.8 + 1.81)


def test_a_flat_fit_is_recorded_as_flat_and_gives_no_asymptote(tuning):
    """L(N) that does not fall with N (as in the default study's baseline at 8k tokens): its fit is
    kept with the status "flat", and no N -> inf asymptote or multiplier is read off it; a flat
    L(D) gives no data-efficiency multipliers at all."""
    flat = tuning[tuning["cell"] != "other-n2"].copy()
    base = (flat["recipe"] == "baseline") & (flat["token_budget"] == D0)
    flat.loc[base, "loss"] = [5.421, 5.446, 5.419, 5.431]  # n1..n4; n2's is also the data law's point at D0
    empty = pd.DataFrame(columns=["ensemble", "ensemble_size", "loss", "token_budget"])
    fits, eff = compute_fits(flat, empty, data_scaling_models=["n2"], n_bootstrap=20, ci_level=0.9, seed=0)
    by = {(f["fit"], f["recipe"], f["group"]): f for f in fits}
    assert by[("params", "baseline", f"D={D0}")]["status"].startswith("flat: the loss does not fall with non_emb")
    assert by[("params", "regularized", f"D={D0}")]["status"] == "ok"
    asym = {e["recipe"] for e in eff if e["label"].startswith("asymptote")}
    assert asym == {"regularized"}
    # L(D) through points that rise with D (8k, 16k = n2's 5.446, 32k, 64k): flat, and nothing is
    # measured against it
    level = flat.copy()
    level.loc[level["cell"].str.startswith("data-"), "loss"] = [5.43, 5.45, 5.46]
    fits, eff = compute_fits(level, empty, data_scaling_models=["n2"], n_bootstrap=20, ci_level=0.9, seed=0)
    assert [f["status"][:5] for f in fits if f["fit"] == "data"] == ["flat:"] and eff == []


def test_an_asymptote_at_zero_is_not_an_asymptote_but_l_of_d_without_one_is_a_law(tuning):
    """The regularized L(N) a pure power law (it never levels off): its fit says "no asymptote" and
    gives no N -> inf multiplier. A pure power law L(D) is still the law multipliers are read off."""
    pure = tuning.copy()
    reg = pure["recipe"] == "regularized"
    pure.loc[reg, "loss"] = [8.0 / n**0.1 for n in pure.loc[reg, "non_embedding_params"]]
    data = pure["cell"].str.startswith("data-") | ((pure["model"] == "n2") & (pure["recipe"] == "baseline"))
    pure.loc[data, "loss"] = [30.0 / d**0.2 for d in pure.loc[data, "token_budget"]]
    pure = pure[pure["cell"] != "other-n2"]
    empty = pd.DataFrame(columns=["ensemble", "ensemble_size", "loss", "token_budget"])
    fits, eff = compute_fits(pure, empty, data_scaling_models=["n2"], n_bootstrap=20, ci_level=0.9, seed=0)
    by = {(f["fit"], f["recipe"], f["group"]): f for f in fits}
    assert by[("params", "regularized", f"D={D0}")]["status"].startswith("no asymptote: E is at its bound 0")
    assert by[("data", "baseline", "all")]["status"] == "ok" and by[("data", "baseline", "all")]["E"] < 1e-6
    assert "regularized" not in {e["recipe"] for e in eff if e["label"].startswith("asymptote")}
    assert any(e["recipe"] == "regularized" for e in eff)  # its best run still gets a multiplier


def test_a_drop_at_the_smallest_size_alone_is_a_step_not_a_failed_fit():
    """Points level after the smallest x (as the default's joint N, K -> inf points at some budgets): the
    least squares runs alpha and A off to infinity, lmfit stops on its evaluation limit, and the status
    says what the points show (a step) rather than "failed"; a real law through the same x stays "ok"."""
    x = [6736.0, 26784.0, 60144.0, 106816.0, 240096.0]
    f, status = fit_law(x, [4.455, 4.394, 4.420, 4.412, 4.394], "non_embedding_params", 0, 0.95, 0)
    assert f is not None and f.alpha > STEP_ALPHA
    assert status.startswith("step: the best law has alpha") and "non_embedding_params" in status
    f, status = fit_law(x, [3.0 + 40.0 / v**0.4 for v in x], "non_embedding_params", 0, 0.95, 0)
    assert status == "ok" and f.alpha == pytest.approx(0.4, rel=1e-3)
