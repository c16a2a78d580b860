"""One training on several devices and processes, on this machine's stand-ins: simulated CPU devices
(XLA's --xla_force_host_platform_device_count) and jax processes joined over localhost (IC_PROCESSES,
runtime/launch.py). For each layout, the study's training job (`python -m infinite_compute train`) of
one default-study shape on the 8k-token cache, in a fresh process:

- mesh: the line the trainer logs (replica x data x model);
- wall: the whole command, start-up and compilation included; step ms: the median step (metrics.json);
- max |d loss|: the largest difference of its in-training eval losses from the same engine's 1-device
  run (the tests' tolerance, LOSS_TOLERANCE in tests/test_workflow.py, is 1e-4).

The matmul peak (fp32 GFLOP/s, bench/train.py's) is measured before the layouts and after them. The
devices are simulated on 2 cores: a layout's wall time says what its collectives and partitioning cost
here, not what it would gain on real devices.

    .venv/bin/python bench/layouts.py [--model n1] [--steps 128]

At n3 (batch 32) on 4 simulated devices, XLA CPU aborted a collective after its 10 s rendezvous
timeout on 2 cores (2026-12-07): larger shapes need more cores than simulated devices.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("bench_train", os.path.join(ROOT, "bench", "train.py"))
train_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_bench)

# (name, engine, devices per process, processes, training.sharding, training.levanter)
LAYOUTS = [
    ("trainer, 1 device", "trainer", 1, 1, "fsdp", {}),
    ("trainer, FSDP on 4", "trainer", 4, 1, "fsdp", {}),
    ("trainer, FSDP x TP on 4", "trainer", 4, 1, "fsdp", {"model_axis_size": 2}),
    ("trainer, data parallel on 4", "trainer", 4, 1, "data", {}),
    ("trainer, 2 processes x 2", "trainer", 2, 2, "fsdp", {}),
    ("loop, 1 device", "loop", 1, 1, "fsdp", {}),
    ("loop, 4 devices", "loop", 4, 1, "fsdp", {}),
]


def run_layout(spec, engine: str, devices: int, processes: int, sharding: str, levanter: dict) -> dict:
    env = train_bench._env(1)
    # only the device count: the job's --threads 1 adds its own thread flags (as the tests run it)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    if processes > 1:
        env["IC_PROCESSES"] = str(processes)
    settings = {"checkpoint_minutes": 10.0, "evals_per_run": 4, "wandb": {"enabled": False}, "engine": engine,
                "sharding": sharding, "trainer": levanter}
    with tempfile.TemporaryDirectory(dir=os.path.join(ROOT, "results")) as wd:
        out = os.path.join(wd, "out")
        t0 = time.time()
        p = subprocess.run([sys.executable, "-m", "infinite_compute", "--threads", "1", "train", "--spec",
                            spec.to_json(), "--cache", train_bench.CACHE, "--tokenizer", train_bench.TOKENIZER,
                            "--out", out, "--checkpoints", os.path.join(wd, "ck"), "--settings", json.dumps(settings)],
                           env=env, capture_output=True, text=True)
        wall = time.time() - t0
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-3000:])
        m = json.load(open(os.path.join(out, "metrics.json")))
    mesh = sorted(set(re.findall(r"devices in \d+ processes, mesh (.*)", p.stderr)))
    return {"wall": wall, "step_seconds": m["step_seconds"], "losses": [e["loss"] for e in m["eval_loss"]],
            "mesh": mesh[0] if mesh else f"{devices} device(s), batch split"}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="n1")
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--config", default=os.path.join(ROOT, "config.yaml"))
    a = p.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "src"))
    cfg = train_bench.bench_config(a.config, [])
    if not os.path.isdir(train_bench.CACHE):
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "snakemake"),
                        os.path.relpath(train_bench.CACHE, ROOT), os.path.relpath(train_bench.TOKENIZER, ROOT),
                        "--cores", "2", "-q"], cwd=ROOT, check=True)
    spec = train_bench.bench_spec(cfg, a.model, a.steps)
    peak = train_bench._worker(["peak"], 1)["gflops"]
    print(f"{a.model}, {a.steps} steps of {spec.batch_size} x {spec.model.seq_len} tokens; matmul peak before: "
          f"{peak:.0f} GFLOP/s (fp32, 1024^3, 1 thread)")
    print(f"{'layout':30s} {'mesh':32s} {'wall s':>7s} {'step ms':>8s} {'max |d loss|':>13s}")
    reference = {}
    for name, engine, devices, processes, sharding, levanter in LAYOUTS:
        r = run_layout(spec, engine, devices, processes, sharding, levanter)
        ref = reference.setdefault(engine, r["losses"])
        diff = max(abs(x - y) for x, y in zip(r["losses"], ref))
        print(f"{name:30s} {r['mesh']:32s} {r['wall']:7.1f} {r['step_seconds'] * 1e3:8.1f} {diff:13.2e}", flush=True)
    print(f"matmul peak after: {train_bench._worker(['peak'], 1)['gflops']:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
