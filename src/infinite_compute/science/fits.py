"""Power-law fits L(x) = A / x**alpha + E with profile-likelihood confidence intervals.

The paper fits this form in three places: loss vs. parameter count for a fixed
data budget, loss vs. ensemble size, and the asymptotes of those fits vs.
parameter count. Each fit has only 3-6 points and three free parameters, so it
is ill-conditioned; the code here reparametrises x around its geometric mean and
profiles out the linear parameters (A, E) over a fine grid of exponents: that
profile is exact at each exponent, so its minimum is the global optimum, which
lmfit then polishes (and gives the covariance of).

Uncertainty comes from each point's standard error (``sigma``: the seed noise of
that point, measured by reseeds), not from resampling the points: with 4 points a
pair bootstrap mostly refits 3 of them, which a 3-parameter law interpolates, so
its "CI" is a leave-one-out range that does not shrink or grow with the noise.
The CIs of E and alpha are profile-likelihood intervals: every value whose best
chi-square (the other parameters refitted) lies within the F(1, df) quantile of
the minimum, df being the degrees of freedom of the noise estimate. A side the
data do not bound (E down to 0, alpha up to a step) is reported as nan: not
determined. The chi-square at the optimum is the goodness of fit. Measured
coverage on simulated 4-point studies: tests/test_fits.py and bench/coverage.md.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import lmfit
import numpy as np
from scipy import stats
from scipy.optimize import least_squares

__all__ = [
    "JointAsymptote",
    "PowerLawFit",
    "bootstrap_laws",
    "data_efficiency",
    "data_efficiency_interval",
    "fit_power_law",
    "inverse_power_law",
    "is_flat",
    "levels_at_zero",
    "joint_asymptote",
    "profile_threshold",
    "is_step",
    "STEP_ALPHA",
]

_MIN_POINTS = 3
# The exponents the profiles scan (in units of x / its geometric mean). Beyond alpha 10 the law is a
# step: every point but the smallest x sits on E, and the chi-square no longer changes, so a CI
# still open there has no upper end the data determine.
STEP_ALPHA = 10.0
_PROFILE_ALPHAS = np.concatenate([[0.0], np.geomspace(1e-3, STEP_ALPHA, 360)])
# Values of E the profile scans on its coarse pass; the crossing is then refined on a fine grid.
_PROFILE_E_STEPS = 160


@dataclass(frozen=True)
class PowerLawFit:
    """Result of fitting L(x) = A / x**alpha + E; stderrs and CIs may be nan (a CI end that is nan
    is not determined: the data allow any value on that side)."""

    A: float
    alpha: float
    E: float
    A_stderr: float
    alpha_stderr: float
    E_stderr: float
    E_ci_low: float
    E_ci_high: float
    alpha_ci_low: float
    alpha_ci_high: float
    A_ci_low: float
    A_ci_high: float
    n_points: int
    ci_level: float
    success: bool
    message: str
    n_bootstrap_used: int = 0
    # (A, alpha, E) of each parametric-bootstrap refit, to carry the fit's uncertainty onwards
    bootstrap_params: tuple = field(default=(), repr=False, compare=False)
    # the chi-square at the optimum in units of the points' errors, its degrees of freedom (points - 3)
    # and its p-value (nan where the errors were estimated from the residuals themselves)
    gof_chi2: float = math.nan
    gof_dof: int = 0
    gof_p: float = math.nan
    # the noise behind the CIs: "measured" (per-point errors given, with noise_df degrees of freedom;
    # inf when known) or "residuals" (estimated from the scatter about the fit, n - 3 df)
    noise: str = "measured"
    noise_df: float = math.inf

    def predict(self, x):
        """Evaluate A / x**alpha + E (float for scalar x, array otherwise)."""
        x = np.asarray(x, dtype=float)
        # Via logs so that a huge A (x ~ 1e7 with a large alpha) and a tiny
        # x**-alpha do not overflow/underflow separately.
        with np.errstate(divide="ignore"):
            y = np.exp(np.log(self.A) - self.alpha * np.log(x)) + self.E
        return float(y) if y.ndim == 0 else y

    def to_dict(self) -> dict:
        """Plain dict of all fields (JSON-serialisable; nan stays float nan)."""
        return asdict(self)


# A joint asymptote is an ordinary power-law fit over N; the alias exists so
# callers can annotate what the fit means.
JointAsymptote = PowerLawFit


def _validate(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"x and y must be 1-D, got shapes {x.shape} and {y.shape}")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < _MIN_POINTS:
        raise ValueError(f"need at least {_MIN_POINTS} points to fit 3 parameters, got {x.size}")
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ValueError(f"all x must be finite and > 0, got {x.tolist()}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"all y must be finite (no nan/inf), got {y.tolist()}")
    if np.unique(x).size < _MIN_POINTS:
        raise ValueError(f"need at least {_MIN_POINTS} distinct x values, got {np.unique(x).size}")
    return x, y


def _validate_sigma(sigma, n: int) -> np.ndarray:
    s = np.broadcast_to(np.asarray(sigma, dtype=float), (n,)).copy()
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"sigma must be finite and > 0 for every point, got {s.tolist()}")
    return s


def profile_threshold(ci_level: float, noise_df: float) -> float:
    """The rise of the chi-square above its minimum that bounds a profile CI of one parameter: the
    F(1, noise_df) quantile (chi-square(1) with known errors; wider when they were estimated from few
    seeds, as a t interval is wider than a z interval)."""
    if not math.isfinite(noise_df):
        return float(stats.chi2.ppf(ci_level, 1))
    return float(stats.f.ppf(ci_level, 1, noise_df))


def _residual(params: lmfit.Parameters, u: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    v = params.valuesdict()
    return (v["a"] * u ** -v["alpha"] + v["E"] - y) * w


def _jacobian(params: lmfit.Parameters, u: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Analytic d(residual)/d(a, alpha, E), columns in parameter insertion order."""
    v = params.valuesdict()
    power = u ** -v["alpha"]
    return np.column_stack([power, -v["a"] * power * np.log(u), np.ones_like(u)]) * w[:, None]


def _minimize(u, y, w, start: tuple[float, float, float], scale_covar: bool) -> lmfit.minimizer.MinimizerResult:
    params = lmfit.Parameters()
    params.add("a", value=max(start[0], 0.0), min=0.0)
    params.add("alpha", value=max(start[1], 0.0), min=0.0)
    params.add("E", value=max(start[2], 0.0), min=0.0)
    minimizer = lmfit.Minimizer(_residual, params, fcn_args=(u, y, w), scale_covar=scale_covar)
    with warnings.catch_warnings():
        # lmfit warns while deriving correlations from a singular covariance
        # (interpolating or duplicated-point fits); _stderrs reports nan then.
        warnings.simplefilter("ignore", RuntimeWarning)
        # Tight tolerances cost little on a handful of points and stop the
        # optimiser quitting early in the flat valleys of ill-conditioned fits.
        return minimizer.minimize(
            method="least_squares", Dfun=_jacobian, xtol=1e-14, ftol=1e-14, gtol=1e-14, max_nfev=2000
        )


def _best_fit(u, y, w, extra: tuple[float, float, float] | None, scale_covar: bool):
    """lmfit's fit from the profile's global optimum (and from ``extra``, a caller's start), keeping
    the lowest chi-square; lmfit's result gives the covariance behind the standard errors."""
    starts = [_profile_optimum(u, y, w**2)] + ([extra] if extra is not None else [])
    return min((_minimize(u, y, w, s, scale_covar) for s in starts), key=lambda r: r.chisqr)


def _unscale(a: float, alpha: float, x0: float) -> float:
    """A in original x units from a in units of x / x0: A = a * x0**alpha."""
    with np.errstate(over="ignore"):
        return float(a * np.exp(alpha * math.log(x0)))


def _stderrs(result, x0: float, n_points: int) -> tuple[float, float, float]:
    """Standard errors of (A, alpha, E) from lmfit's covariance; nan when not estimable."""
    nan3 = (math.nan, math.nan, math.nan)
    # With as many points as parameters the fit interpolates and the residual
    # variance (hence the covariance) is undefined, not zero.
    if n_points <= 3 or not result.errorbars or result.covar is None:
        return nan3
    covar = np.asarray(result.covar, dtype=float)
    order = {name: i for i, name in enumerate(result.var_names)}
    if set(order) != {"a", "alpha", "E"} or not np.all(np.isfinite(covar)):
        return nan3
    p = result.params
    a, alpha = p["a"].value, p["alpha"].value
    A = _unscale(a, alpha, x0)
    # Delta method for A = a * x0**alpha.
    grad = np.zeros(3)
    grad[order["a"]] = A / a if a > 0 else math.exp(alpha * math.log(x0))
    grad[order["alpha"]] = A * math.log(x0)
    var_A = float(grad @ covar @ grad)
    i_alpha, i_E = order["alpha"], order["E"]

    def _sd(v: float) -> float:
        return math.sqrt(v) if v > 0 and math.isfinite(v) else math.nan

    return _sd(var_A), _sd(covar[i_alpha, i_alpha]), _sd(covar[i_E, i_E])


def _solve_given_alpha(u: np.ndarray, y: np.ndarray, w2: np.ndarray, alphas: np.ndarray):
    """The least chi-square over a, E >= 0 at each fixed exponent, and its (a, E): the model is linear
    in (a, E) then, so the optimum is the unconstrained weighted solution or one on a bound."""
    v = u[None, :] ** -alphas[:, None]
    sw, sy, syy = w2.sum(), (w2 * y).sum(), (w2 * y * y).sum()
    sv, svv, svy = (w2 * v).sum(1), (w2 * v * v).sum(1), (w2 * v * y).sum(1)

    def chi2(a, e):
        return syy - 2 * a * svy - 2 * e * sy + a * a * svv + 2 * a * e * sv + e * e * sw

    with np.errstate(divide="ignore", invalid="ignore"):
        det = sw * svv - sv * sv
        a_u = (sw * svy - sv * sy) / det
        e_u = (svv * sy - sv * svy) / det
        ok = (det > 1e-12 * sw * svv) & (a_u >= 0) & (e_u >= 0)
        a_only = np.maximum(svy / svv, 0.0)
    e_only = max(sy / sw, 0.0)
    cands = [(np.where(ok, chi2(a_u, e_u), np.inf), np.where(ok, a_u, 0.0), np.where(ok, e_u, 0.0)),
             (chi2(a_only, 0.0), a_only, np.zeros_like(svv)),
             (np.full_like(svv, chi2(0.0, e_only)), np.zeros_like(svv), np.full_like(svv, e_only))]
    c = np.stack([k[0] for k in cands])
    i = c.argmin(0)
    pick = np.arange(svv.size)
    return c[i, pick], np.stack([k[1] for k in cands])[i, pick], np.stack([k[2] for k in cands])[i, pick]


def _chi2_given_alpha(u: np.ndarray, y: np.ndarray, w2: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    return _solve_given_alpha(u, y, w2, alphas)[0]


def _profile_optimum(u: np.ndarray, y: np.ndarray, w2: np.ndarray) -> tuple[float, float, float]:
    """The global least-squares (a, alpha, E): the alpha profile is exact at each exponent, so its
    minimum over the scanned exponents, refined by a golden-section search between the best one's
    neighbours, is the optimum without a local optimiser's crawl along the flat valleys of 4 points."""
    grid = _PROFILE_ALPHAS
    c = _chi2_given_alpha(u, y, w2, grid)
    k = int(np.argmin(c))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    g = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
        c1, c2 = _chi2_given_alpha(u, y, w2, np.array([x1, x2]))
        if c1 < c2:
            hi = x2
        else:
            lo = x1
    cand = np.array([grid[k], (lo + hi) / 2])
    c, a, e = _solve_given_alpha(u, y, w2, cand)
    j = int(np.argmin(c))
    return float(a[j]), float(cand[j]), float(e[j])


def _chi2_at(u, y, w2, Es: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """The least chi-square over a >= 0 at each pair (E, alpha): a is linear then."""
    v = u[None, :] ** -alphas[:, None]
    z = y[None, :] - Es[:, None]
    zv = (w2 * z * v).sum(1)
    return (w2 * z * z).sum(1) - np.where(zv > 0, zv * zv / (w2 * v * v).sum(1), 0.0)


def _chi2_given_E(u: np.ndarray, y: np.ndarray, w2: np.ndarray, Es: np.ndarray) -> np.ndarray:
    """The least chi-square over a >= 0 and alpha >= 0 at each fixed E: the exponents' grid, then a
    golden-section search in log alpha between the best grid exponent's neighbours (with small
    errors a grid's step alone moves the chi-square by more than a narrow CI's threshold)."""
    v = u[None, :] ** -_PROFILE_ALPHAS[:, None]  # (alphas, n)
    z = y[None, :] - Es[:, None]  # (Es, n)
    zv = np.einsum("en,an,n->ea", z, v, w2)
    vv = (w2 * v * v).sum(1)
    grid = (w2 * z * z).sum(1)[:, None] - np.where(zv > 0, zv * zv / vv[None, :], 0.0)
    k = grid.argmin(1)
    best = grid[np.arange(Es.size), k]
    logs = np.log(np.maximum(_PROFILE_ALPHAS, 1e-4))
    lo, hi = logs[np.maximum(k - 1, 0)], logs[np.minimum(k + 1, logs.size - 1)]
    g = (math.sqrt(5) - 1) / 2
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fd = _chi2_at(u, y, w2, Es, np.exp(c)), _chi2_at(u, y, w2, Es, np.exp(d))
    for _ in range(40):
        left = fc < fd
        hi, lo = np.where(left, d, hi), np.where(left, lo, c)
        c_new, d_new = hi - g * (hi - lo), lo + g * (hi - lo)
        # the kept inner point carries over; one new evaluation per step
        fd, fc = np.where(left, fc, _chi2_at(u, y, w2, Es, np.exp(d_new))), \
            np.where(left, _chi2_at(u, y, w2, Es, np.exp(c_new)), fd)
        c, d = c_new, d_new
    return np.minimum(best, np.minimum(fc, fd))


def _refine(fn, t_in: float, t_out: float, c_min: float, delta: float) -> float:
    """Where fn - c_min first exceeds delta between a value inside the CI and one outside it: a fine
    grid from the inside out, then linear interpolation across the crossing."""
    fine = np.linspace(t_in, t_out, 64)
    fe = fn(fine) - c_min - delta
    k = max(int(np.argmax(fe > 0)), 1)
    t0, t1, e0, e1 = fine[k - 1], fine[k], fe[k - 1], fe[k]
    return float(t0 + (t1 - t0) * (-e0) / (e1 - e0)) if e1 > e0 else float(t1)


def _interval(fn, grid: np.ndarray, chi2_min: float, delta: float, open_low: bool) -> tuple[float, float]:
    """The CI {t : fn(t) - chi2_min <= delta} over a scanned ``grid``, each end refined between its
    last grid value inside and first outside; nan for an end still inside at the grid's end (not
    determined), or 0 at the low end when ``open_low`` is False (a bound the parameter may reach)."""
    prof = fn(grid)
    c_min = min(chi2_min, float(prof.min()))
    inside = prof - c_min <= delta
    if not inside.any():
        return math.nan, math.nan
    i0, i1 = int(np.argmax(inside)), int(len(inside) - 1 - np.argmax(inside[::-1]))
    if i0 == 0:
        low = math.nan if open_low else float(grid[0])
    else:
        low = _refine(fn, grid[i0], grid[i0 - 1], c_min, delta)
    high = math.nan if i1 == len(grid) - 1 else _refine(fn, grid[i1], grid[i1 + 1], c_min, delta)
    return low, high


def _profile_cis(u, y, w2, best_alpha: float, best_E: float, chi2_min: float, delta: float):
    """Profile-likelihood CIs of alpha and E (see the module docstring). E's scan runs from 0 (a pure
    power law: if the data allow it, E's lower end is not determined) to above every point; alpha's
    from 0 (a constant: the lower end 0 is then a real end, the data allow no fall) to a step."""
    e_hi = float(np.max(y)) + float(np.ptp(y)) + math.sqrt(delta / w2.min())
    # the optimum itself is scanned, so that a CI narrower than the grid's step is still found
    e_grid = np.unique(np.concatenate([np.linspace(0.0, e_hi, _PROFILE_E_STEPS), [best_E]]))
    e_ci = _interval(lambda g: _chi2_given_E(u, y, w2, g), e_grid, chi2_min, delta, open_low=True)
    a_grid = np.unique(np.concatenate([_PROFILE_ALPHAS, [min(best_alpha, _PROFILE_ALPHAS[-1])]]))
    alpha_ci = _interval(lambda g: _chi2_given_alpha(u, y, w2, np.asarray(g, float)), a_grid,
                         chi2_min, delta, open_low=False)
    return alpha_ci, e_ci


def _refit(u: np.ndarray, y: np.ndarray, start: tuple[float, float, float], w: np.ndarray) -> np.ndarray:
    """A bootstrap refit: the problem `_minimize` gives lmfit (residual, Jacobian, bounds at 0,
    tolerances), solved by the solver lmfit calls (scipy's bounded trust-region least_squares)
    directly. The refits need only the optimum, and lmfit's per-call parameter bookkeeping made them
    ~1 min of a default study's fits (bench/fits.py)."""

    def fun(p):
        return (p[0] * u ** -p[1] + p[2] - y) * w

    def jac(p):
        power = u ** -p[1]
        return np.column_stack([power, -p[0] * power * np.log(u), np.ones_like(u)]) * w[:, None]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return least_squares(fun, np.maximum(np.asarray(start, float), 0.0), jac=jac, bounds=(0.0, np.inf),
                             method="trf", xtol=1e-14, ftol=1e-14, gtol=1e-14, max_nfev=_REFIT_MAX_NFEV).x


# A refit that has not converged in this many evaluations sits in the flat valley of an ill-posed
# draw (alpha -> 0, A and E trading off); more evaluations moved such refits along the valley, not to
# an optimum.
_REFIT_MAX_NFEV = 200


def _parametric_bootstrap(u, y_fit, sigma, x0, start, n_bootstrap, noise_df, seed) -> np.ndarray:
    """(A, alpha, E) of refits to data drawn from the fitted law with each point's error (and, for
    errors estimated with finite df, a drawn noise scale), shape (m, 3)."""
    if n_bootstrap == 0:
        return np.empty((0, 3))
    rng = np.random.default_rng(seed)
    w = 1.0 / sigma
    out = np.empty((n_bootstrap, 3))
    for i in range(n_bootstrap):
        scale = math.sqrt(noise_df / rng.chisquare(noise_df)) if math.isfinite(noise_df) else 1.0
        y_star = y_fit + rng.normal(0.0, 1.0, y_fit.size) * sigma * scale
        a, alpha, E = _refit(u, y_star, start, w)
        out[i] = (_unscale(a, alpha, x0), alpha, E)
    return out


def bootstrap_laws(fit: PowerLawFit) -> list[PowerLawFit]:
    """The parametric-bootstrap refits of ``fit``, as laws with only A, alpha and E set: to carry the
    fit's uncertainty into what is computed from it."""
    nan = math.nan
    return [
        PowerLawFit(A=float(A), alpha=float(alpha), E=float(E), A_stderr=nan, alpha_stderr=nan, E_stderr=nan,
                    E_ci_low=nan, E_ci_high=nan, alpha_ci_low=nan, alpha_ci_high=nan, A_ci_low=nan, A_ci_high=nan,
                    n_points=fit.n_points, ci_level=fit.ci_level, success=True, message="bootstrap refit")
        for A, alpha, E in fit.bootstrap_params
    ]


def fit_power_law(
    x,
    y,
    *,
    n_bootstrap: int = 200,
    ci_level: float = 0.95,
    seed: int = 0,
    p0: Sequence[float] | Mapping[str, float] | None = None,
    sigma=None,
    noise_df: float = math.inf,
) -> PowerLawFit:
    """Weighted least-squares fit of y = A / x**alpha + E with A, alpha, E >= 0.

    ``sigma`` is each point's standard error (a scalar or one per point), estimated with
    ``noise_df`` degrees of freedom (inf: known). Without it the errors are estimated from the
    scatter about the fit (n - 3 df; no CI with 3 points) and no goodness of fit is reported.

    Several starts are tried (a profiled grid over alpha, a log-log guess and the optional ``p0``
    given as (A, alpha, E) or a dict with those keys) and the lowest chi-square wins. Standard
    errors come from lmfit's covariance (nan when it cannot be estimated). The CIs of E and alpha
    are profile-likelihood intervals, nan at an end the data do not bound; A's CI and
    ``bootstrap_params`` come from ``n_bootstrap`` parametric-bootstrap refits.
    """
    x, y = _validate(x, y)
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if not noise_df > 0:
        raise ValueError(f"noise_df must be > 0, got {noise_df}")
    n = x.size
    measured = sigma is not None
    sig = _validate_sigma(sigma, n) if measured else np.ones(n)

    # Fitting in u = x / x0 keeps a = A / x0**alpha of order y whatever the
    # units of x (parameter counts ~1e7 or billions ~1).
    x0 = float(np.exp(np.mean(np.log(x))))
    u = x / x0

    extra = None
    if p0 is not None:
        if isinstance(p0, Mapping):
            A0, alpha0, E0 = (float(p0[k]) for k in ("A", "alpha", "E"))
        else:
            A0, alpha0, E0 = (float(v) for v in p0)
        extra = (A0 / x0**alpha0, alpha0, E0)

    result = _best_fit(u, y, 1.0 / sig, extra, scale_covar=not measured)
    p = result.params
    a, alpha, E = p["a"].value, p["alpha"].value, p["E"].value
    A = _unscale(a, alpha, x0)
    A_se, alpha_se, E_se = _stderrs(result, x0, n)
    y_fit = a * u ** -alpha + E
    chi2 = float(np.sum(((y_fit - y) / sig) ** 2))
    dof = n - 3

    if not measured:
        # the residuals are the only estimate of the noise: n - 3 df, none with 3 points
        noise_df = float(dof)
        if dof > 0:
            sig = np.full(n, max(math.sqrt(chi2 / dof), 1e-12 * max(float(np.max(np.abs(y))), 1.0)))
    gof_p = math.nan
    if measured and dof > 0:
        gof_p = float(stats.chi2.sf(chi2, dof) if not math.isfinite(noise_df)
                      else stats.f.sf(chi2 / dof, dof, noise_df))

    nan2 = (math.nan, math.nan)
    alpha_ci, E_ci, A_ci, refits = nan2, nan2, nan2, np.empty((0, 3))
    if noise_df > 0:
        w2 = 1.0 / sig**2
        delta = profile_threshold(ci_level, noise_df)
        chi2_min = float(np.sum(w2 * (y_fit - y) ** 2))
        alpha_ci, E_ci = _profile_cis(u, y, w2, alpha, E, chi2_min, delta)
        refits = _parametric_bootstrap(u, y_fit, sig, x0, (a, alpha, E), n_bootstrap, noise_df, seed)
        if len(refits) >= 2:
            tail = 100.0 * (1.0 - ci_level) / 2.0
            A_ci = tuple(float(v) for v in np.percentile(refits[:, 0], [tail, 100.0 - tail]))

    return PowerLawFit(
        A=A,
        alpha=float(alpha),
        E=float(E),
        A_stderr=A_se,
        alpha_stderr=alpha_se,
        E_stderr=E_se,
        E_ci_low=E_ci[0],
        E_ci_high=E_ci[1],
        alpha_ci_low=alpha_ci[0],
        alpha_ci_high=alpha_ci[1],
        A_ci_low=A_ci[0],
        A_ci_high=A_ci[1],
        n_points=int(n),
        ci_level=float(ci_level),
        success=bool(result.success),
        message=str(result.message),
        n_bootstrap_used=len(refits),
        bootstrap_params=tuple(tuple(float(v) for v in r) for r in refits),
        gof_chi2=chi2 if measured else math.nan,
        gof_dof=int(dof),
        gof_p=gof_p,
        noise="measured" if measured else "residuals",
        noise_df=float(noise_df),
    )


# A parameter this small relative to the loss scale sits on its bound 0: a fitted law that falls by
# less over its x has alpha or A at 0 (the points show no decrease; A and E are not separable), and
# an E this small is a pure power law's.
_AT_BOUND = 1e-6


def is_flat(fit: PowerLawFit, x) -> bool:
    """True when ``fit`` does not fall over the range of ``x``: the best fit is a constant (alpha or
    A at its bound 0). Its E is then only one way of splitting that constant with A, not an
    asymptote the points determine."""
    x = np.asarray(x, dtype=float)
    low, high = fit.predict(x.max()), fit.predict(x.min())
    return not high - low > _AT_BOUND * max(abs(low), 1.0)


def is_step(fit: PowerLawFit) -> bool:
    """True when the best law is a step: its exponent lies beyond STEP_ALPHA, where every point but the
    smallest x sits on E. The least squares then has no interior optimum (alpha and A run off to
    infinity together, so an optimiser stops on its evaluation limit), and the points show a drop at
    the smallest x, not a power law."""
    return fit.alpha > STEP_ALPHA


def levels_at_zero(fit: PowerLawFit, y) -> bool:
    """True when ``fit``'s E sits on its bound 0: the points do not level off, the best fit is a pure
    power law, and no asymptote above 0 is determined (a loss of 0 nats is not one)."""
    return not fit.E > _AT_BOUND * max(float(np.max(np.abs(y))), 1.0)


def inverse_power_law(fit: PowerLawFit, loss):
    """The x at which ``fit`` reaches ``loss``: (A / (loss - E))**(1/alpha).

    Returns +inf where ``loss <= E`` (the law never gets that low). Float for
    scalar ``loss``, array otherwise.
    """
    loss = np.asarray(loss, dtype=float)
    gap = loss - fit.E
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # Logs avoid overflow of A (large in raw parameter-count units).
        x = np.exp((np.log(fit.A) - np.log(np.where(gap > 0, gap, 1.0))) / fit.alpha)
    x = np.where(gap > 0, x, np.inf)
    return float(x) if x.ndim == 0 else x


def data_efficiency(baseline_fit: PowerLawFit, recipe_loss, baseline_loss):
    """Data multiplier D_eff(recipe_loss) / D_eff(baseline_loss) under the baseline law.

    D_eff(L) is the data the baseline's law L(D) = A / D**alpha + E needs to
    reach L. A recipe loss at or below E gives +inf; if both losses are at or
    below E the ratio is undefined (nan).
    """
    d_recipe = inverse_power_law(baseline_fit, recipe_loss)
    d_base = inverse_power_law(baseline_fit, baseline_loss)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.asarray(d_recipe, dtype=float) / np.asarray(d_base, dtype=float)
    return float(ratio) if ratio.ndim == 0 else ratio


def data_efficiency_interval(
    laws: Sequence[PowerLawFit], recipe_loss: float, baseline_loss: float, *, ci_level: float = 0.95,
    recipe_loss_ci: tuple[float, float] = (math.nan, math.nan), recipe_loss_se: float = math.nan,
    baseline_loss_se: float = math.nan, seed: int = 0,
) -> tuple[float, float]:
    """A CI of the data-efficiency multiplier that carries the baseline law's uncertainty (``laws``:
    its bootstrap refits) and the losses' own.

    With standard errors of the recipe's and the baseline's losses, each law is paired with losses
    drawn from them (normal, seeded) and the CI is the percentile interval of those multipliers.
    Otherwise, with the recipe loss's CI, the low end is the lower percentile over the laws of the
    multiplier at the CI's high loss and the high end the upper percentile at its low loss (a lower
    loss is more data). A law under which the baseline loss is unreachable gives no multiplier and is
    skipped. (nan, nan) with fewer than 2 laws.
    """
    tail = (1.0 - ci_level) / 2.0

    def quantiles(low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
        low, high = low[~np.isnan(low)], high[~np.isnan(high)]
        if low.size < 2 or high.size < 2:
            return math.nan, math.nan
        # inverted_cdf takes an order statistic: no interpolation between a finite and an infinite value
        return (float(np.quantile(low, tail, method="inverted_cdf")),
                float(np.quantile(high, 1.0 - tail, method="inverted_cdf")))

    r_se = recipe_loss_se if recipe_loss_se is not None and math.isfinite(recipe_loss_se) else 0.0
    b_se = baseline_loss_se if baseline_loss_se is not None and math.isfinite(baseline_loss_se) else 0.0
    if r_se > 0 or b_se > 0:
        rng = np.random.default_rng(seed)
        r = recipe_loss + r_se * rng.normal(size=len(laws))
        b = baseline_loss + b_se * rng.normal(size=len(laws))
        m = np.array([data_efficiency(law, ri, bi) for law, ri, bi in zip(laws, r, b)], dtype=float)
        return quantiles(m, m)
    lo_loss, hi_loss = (v if v is not None and math.isfinite(v) else recipe_loss for v in recipe_loss_ci)

    def spread(loss: float) -> np.ndarray:
        return np.array([data_efficiency(law, loss, baseline_loss) for law in laws], dtype=float)

    return quantiles(spread(hi_loss), spread(lo_loss))


def joint_asymptote(n, asymptotes_per_n, **kw) -> PowerLawFit:
    """Fit the K -> inf (or epochs -> inf) asymptotes over parameter count N as A / N**alpha + E.

    ``asymptotes_per_n[i]`` is the fitted E of the inner scaling law at
    ``n[i]``; keyword arguments go to :func:`fit_power_law`. The returned E is
    the joint (N, K -> inf) asymptote.
    """
    return fit_power_law(n, asymptotes_per_n, **kw)
