"""This machine's speed, and how long the default and smoke studies should take on it, before starting them.

    .venv/bin/python bench/speed.py [--seconds 5]

Measures the fp32 matmul peak (a 1024^3 matmul with jax, as bench/train.py does; numpy if jax is
missing) for about --seconds, then scales the reference times in bench/speed_reference.json:

    expected time = reference time x reference peak / measured peak

The study's trainings are bound by their matmuls (docs/performance.md), so this is a first-order
estimate: it ignores the machine's core count beyond what the matmul uses, its memory and disk, and
anything else running. The references' sources and dates are in the JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(HERE, "speed_reference.json")
N = 1024


def _matmul():
    """A function doing one N^3 fp32 matmul to completion, and what did it."""
    try:
        import jax
        import jax.numpy as jnp

        a = jax.random.normal(jax.random.PRNGKey(0), (N, N), jnp.float32)
        b = jax.random.normal(jax.random.PRNGKey(1), (N, N), jnp.float32)
        f = jax.jit(jnp.dot)
        return (lambda: f(a, b).block_until_ready()), f"jax {jax.__version__} ({jax.default_backend()})"
    except ImportError:
        import numpy as np

        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((N, N), dtype=np.float32) for _ in range(2))
        return (lambda: a @ b), f"numpy {np.__version__}"


def measure(seconds: float) -> tuple[float, float, str]:
    """(peak, median) fp32 matmul GFLOP/s over about `seconds`, and the library used."""
    fn, lib = _matmul()
    fn()  # compile / warm up
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    flop = 2 * N**3
    return flop / times[0] / 1e9, flop / times[len(times) // 2] / 1e9, lib


def reference_peak(ref: dict, name: str) -> tuple[float, bool]:
    """A study's reference peak (the mean of its measured peaks) and whether it is borrowed from the default's."""
    peaks = ref["studies"][name]["peaks_gflops"]
    if peaks:
        return sum(peaks) / len(peaks), False
    return reference_peak(ref, "default")[0], True


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0, help="how long to measure (default 5)")
    a = p.parse_args(argv)
    with open(REFERENCE) as f:
        ref = json.load(f)
    peak, median, lib = measure(a.seconds)
    print(f"this machine: fp32 matmul peak {peak:.0f} GFLOP/s (median {median:.0f}; {N}^3, {lib}, {a.seconds:g} s)")
    for name, e in ref["studies"].items():
        ref_peak, borrowed = reference_peak(ref, name)
        scale = ref_peak / peak
        line = f"{name} study ({e['config']}): expected ~{e['time_min'] * scale:.1f} min"
        if "time_range_min" in e:
            lo, hi = e["time_range_min"]
            line += f" ({lo * scale:.1f}-{hi * scale:.1f})"
        if borrowed:
            line += ", rough: no peak was measured with its reference runs"
        print(line)
        print(f"    reference: {e['time_min']} min at {ref_peak:.1f} GFLOP/s ({e['peak_note']}); "
              f"{e['commit']}, {e['date']}; {e['source']}")
    print("A first-order estimate: time scales with the matmul peak only; other load on the machine slows it.")


if __name__ == "__main__":
    main()
