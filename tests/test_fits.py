"""Tests for infinite_compute.science.fits on synthetic power laws with known parameters."""

import math

import numpy as np
import pytest
from scipy.optimize import curve_fit, nnls

from infinite_compute.science.fits import (
    PowerLawFit,
    bootstrap_laws,
    data_efficiency,
    data_efficiency_interval,
    fit_power_law,
    inverse_power_law,
    is_flat,
    joint_asymptote,
    levels_at_zero,
)

A_TRUE, ALPHA_TRUE, E_TRUE = 2.0, 0.4, 3.0
X6 = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])


def law(x, A, alpha, E):
    return A / np.asarray(x, dtype=float) ** alpha + E


def noisy(x, sigma=0.01, seed=1):
    rng = np.random.default_rng(seed)
    return law(x, A_TRUE, ALPHA_TRUE, E_TRUE) + rng.normal(0.0, sigma, size=len(x))


def make_fit(A, alpha, E):
    nan = math.nan
    return PowerLawFit(A, alpha, E, nan, nan, nan, nan, nan, nan, nan, nan, nan, 0, 0.95, True, "")


def test_noisy_fit_recovers_parameters_and_ci_covers_truth():
    fit = fit_power_law(X6, noisy(X6))
    assert fit.success
    assert fit.A == pytest.approx(A_TRUE, abs=0.1)
    assert fit.alpha == pytest.approx(ALPHA_TRUE, abs=0.05)
    assert fit.E == pytest.approx(E_TRUE, abs=0.1)
    assert fit.E_ci_low <= E_TRUE <= fit.E_ci_high
    assert fit.alpha_ci_low <= fit.alpha <= fit.alpha_ci_high
    assert fit.A_ci_low < fit.A_ci_high
    for se in (fit.A_stderr, fit.alpha_stderr, fit.E_stderr):
        assert math.isfinite(se) and se > 0
    assert fit.n_points == 6
    assert 0 < fit.n_bootstrap_used <= 200


def test_stderr_matches_scipy_covariance_in_raw_units():
    # lmfit fits in rescaled x; the delta-method A_stderr must agree with a
    # direct fit in raw units, which scipy parametrises without rescaling.
    y = noisy(X6)
    fit = fit_power_law(X6, y, n_bootstrap=0)
    popt, pcov = curve_fit(law, X6, y, p0=[fit.A, fit.alpha, fit.E])
    np.testing.assert_allclose([fit.A, fit.alpha, fit.E], popt, rtol=1e-6)
    np.testing.assert_allclose(
        [fit.A_stderr, fit.alpha_stderr, fit.E_stderr], np.sqrt(np.diag(pcov)), rtol=1e-3
    )


def test_noise_free_recovers_parameters_exactly():
    fit = fit_power_law(X6, law(X6, A_TRUE, ALPHA_TRUE, E_TRUE), n_bootstrap=0)
    assert fit.A == pytest.approx(A_TRUE, abs=1e-4)
    assert fit.alpha == pytest.approx(ALPHA_TRUE, abs=1e-4)
    assert fit.E == pytest.approx(E_TRUE, abs=1e-4)


@pytest.mark.parametrize(
    "x, A, alpha, E",
    [
        # Parameter counts: A must be large for the power-law term to matter.
        (np.array([1.5e5, 6e5, 3e6, 1e7]), 300.0, 0.35, 3.2),
        # Parameter counts in billions.
        (np.array([0.15, 0.3, 0.6, 1.4]), 0.5, 0.3, 3.2),
    ],
)
def test_fit_is_well_conditioned_across_x_scales(x, A, alpha, E):
    fit = fit_power_law(x, law(x, A, alpha, E), n_bootstrap=0)
    assert fit.A == pytest.approx(A, rel=1e-4)
    assert fit.alpha == pytest.approx(alpha, abs=1e-4)
    assert fit.E == pytest.approx(E, abs=1e-4)


def profile_min_chisqr(x, y, alphas):
    """Brute-force global minimum: for each alpha, A and E >= 0 are a linear NNLS problem."""
    design = lambda a: np.column_stack([x**-a, np.ones_like(x)])
    return min(nnls(design(a), y)[1] ** 2 for a in alphas)


def test_fit_reaches_known_hard_optimum():
    # scipy's curve_fit from the paper's start (1, 0.5, 2) with default
    # tolerances stops at a chi-square ~1e5 times the optimum on this data.
    x = np.array([1e6, 4e6, 8e6, 6.4e7])
    y = law(x, 2e8, 1.15, 2.0) + np.random.default_rng(0).normal(0.0, 0.01, size=x.size)
    fit = fit_power_law(x, y, n_bootstrap=0)
    chisqr = float(np.sum((fit.predict(x) - y) ** 2))
    assert chisqr <= profile_min_chisqr(x, y, np.linspace(0.0, 4.0, 4001)) * (1 + 1e-9)
    assert fit.alpha == pytest.approx(1.15, abs=0.02)
    assert fit.E == pytest.approx(2.0, abs=0.02)


@pytest.mark.parametrize("case", range(8))
def test_fit_is_globally_optimal_on_random_noisy_laws(case):
    rng = np.random.default_rng(100 + case)
    n = int(rng.integers(4, 6))
    x = np.sort(rng.choice(2.0 ** np.arange(8), size=n, replace=False)) * 10 ** rng.uniform(-1, 7)
    alpha = rng.uniform(0.05, 1.5)
    A = rng.uniform(0.2, 3.0) * np.median(x) ** alpha  # power term O(1) mid-range
    y = law(x, A, alpha, rng.uniform(0.0, 4.0)) + rng.normal(0.0, rng.choice([0.001, 0.02, 0.2]), size=n)
    fit = fit_power_law(x, y, n_bootstrap=0)
    chisqr = float(np.sum((fit.predict(x) - y) ** 2))
    # The grid minimum can only overestimate the true minimum.
    assert chisqr <= profile_min_chisqr(x, y, np.linspace(0.0, 4.0, 4001)) * (1 + 1e-9) + 1e-15


def test_exactly_three_points_interpolates_with_nan_uncertainty():
    x = np.array([1.0, 3.0, 9.0])
    y = law(x, A_TRUE, ALPHA_TRUE, E_TRUE)
    fit = fit_power_law(x, y)
    np.testing.assert_allclose(fit.predict(x), y, atol=1e-8)
    assert math.isnan(fit.A_stderr) and math.isnan(fit.alpha_stderr) and math.isnan(fit.E_stderr)
    assert math.isnan(fit.E_ci_low) and math.isnan(fit.E_ci_high)


def test_no_bootstrap_gives_profile_cis_and_no_refits():
    fit = fit_power_law(X6, noisy(X6), n_bootstrap=0)
    assert math.isnan(fit.A_ci_low) and math.isnan(fit.A_ci_high)
    assert fit.E_ci_low < fit.E < fit.E_ci_high and fit.alpha_ci_low < fit.alpha < fit.alpha_ci_high
    assert fit.n_bootstrap_used == 0 and fit.bootstrap_params == ()


@pytest.mark.parametrize(
    "x, y, match",
    [
        ([0.0, 1.0, 2.0], [3.0, 2.0, 1.0], "x must be finite and > 0"),
        ([-1.0, 1.0, 2.0], [3.0, 2.0, 1.0], "x must be finite and > 0"),
        ([1.0, 2.0, 3.0], [3.0, 2.0], "same length"),
        ([1.0, 2.0], [3.0, 2.0], "at least 3 points"),
        ([1.0, 2.0, 3.0], [3.0, float("nan"), 1.0], "y must be finite"),
        ([1.0, 1.0, 2.0], [3.0, 2.0, 1.0], "distinct x"),
    ],
)
def test_bad_input_raises_naming_the_problem(x, y, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(x, y)


def test_bad_ci_level_raises():
    with pytest.raises(ValueError, match="ci_level"):
        fit_power_law(X6, noisy(X6), ci_level=1.0)


def test_same_seed_gives_identical_fits_and_other_seed_other_refits():
    y = noisy(X6)
    a, b = fit_power_law(X6, y, n_bootstrap=50, seed=7), fit_power_law(X6, y, n_bootstrap=50, seed=7)
    c = fit_power_law(X6, y, n_bootstrap=50, seed=8)
    assert a.to_dict() == b.to_dict()
    assert (a.A_ci_low, a.A_ci_high) != (c.A_ci_low, c.A_ci_high)
    # the profile CIs depend on the data and their errors only
    assert (a.E_ci_low, a.E_ci_high) == (c.E_ci_low, c.E_ci_high)


def test_narrower_ci_level_nests_inside_wider():
    y = noisy(X6)
    wide, narrow = fit_power_law(X6, y, ci_level=0.95), fit_power_law(X6, y, ci_level=0.5)
    assert wide.E_ci_low < narrow.E_ci_low < narrow.E_ci_high < wide.E_ci_high
    assert narrow.ci_level == 0.5


def test_p0_as_tuple_or_dict_reaches_same_optimum():
    y = noisy(X6)
    base = fit_power_law(X6, y, n_bootstrap=0)
    as_tuple = fit_power_law(X6, y, n_bootstrap=0, p0=(1.0, 0.5, 2.0))
    as_dict = fit_power_law(X6, y, n_bootstrap=0, p0={"A": 1.0, "alpha": 0.5, "E": 2.0})
    for f in (as_tuple, as_dict):
        assert f.E == pytest.approx(base.E, abs=1e-6)
        assert f.alpha == pytest.approx(base.alpha, abs=1e-6)


def test_predict_and_to_dict():
    fit = make_fit(2.0, 1.0, 1.0)
    assert fit.predict(4.0) == pytest.approx(1.5)
    np.testing.assert_allclose(fit.predict([1.0, 2.0]), [3.0, 2.0])
    d = fit.to_dict()
    assert d["A"] == 2.0 and d["alpha"] == 1.0 and d["success"] is True


def test_inverse_round_trips_predict():
    fit = fit_power_law(X6, noisy(X6), n_bootstrap=0)
    xs = np.array([0.5, 3.0, 100.0, 1e4])
    np.testing.assert_allclose(inverse_power_law(fit, fit.predict(xs)), xs, rtol=1e-8)
    assert inverse_power_law(fit, fit.predict(5.0)) == pytest.approx(5.0, rel=1e-8)


def test_inverse_is_inf_at_or_below_asymptote():
    fit = make_fit(2.0, 0.5, 3.0)
    assert inverse_power_law(fit, 3.0) == math.inf
    assert inverse_power_law(fit, 2.5) == math.inf
    # Hand value: 2 / x**0.5 = 1  ->  x = 4.
    assert inverse_power_law(fit, 4.0) == pytest.approx(4.0)


def test_data_efficiency_hand_checkable():
    # L = 1/D, so D_eff(L) = 1/L: 0.25 vs 0.5 is twice the data.
    fit = make_fit(1.0, 1.0, 0.0)
    assert data_efficiency(fit, 0.25, 0.5) == pytest.approx(2.0)
    # L = 1/sqrt(D) + 1: D_eff(1.25) = 16, D_eff(1.5) = 4.
    fit = make_fit(1.0, 0.5, 1.0)
    assert data_efficiency(fit, 1.25, 1.5) == pytest.approx(4.0)
    assert data_efficiency(fit, 0.9, 1.5) == math.inf


def test_data_efficiency_interval_hand_checkable():
    # L = 1/(D) + E: D_eff(L) = 1/(L - E). Baseline loss 3, recipe loss 2: E = 0 gives 3/2, E = 1 gives
    # 2/1 = 2, E = 0.5 gives 2.5/1.5 = 5/3. With the recipe loss's CI [1.5, 2.5] the ends move to the
    # multipliers at 2.5 (E = 0: 1.2) and at 1.5 (E = 1: 4).
    laws = [make_fit(1.0, 1.0, e) for e in (0.0, 0.5, 1.0)]
    assert data_efficiency_interval(laws, 2.0, 3.0, ci_level=0.5) == pytest.approx((1.5, 2.0))
    assert data_efficiency_interval(laws, 2.0, 3.0, ci_level=0.5, recipe_loss_ci=(1.5, 2.5)) == pytest.approx((1.2, 4.0))
    # a recipe loss below one law's E is unbounded under it; a law that cannot reach the baseline
    # loss (E above it) gives no multiplier and is skipped
    lo, hi = data_efficiency_interval(laws + [make_fit(1.0, 1.0, 1.97)], 1.95, 3.0, ci_level=0.9)
    assert hi == math.inf and lo == pytest.approx(3.0 / 1.95)
    assert data_efficiency_interval(laws + [make_fit(1.0, 1.0, 3.5)], 2.0, 3.0, ci_level=0.5) == pytest.approx((1.5, 2.0))
    assert all(math.isnan(v) for v in data_efficiency_interval(laws[:1], 2.0, 3.0))


def test_bootstrap_laws_are_the_refits_behind_a_ci():
    y = noisy(X6)
    fit = fit_power_law(X6, y, n_bootstrap=60, ci_level=0.9, seed=3, sigma=0.01)
    laws = bootstrap_laws(fit)
    assert len(laws) == fit.n_bootstrap_used == 60
    A = np.array([law.A for law in laws])
    assert np.percentile(A, 5) == pytest.approx(fit.A_ci_low, abs=1e-9)
    assert np.percentile(A, 95) == pytest.approx(fit.A_ci_high, abs=1e-9)
    # drawn from the fitted law with the points' errors: their E scatter about the fit's
    E = np.array([law.E for law in laws])
    assert abs(np.median(E) - fit.E) < 0.05


def test_joint_asymptote_fits_asymptotes_over_n():
    n = np.array([0.15, 0.3, 0.6, 1.4])
    asym = law(n, 0.4, 0.5, 3.0)
    fit = joint_asymptote(n, asym, n_bootstrap=0)
    assert isinstance(fit, PowerLawFit)
    assert fit.n_bootstrap_used == 0  # keyword arguments reach fit_power_law
    assert fit.E == pytest.approx(3.0, abs=1e-4)
    assert fit.alpha == pytest.approx(0.5, abs=1e-4)


def test_a_fit_to_points_that_do_not_fall_is_flat_and_a_power_law_is_not():
    """Losses that rise or stay level over x: the best fit of A / x^alpha + E (A, alpha >= 0) is a
    constant, with alpha or A at 0, so its E says nothing about an asymptote. Noisy points of a real
    law, even one that falls little, are not flat."""
    x = np.array([1.3e4, 2.8e4, 5.3e4, 1.1e5])
    level = fit_power_law(x, np.array([5.421, 5.446, 5.419, 5.431]), n_bootstrap=0)  # the default's baseline L(N)
    assert is_flat(level, x)
    assert level.predict(x) == pytest.approx(np.full(4, 5.42925), abs=1e-4)  # the mean: a constant
    rising = fit_power_law(X6, 3.0 + 0.01 * np.arange(6), n_bootstrap=0)
    assert is_flat(rising, X6)
    assert not is_flat(fit_power_law(X6, noisy(X6), n_bootstrap=0), X6)
    shallow = law(x, 0.5, 0.05, 4.0) + np.array([0.002, -0.002, 0.001, -0.001])  # falls 0.018 over x
    assert not is_flat(fit_power_law(x, shallow, n_bootstrap=0), x)
    assert is_flat(make_fit(4.2, 0.0, 0.0), x) and not is_flat(make_fit(4.2, 1e-3, 0.0), x)


def test_a_pure_power_law_levels_at_zero_and_one_with_an_asymptote_does_not():
    pure = fit_power_law(X6, law(X6, 5.0, 0.1, 0.0), n_bootstrap=0)  # falls without levelling off
    assert levels_at_zero(pure, law(X6, 5.0, 0.1, 0.0)) and not is_flat(pure, X6)
    assert not levels_at_zero(fit_power_law(X6, noisy(X6), n_bootstrap=0), noisy(X6))


# The default study's four sizes (non-embedding parameters) and a law through losses like its own.
X_DEFAULT = np.array([2.7e4, 6.0e4, 1.07e5, 2.4e5])


def _coverage(A, alpha, E, seed_sd, n_studies, seed):
    """Share of simulated 4-point studies whose 95% CIs of E and alpha hold the truth: each point is
    the mean of 3 reseeds with sd `seed_sd`, and the noise is known to the fit only as the pooled
    sd of 4 cells' reseeds (8 degrees of freedom), as the study measures it."""
    rng = np.random.default_rng(seed)
    truth = law(X_DEFAULT, A, alpha, E)
    covered = np.zeros(2)
    for _ in range(n_studies):
        y = truth + rng.normal(0.0, seed_sd / math.sqrt(3), 4)
        pooled = seed_sd * math.sqrt(rng.chisquare(8) / 8)
        f = fit_power_law(X_DEFAULT, y, sigma=pooled / math.sqrt(3), noise_df=8, n_bootstrap=0)
        # a nan end is not determined: the CI is open on that side
        for i, (lo, hi, t) in enumerate(((f.E_ci_low, f.E_ci_high, E), (f.alpha_ci_low, f.alpha_ci_high, alpha))):
            covered[i] += (np.nan_to_num(lo, nan=-np.inf) <= t <= np.nan_to_num(hi, nan=np.inf))
    return covered / n_studies


@pytest.mark.parametrize("seed_sd", [0.003, 0.01, 0.03])
def test_ci_coverage_on_simulated_four_point_studies(seed_sd):
    """The 95% CIs of E and alpha hold the true law in 90-99% of 200 simulated 4-point studies at the
    default's sizes, whatever the noise. The pair bootstrap this replaced covered E in 45-77% of the
    studies where it gave a bounded CI, and a CI of width 0 on 4 points exactly on a law."""
    cover_E, cover_alpha = _coverage(30.0, 0.5, 4.4, seed_sd, 200, seed=11)
    assert 0.90 <= cover_E <= 0.99
    assert 0.90 <= cover_alpha <= 0.99


def test_ci_width_follows_the_noise_and_is_not_zero_on_exact_points():
    y = law(X_DEFAULT, 30.0, 0.5, 4.4)
    widths = []
    for sd in (0.001, 0.003):
        f = fit_power_law(X_DEFAULT, y, sigma=sd, n_bootstrap=0)
        assert f.E_ci_low < 4.4 < f.E_ci_high
        widths.append(f.E_ci_high - f.E_ci_low)
    assert widths[1] > 2 * widths[0] > 0


def test_an_asymptote_the_data_do_not_bound_is_not_determined():
    """With errors as large as the fall over N, E = 0 (a pure power law) fits as well as any: the CI's
    low end is nan (not determined), not a tiny positive number."""
    y = law(X_DEFAULT, 30.0, 0.5, 4.4)
    f = fit_power_law(X_DEFAULT, y, sigma=0.05, n_bootstrap=0)
    assert math.isnan(f.E_ci_low) and f.E_ci_high > 4.4


def test_goodness_of_fit_rejects_points_off_the_law_and_accepts_points_on_it():
    zigzag = law(X_DEFAULT, 30.0, 0.5, 4.4) + np.array([0.0, 0.03, -0.03, 0.0])
    bad = fit_power_law(X_DEFAULT, zigzag, sigma=0.003, n_bootstrap=0)
    assert bad.gof_dof == 1 and bad.gof_p < 1e-3
    good = fit_power_law(X_DEFAULT, law(X_DEFAULT, 30.0, 0.5, 4.4) + np.array([0.0, 0.002, -0.002, 0.0]),
                         sigma=0.003, n_bootstrap=0)
    assert good.gof_p > 0.2
    # errors estimated from the residuals cannot also test the fit
    assert math.isnan(fit_power_law(X_DEFAULT, zigzag, n_bootstrap=0).gof_p)


def test_errors_estimated_with_few_degrees_of_freedom_widen_the_ci():
    y = law(X_DEFAULT, 300.0, 0.7, 4.3) + np.array([0.001, -0.002, 0.002, -0.001])
    known = fit_power_law(X_DEFAULT, y, sigma=0.003, n_bootstrap=0)
    estimated = fit_power_law(X_DEFAULT, y, sigma=0.003, noise_df=4, n_bootstrap=0)
    assert estimated.E_ci_low < known.E_ci_low < known.E_ci_high < estimated.E_ci_high


def test_bad_sigma_names_the_problem():
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        fit_power_law(X_DEFAULT, law(X_DEFAULT, 30.0, 0.5, 4.4), sigma=[0.01, 0.0, 0.01, 0.01])
