"""How long a power-law fit with its bootstrap CIs takes (the fits stage runs dozens of them).

    .venv/bin/python bench/fits.py
"""

import time

import numpy as np

from infinite_compute.science.fits import fit_power_law


def main() -> None:
    rng = np.random.default_rng(1)
    # a clean power law, and a flat one (loss not improving with x, as the default study's tiny models
    # sometimes give): its resamples are ill-posed, the refits' slow case
    for shape, law in (("power law", lambda x: 2.0 / x**0.4 + 3.0), ("flat", lambda x: 5.0 + 0 * x)):
        for n_points in (4, 5, 8):
            x = 2.0 ** np.arange(n_points)
            y = law(x) + rng.normal(0.0, 0.01, n_points)
            for n_bootstrap in (0, 200):
                start = time.perf_counter()
                fit = fit_power_law(x, y, n_bootstrap=n_bootstrap)
                took = time.perf_counter() - start
                print(f"{shape:9s} {n_points} points, {n_bootstrap:3d} bootstrap refits: {took * 1e3:7.1f} ms "
                      f"({fit.n_bootstrap_used} refits used, E = {fit.E:.4f} [{fit.E_ci_low:.4f}, {fit.E_ci_high:.4f}])")


if __name__ == "__main__":
    main()
