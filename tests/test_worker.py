"""The warm-worker pool (runtime/worker.py, started as cli/pool.py) on its own: exit codes and logs pass through, it leaves with its
owner, and a job with no pool runs in its own process. (A real training through it, killed and
resumed to bit-identical weights, and a whole smoke study on it: tests/test_workflow.py.)"""

import os
import subprocess
import sys

import psutil
from clusters import start_pool
from conftest import ROOT

from infinite_compute.runtime import worker

ENV = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}


def test_pool_size_is_one_worker_per_job_slot_within_memory():
    gb = psutil.virtual_memory().total / 2**30
    assert worker.pool_size(2, 1) == min(2, int(gb // 3))
    assert worker.pool_size(2, 2) == 1 and worker.pool_size(1, 4) == 1
    assert worker.pool_size(10_000, 1) == int(gb // 3)  # never more workers than the memory holds


def test_a_failing_job_on_a_worker_gives_its_exit_code_and_traceback_to_the_client(tmp_path):
    owner = subprocess.Popen(["sleep", "300"])
    try:
        pool = start_pool(tmp_path / "pool.sock", owner.pid, env=ENV)
        job = subprocess.run(
            [sys.executable, "-m", "infinite_compute", "evaluate", "--spec", str(tmp_path / "no-such-model" / "spec.json"),
             "--hf", "x", "--validation", "x", "--requests", "x", "--tokenizer", "x", "--batch-size", "1",
             "--out-eval", "o", "--out-logprobs", "p"],
            env={**ENV, worker.ENV: str(tmp_path / "pool.sock")}, capture_output=True, text=True, timeout=300,
            cwd=tmp_path,
        )
        assert job.returncode == 1
        assert "no-such-model" in job.stderr and "Traceback" in job.stderr  # the worker wrote the job's stderr
        assert pool.is_running() and len(pool.children()) == 1  # the worker serves the next job
    finally:
        owner.kill()
        owner.wait()


def test_the_pool_leaves_with_its_owner_and_jobs_then_run_in_their_own_process(tmp_path):
    owner = subprocess.Popen(["sleep", "300"])
    sock = tmp_path / "pool.sock"
    pool = start_pool(sock, owner.pid, workers=2, env=ENV)
    workers = pool.children()
    owner.kill()
    owner.wait()
    gone, alive = psutil.wait_procs([pool, *workers], timeout=10)
    assert not alive and not os.path.exists(sock)

    os.environ[worker.ENV] = str(sock)
    try:
        assert worker.forward(["train"]) is None  # no pool answers: the caller runs the job itself
    finally:
        del os.environ[worker.ENV]
