"""Power-law fits L(x) = A / x**alpha + E with bootstrap confidence intervals.

The paper fits this form in three places: loss vs. parameter count for a fixed
data budget, loss vs. ensemble size, and the asymptotes of those fits vs.
parameter count. Each fit has only 3-5 points and three free parameters, so it
is ill-conditioned; the code here reparametrises x around its geometric mean,
profiles out the linear parameters (A, E) over a grid of exponents to seed
several starts, and keeps the start with the lowest chi-square.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import lmfit
import numpy as np
from scipy.optimize import least_squares, nnls

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
]

# Exponents that seed the multi-start fit; they span the range of loss
# scaling exponents and the local optimiser refines from the best few.
_ALPHA_GRID = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
_MIN_POINTS = 3


@dataclass(frozen=True)
class PowerLawFit:
    """Result of fitting L(x) = A / x**alpha + E; stderrs and CIs may be nan."""

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
    # (A, alpha, E) of each bootstrap refit behind the CIs, to carry the fit's uncertainty onwards
    bootstrap_params: tuple = field(default=(), repr=False, compare=False)

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


def _profile_start(u: np.ndarray, y: np.ndarray, alpha: float) -> tuple[float, float, float, float]:
    """Best nonnegative (a, E) for fixed alpha in y = a*u**-alpha + E, with its chi-square."""
    design = np.column_stack([u**-alpha, np.ones_like(u)])
    (a, e), rnorm = nnls(design, y)
    return float(a), float(alpha), float(e), float(rnorm**2)


def _loglog_start(u: np.ndarray, y: np.ndarray) -> tuple[float, float, float] | None:
    """Initial guess from the log-log slope of y - E0 with E0 just below min(y)."""
    spread = float(np.ptp(y))
    if spread <= 0:
        return None
    e0 = max(float(np.min(y)) - 0.1 * spread, 0.0)
    resid = y - e0
    if np.any(resid <= 0):
        return None
    slope, intercept = np.polyfit(np.log(u), np.log(resid), 1)
    return float(math.exp(intercept)), max(float(-slope), 0.0), e0


def _residual(params: lmfit.Parameters, u: np.ndarray, y: np.ndarray) -> np.ndarray:
    v = params.valuesdict()
    return v["a"] * u ** -v["alpha"] + v["E"] - y


def _jacobian(params: lmfit.Parameters, u: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Analytic d(residual)/d(a, alpha, E), columns in parameter insertion order."""
    v = params.valuesdict()
    power = u ** -v["alpha"]
    return np.column_stack([power, -v["a"] * power * np.log(u), np.ones_like(u)])


def _minimize(u: np.ndarray, y: np.ndarray, start: tuple[float, float, float]) -> lmfit.minimizer.MinimizerResult:
    params = lmfit.Parameters()
    params.add("a", value=max(start[0], 0.0), min=0.0)
    params.add("alpha", value=max(start[1], 0.0), min=0.0)
    params.add("E", value=max(start[2], 0.0), min=0.0)
    minimizer = lmfit.Minimizer(_residual, params, fcn_args=(u, y))
    with warnings.catch_warnings():
        # lmfit warns while deriving correlations from a singular covariance
        # (interpolating or duplicated-point fits); _stderrs reports nan then.
        warnings.simplefilter("ignore", RuntimeWarning)
        # Tight tolerances cost little on a handful of points and stop the
        # optimiser quitting early in the flat valleys of ill-conditioned fits.
        return minimizer.minimize(
            method="least_squares", Dfun=_jacobian, xtol=1e-14, ftol=1e-14, gtol=1e-14, max_nfev=2000
        )


def _best_fit(u: np.ndarray, y: np.ndarray, starts: Sequence[tuple[float, float, float]]):
    best = None
    for start in starts:
        result = _minimize(u, y, start)
        if best is None or result.chisqr < best.chisqr:
            best = result
    return best


def _starts(u: np.ndarray, y: np.ndarray, extra: tuple[float, float, float] | None) -> list[tuple[float, float, float]]:
    profiled = sorted((_profile_start(u, y, a) for a in _ALPHA_GRID), key=lambda s: s[3])
    starts = [s[:3] for s in profiled[:4]]
    loglog = _loglog_start(u, y)
    if loglog is not None:
        starts.append(loglog)
    if extra is not None:
        starts.append(extra)
    return starts


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


def _bootstrap_samples(u, y, x0, start, n_bootstrap, seed) -> np.ndarray:
    """(A, alpha, E) of each pair-resampled refit, shape (m, 3); empty when there is nothing to resample."""
    n = u.size
    # Resamples of 3 points with 3 distinct x are the data itself, so the
    # bootstrap distribution would be a point mass: report no CI instead.
    if n <= _MIN_POINTS or n_bootstrap == 0:
        return np.empty((0, 3))
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, n, size=n)
        if np.unique(u[idx]).size < _MIN_POINTS:
            continue
        # A single start at the full-data optimum keeps 200 refits fast.
        a, alpha, E = _refit(u[idx], y[idx], start)
        samples.append((_unscale(a, alpha, x0), alpha, E))
    return np.asarray(samples, dtype=float).reshape(-1, 3)


# A refit that has not converged in this many evaluations sits in the flat valley of an ill-posed
# resample (alpha -> 0, A and E trading off); 2,000 more evaluations moved such refits' parameters
# along the valley, not to an optimum, and took 90% of a default study's fitting time.
_REFIT_MAX_NFEV = 200


def _refit(u: np.ndarray, y: np.ndarray, start: tuple[float, float, float]) -> np.ndarray:
    """A bootstrap refit: the problem `_minimize` gives lmfit (residual, Jacobian, bounds at 0,
    tolerances), solved by the solver lmfit calls (scipy's bounded trust-region least_squares)
    directly. The refits need only the optimum, and lmfit's per-call parameter bookkeeping made them
    ~1 min of a default study's fits (bench/fits.py)."""

    def fun(p):
        return p[0] * u ** -p[1] + p[2] - y

    def jac(p):
        power = u ** -p[1]
        return np.column_stack([power, -p[0] * power * np.log(u), np.ones_like(u)])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return least_squares(fun, np.maximum(np.asarray(start, float), 0.0), jac=jac, bounds=(0.0, np.inf),
                             method="trf", xtol=1e-14, ftol=1e-14, gtol=1e-14, max_nfev=_REFIT_MAX_NFEV).x


def _bootstrap(u, y, x0, start, n_bootstrap, ci_level, seed):
    """Percentile CIs of (A, alpha, E) from pair-resampled refits, and the refits themselves."""
    arr = _bootstrap_samples(u, y, x0, start, n_bootstrap, seed)
    if len(arr) < 2:
        return [(math.nan, math.nan)] * 3, arr
    tail = 100.0 * (1.0 - ci_level) / 2.0
    lo, hi = np.percentile(arr, [tail, 100.0 - tail], axis=0)
    return [(float(lo[i]), float(hi[i])) for i in range(3)], arr


def bootstrap_laws(fit: PowerLawFit) -> list[PowerLawFit]:
    """The pair-resampled refits behind ``fit``'s CIs, as laws with only A, alpha and E set: to
    carry the fit's uncertainty into what is computed from it."""
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
) -> PowerLawFit:
    """Least-squares fit of y = A / x**alpha + E with A, alpha, E >= 0.

    Several starts are tried (a profiled grid over alpha, a log-log guess and
    the optional ``p0`` given as (A, alpha, E) or a dict with those keys) and
    the lowest chi-square wins. Standard errors come from lmfit's covariance
    (nan when it cannot be estimated, e.g. with exactly 3 points). CIs are
    bootstrap percentiles over ``n_bootstrap`` pair resamples, skipping
    resamples with fewer than 3 distinct x; they are nan when
    ``n_bootstrap == 0``, with 3 points, or when fewer than 2 refits succeed.
    """
    x, y = _validate(x, y)
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")

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

    result = _best_fit(u, y, _starts(u, y, extra))
    p = result.params
    a, alpha, E = p["a"].value, p["alpha"].value, p["E"].value
    A = _unscale(a, alpha, x0)
    A_se, alpha_se, E_se = _stderrs(result, x0, x.size)

    (A_ci, alpha_ci, E_ci), refits = _bootstrap(u, y, x0, (a, alpha, E), n_bootstrap, ci_level, seed)

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
        n_points=int(x.size),
        ci_level=float(ci_level),
        success=bool(result.success),
        message=str(result.message),
        n_bootstrap_used=len(refits),
        bootstrap_params=tuple(tuple(float(v) for v in r) for r in refits),
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
    recipe_loss_ci: tuple[float, float] = (math.nan, math.nan),
) -> tuple[float, float]:
    """A CI of the data-efficiency multiplier that carries both uncertainties: the baseline law's
    (``laws``: its bootstrap refits) and the recipe loss's own CI where it has one.

    The low end is the lower percentile over the laws of the multiplier at the CI's high loss; the
    high end the upper percentile at its low loss (a lower loss is more data). A law under which the
    baseline loss itself is unreachable gives no multiplier and is skipped. (nan, nan) with fewer
    than 2 laws.
    """
    lo_loss, hi_loss = (v if v is not None and math.isfinite(v) else recipe_loss for v in recipe_loss_ci)

    def spread(loss: float) -> np.ndarray:
        m = np.array([data_efficiency(law, loss, baseline_loss) for law in laws], dtype=float)
        return m[~np.isnan(m)]

    low, high = spread(hi_loss), spread(lo_loss)
    if low.size < 2 or high.size < 2:
        return math.nan, math.nan
    tail = (1.0 - ci_level) / 2.0
    # inverted_cdf takes an order statistic: no interpolation between a finite and an infinite value
    return (float(np.quantile(low, tail, method="inverted_cdf")),
            float(np.quantile(high, 1.0 - tail, method="inverted_cdf")))


def joint_asymptote(n, asymptotes_per_n, **kw) -> PowerLawFit:
    """Fit the K -> inf (or epochs -> inf) asymptotes over parameter count N as A / N**alpha + E.

    ``asymptotes_per_n[i]`` is the fitted E of the inner scaling law at
    ``n[i]``; keyword arguments go to :func:`fit_power_law`. The returned E is
    the joint (N, K -> inf) asymptote.
    """
    return fit_power_law(n, asymptotes_per_n, **kw)
