"""What W&B logging costs a training job (config `logging.wandb`), on this machine: the study's
training job handed to a warm worker (as Snakemake's jobs on this machine run), with logging off and
with W&B offline (model/tracking.py: levanter's WandbTracker, train/loss, optim/learning_rate,
throughput/* per step, eval/loss, the spec as config, a summary), alternating, `--repeats` times
each; the job's whole time from the client's start. The difference per job, times the default study's
130 trainings, is what logging would add to it.

    .venv/bin/python bench/wandb_logging.py [--model n1] [--steps 128] [--repeats 5]

The offline runs go to a temporary folder under results/ and are read back (outputs/wandb_files) to
check that each logged every step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import CACHE, ROOT, TOKENIZER, _env, bench_config, bench_spec, start_pool  # noqa: E402


def job(spec, workdir: str, sock: str, wandb_dir: str | None) -> float:
    out = os.path.join(workdir, "out")
    wandb = ({"enabled": True, "project": "bench", "mode": "offline", "entity": None, "tags": [], "dir": wandb_dir}
             if wandb_dir else {"enabled": False})
    settings = {"checkpoint_minutes": 1.0, "evals_per_run": 8, "wandb": wandb, "engine": "loop"}
    env = {**_env(1), "IC_WORKER": sock, "WANDB_SILENT": "true"}
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "infinite_compute", "--threads", "1", "train", "--spec", spec.to_json(),
                    "--cache", CACHE, "--tokenizer", TOKENIZER, "--out", out, "--checkpoints",
                    os.path.join(workdir, "ck"), "--settings", json.dumps(settings)], env=env, check=True,
                   capture_output=True)
    return time.time() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="n1")
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "src"))
    from infinite_compute.outputs.wandb_files import offline_run_files, read_run

    if not os.path.isdir(CACHE):
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "snakemake"), os.path.relpath(CACHE, ROOT),
                        os.path.relpath(TOKENIZER, ROOT), "--cores", "2", "-q"], cwd=ROOT, check=True)
    spec = bench_spec(bench_config(os.path.join(ROOT, "config.yaml"), []), a.model, a.steps)
    base = tempfile.mkdtemp(dir=os.path.join(ROOT, "results"))
    pool, sock = start_pool(base, 1)
    try:
        wandb_dir = os.path.join(base, "wandb")
        os.makedirs(wandb_dir)
        with tempfile.TemporaryDirectory(dir=base) as wd:
            job(spec, wd, sock, None)  # the worker's first job of the shape: it traces the programs
        times: dict[str, list[float]] = {"off": [], "offline": []}
        for _ in range(a.repeats):
            for mode in times:
                with tempfile.TemporaryDirectory(dir=base) as wd:
                    times[mode].append(job(spec, wd, sock, wandb_dir if mode == "offline" else None))
    finally:
        pool.terminate()
    runs = [read_run(f) for f in offline_run_files([wandb_dir])]
    steps = [sum("train/loss" in h for h in r["history"]) for r in runs]
    off, on = statistics.median(times["off"]), statistics.median(times["offline"])
    print(f"{a.model}, {a.steps} steps, a warm worker's job, median of {a.repeats}: logging off {off:.2f} s, "
          f"W&B offline {on:.2f} s: +{on - off:.2f} s per job ({on / off:.2f}x); x 130 trainings of the default "
          f"study: +{(on - off) * 130 / 60:.1f} min")
    print(f"all times (s): off {[round(t, 2) for t in times['off']]}, offline {[round(t, 2) for t in times['offline']]}")
    print(f"{len(runs)} offline runs read back; train/loss steps logged per run: {sorted(set(steps))}; "
          f"states {sorted({r['state'] for r in runs})}")


if __name__ == "__main__":
    main()
