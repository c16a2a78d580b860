"""End-to-end wall time and memory of a whole study, from scratch, in a copy of the project:

    .venv/bin/python bench/study.py [--config .test/config.yaml] [--cores 2] [--keep]

Runs `snakemake figures/all --cores N` in results/bench/study-<config>/ (the project's tracked files,
no results), and prints:
- the wall time and the number of jobs;
- per stage (the folders of Snakemake's `benchmark:` files): jobs, summed and mean job time, and
  the largest peak RSS of one job;
- the whole study's peak memory: the machine's used memory, sampled every 0.5 s, minus what was
  used before the start;
- the warm workers' jobs and largest RSS (a job's own benchmark file then measures its client).
The smoke config's target is 3 minutes and the default's 15 (issue 8).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import threading
import time

import pandas as pd
import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def copy_project(dest: str) -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if os.path.isfile(os.path.join(ROOT, f)):
            os.makedirs(os.path.dirname(os.path.join(dest, f)) or dest, exist_ok=True)
            shutil.copy2(os.path.join(ROOT, f), os.path.join(dest, f))


def job_table(workdir: str) -> pd.DataFrame:
    rows = []
    for f in glob.glob(os.path.join(workdir, "benchmarks", "**", "*.tsv"), recursive=True):
        b = pd.read_csv(f, sep="\t")
        rule = os.path.relpath(f, os.path.join(workdir, "benchmarks")).split(os.sep)[0].removesuffix(".tsv")
        rows.append({"rule": rule, "seconds": float(b["s"].iloc[0]), "max_rss_mb": float(b["max_rss"].iloc[0])})
    return pd.DataFrame(rows, columns=["rule", "seconds", "max_rss_mb"])


def worker_summary(workdir: str) -> str:
    """What the warm workers did (logs/workers.log): jobs, workers started, their largest RSS. With
    them, a job's benchmark file measures only its thin client; the work is in the worker."""
    log = os.path.join(workdir, "logs", "workers.log")
    if not os.path.exists(log):
        return "no warm workers (resources.warm_workers off, or jobs ran elsewhere)"
    jobs = [ln for ln in open(log) if ln.startswith("worker ") and " rc=" in ln]
    workers = {ln.split(":")[0] for ln in jobs}
    rss = [float(ln.split("rss=")[1].split("MB")[0]) for ln in jobs]
    failed = sum(" rc=0 " not in ln for ln in jobs)
    return (f"warm workers: {len(jobs)} jobs ({failed} failed) on {len(workers)} worker processes; "
            f"largest worker RSS {max(rss, default=0):.0f} MB")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default=".test/config.yaml")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--keep", action="store_true", help="keep the study's copy (results/bench/...)")
    a = p.parse_args()
    # .test/config.yaml -> study-test-config, config.yaml -> study-config: one folder per config
    name = a.config.removesuffix(".yaml").replace(os.sep, "-").lstrip(".") or "config"
    wd = os.path.join(ROOT, "results", "bench", f"study-{name}")
    shutil.rmtree(wd, ignore_errors=True)
    copy_project(wd)

    base = psutil.virtual_memory().used
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.5):
            peak[0] = max(peak[0], psutil.virtual_memory().used - base)

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.time()
    run = subprocess.run([os.path.join(os.path.dirname(sys.executable), "snakemake"), "figures/all", "--configfile",
                          a.config, "--cores", str(a.cores), "-q"], cwd=wd, capture_output=True, text=True)
    wall = time.time() - t0
    done.set()
    if run.returncode != 0:
        sys.exit(f"the study failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    jobs = job_table(wd)
    per_stage = jobs.groupby("rule").agg(jobs=("seconds", "size"), total_s=("seconds", "sum"),
                                        mean_s=("seconds", "mean"), max_rss_mb=("max_rss_mb", "max"))
    print(f"{a.config} on {a.cores} cores: {wall / 60:.1f} min wall, {len(jobs)} jobs with a benchmark file, "
          f"{jobs['seconds'].sum() / 60:.1f} min of job time; whole-study peak memory {peak[0] / 2**30:.2f} GiB "
          f"(the machine's used memory over its level at the start)")
    print(per_stage.sort_values("total_s", ascending=False).round(1).to_string())
    print(worker_summary(wd))
    if not a.keep:
        shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()
