"""How long Snakemake takes to build the paper's whole DAG (`snakemake -n figures/all --configfile
config/paper.yaml`), and how many jobs it lists. Run from the project root:

    .venv/bin/python bench/dryrun.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--configfile", default="config/paper.yaml")
    a = p.parse_args()
    snakemake = os.path.join(os.path.dirname(sys.executable), "snakemake")
    times, jobs = [], None
    for _ in range(a.repeat):
        start = time.perf_counter()
        out = subprocess.run([snakemake, "-n", "figures/all", "--configfile", a.configfile, "--quiet", "rules"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
        times.append(time.perf_counter() - start)
        m = re.search(r"^total\s+(\d+)", out, re.M)
        jobs = int(m.group(1)) if m else None
    trainings = re.search(r"^train_model\s+(\d+)", out, re.M)
    print(f"{a.configfile}: {jobs} jobs ({trainings.group(1) if trainings else 0} train_model) in "
          f"{min(times):.2f} s (best of {a.repeat}; all: {', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
