"""Coverage of the fits' 95% CIs on simulated studies whose law is known: nominal against achieved.

    .venv/bin/python bench/coverage.py [--studies 400] [--out bench/coverage.md]

Each study draws the points of a known law with known seed noise (a point is the mean of 3 reseeds;
the fit knows the noise only as the pooled sd of 4 cells' reseeds, 8 degrees of freedom, as the study
measures it), fits it with science.fits, and checks whether the CIs hold the truth. A CI end that is
not determined (nan) is open on that side. With `--old <commit>` the same studies are also fitted by
the fits module of that commit (the pair bootstrap it replaced, which took no errors), for comparison.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from infinite_compute.science.fits import bootstrap_laws, data_efficiency, data_efficiency_interval, fit_power_law

DEFAULT_N = np.array([2.7e4, 6.0e4, 1.07e5, 2.4e5])  # the default study's sizes
PAPER_N = np.array([0.15e9, 0.3e9, 0.6e9, 1.4e9])
K = np.arange(1, 5.0)
D = np.array([4096, 8192, 16384, 32768.0])

# (name, x, law (A, alpha, E), seed sd, how a study's points are drawn)
CASES = [
    ("L(N), default sizes, sd 0.003", DEFAULT_N, (30.0, 0.5, 4.4), 0.003, "cells"),
    ("L(N), default sizes, sd 0.01", DEFAULT_N, (30.0, 0.5, 4.4), 0.01, "cells"),
    ("L(N), default sizes, sd 0.03", DEFAULT_N, (30.0, 0.5, 4.4), 0.03, "cells"),
    ("L(N), shallow law (alpha 0.3), sd 0.01", DEFAULT_N, (5.0, 0.3, 4.3), 0.01, "cells"),
    ("L(N), the paper's law x2 at sd 0.01", PAPER_N, (0.0924 * (1e9) ** 0.638, 0.638, 3.34), 0.01, "cells"),
    ("L(K), 4 members, sd 0.01 (shared members)", K, (0.3, 0.46, 4.2), 0.01, "ensemble"),
    ("L(D), 4 budgets, sd 0.01", D, (60.0, 0.35, 3.5), 0.01, "cells"),
]


def draw(kind: str, truth: np.ndarray, sd: float, rng) -> tuple[np.ndarray, np.ndarray, float]:
    """(points, their errors as the study gives them, the errors' df)."""
    pooled = sd * math.sqrt(rng.chisquare(8) / 8)
    if kind == "cells":
        return truth + rng.normal(0, sd / math.sqrt(3), truth.size), np.full(truth.size, pooled / math.sqrt(3)), 8.0
    # every point of an ensemble curve averages the same 4 members: one shared shift, a little jitter
    y = truth + sd / 2 * rng.normal() + 0.25 * sd / np.sqrt(K) * rng.normal(size=truth.size)
    return y, np.full(truth.size, pooled / 2), 8.0


def covered(lo, hi, t) -> bool:
    return (lo if math.isfinite(lo) else -math.inf) <= t <= (hi if math.isfinite(hi) else math.inf)


def run_case(x, law, sd, kind, studies, seed, old=None) -> dict:
    A, alpha, E = law
    truth = A / x**alpha + E
    rng = np.random.default_rng(seed)
    out = {"E": 0, "alpha": 0, "E bounded": 0, "old E": 0, "old alpha": 0, "old bounded": 0, "old E | bounded": 0}
    for _ in range(studies):
        y, se, df = draw(kind, truth, sd, rng)
        f = fit_power_law(x, y, sigma=se, noise_df=df, n_bootstrap=0)
        out["E"] += covered(f.E_ci_low, f.E_ci_high, E)
        out["alpha"] += covered(f.alpha_ci_low, f.alpha_ci_high, alpha)
        out["E bounded"] += math.isfinite(f.E_ci_low) and math.isfinite(f.E_ci_high)
        if old is not None:
            g = old.fit_power_law(x, y, seed=seed)
            bounded = math.isfinite(g.E_ci_low) and g.E_ci_low > 1e-6 * E
            out["old E"] += covered(g.E_ci_low, g.E_ci_high, E)
            out["old alpha"] += covered(g.alpha_ci_low, g.alpha_ci_high, alpha)
            out["old bounded"] += bounded
            out["old E | bounded"] += bounded and covered(g.E_ci_low, g.E_ci_high, E)
    return out


def multiplier_case(studies: int, seed: int) -> tuple[float, float]:
    """Coverage of the data-efficiency multiplier's CI: the baseline's L(D) from 4 budgets and a
    recipe's loss, both measured as means of 3 reseeds."""
    A, alpha, E = 60.0, 0.35, 3.5
    true_law = fit_power_law(D, A / D**alpha + E, n_bootstrap=0)
    recipe, budget = 4.05, 8192.0
    base = A / budget**alpha + E
    m_true = data_efficiency(true_law, recipe, base)
    rng = np.random.default_rng(seed)
    hits = width = 0
    for i in range(studies):
        y, se, df = draw("cells", A / D**alpha + E, 0.01, rng)
        f = fit_power_law(D, y, sigma=se, noise_df=df, n_bootstrap=200, seed=i)
        r = recipe + se[0] * rng.normal()
        lo, hi = data_efficiency_interval(bootstrap_laws(f), r, y[1], recipe_loss_se=se[0], baseline_loss_se=se[1],
                                          seed=i)
        hits += covered(lo, hi, m_true)
        width += math.isfinite(hi)
    return hits / studies, width / studies


def load_old(commit: str):
    src = subprocess.run(["git", "show", f"{commit}:src/infinite_compute/science/fits.py"], capture_output=True,
                         text=True, check=True).stdout
    path = os.path.join(tempfile.mkdtemp(), "old_fits.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("old_fits", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_fits"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--old", default="303ec65", help="a commit whose fits module to compare ('' for none)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    old = load_old(a.old) if a.old else None
    t0 = time.time()
    lines = ["# Coverage of the fits' 95% CIs", "",
             f"Written by `bench/coverage.py --studies {a.studies}`: {a.studies} seeded simulated studies per row, "
             "each point the mean of 3 reseeds, the noise known to the fit as a pooled sd with 8 df; a CI end "
             "that is not determined is open on that side. 'bounded': both ends of E's CI determined."
             + (f" 'pair bootstrap': the fits of {a.old} (200 pair resamples, no errors), on the same studies; "
                "its 'E | bounded' is its coverage among studies where it gave E a lower end above 0." if old else ""),
             "", "| fit | nominal | E | alpha | E bounded |" + (" pair bootstrap E | alpha | E | bounded | bounded |"
                                                                 if old else ""),
             "|---|---|---|---|---|" + ("---|---|---|---|" if old else "")]
    for i, (name, x, law, sd, kind) in enumerate(CASES):
        r = run_case(x, law, sd, kind, a.studies, a.seed + i, old)
        n = a.studies
        row = f"| {name} | 0.95 | {r['E'] / n:.3f} | {r['alpha'] / n:.3f} | {r['E bounded'] / n:.2f} |"
        if old:
            cond = r["old E | bounded"] / r["old bounded"] if r["old bounded"] else math.nan
            row += f" {r['old E'] / n:.3f} | {r['old alpha'] / n:.3f} | {cond:.3f} | {r['old bounded'] / n:.2f} |"
        lines.append(row)
        print(row, file=sys.stderr)
    m_cov, m_finite = multiplier_case(min(a.studies, 200), a.seed)
    lines += ["", f"Data-efficiency multiplier (L(D) from 4 budgets at sd 0.01 with 200 parametric-bootstrap laws, "
              f"the recipe's and the baseline's losses each a mean of 3 reseeds; {min(a.studies, 200)} studies): "
              f"nominal 0.95, achieved {m_cov:.3f}; CI bounded above in {m_finite:.2f}.",
              "", f"({time.time() - t0:.0f} s)"]
    text = "\n".join(lines) + "\n"
    if a.out:
        with open(a.out + ".tmp", "w") as f:
            f.write(text)
        os.replace(a.out + ".tmp", a.out)
    print(text)


if __name__ == "__main__":
    main()
