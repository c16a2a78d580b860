"""The warm-worker pool of the study's jax jobs (runtime/worker.py): `python -m infinite_compute.cli.pool
<socket> <workers> <owner pid>` serves the command line's `main`, each worker warmed up once."""

from __future__ import annotations

import os
import sys

from ..runtime import worker
from ..study import paths
from . import main, warm_up


def start(path: str, workers: int, log: str) -> int:
    """Start a pool for this process in the background; returns its pid."""
    return worker.start(path, workers, log, __name__)


def start_for_snakemake(workflow, config: dict, job_caches: dict[str, str]) -> str | None:
    """The Snakefile's onstart: when Snakemake runs the jobs on this machine in its own environment,
    start one warm worker per job slot and point the jobs at the pool (its socket, returned).
    Cluster executors' jobs, and jobs in conda or container environments (another interpreter),
    run in their own processes."""
    r = config["resources"]
    if not (r["warm_workers"] and workflow.local_exec and workflow.is_main_process
            and not workflow.deployment_settings.deployment_method):
        return None
    for k, v in job_caches.items():  # the workers' caches are the jobs' (the Snakefile's shell.prefix)
        os.environ.setdefault(k, os.path.abspath(v))
    sock = os.path.abspath(os.path.join(paths.WORKERS, f"{os.getpid()}.sock"))
    start(sock, worker.pool_size(workflow.cores, min(r["train_threads"], r["eval_threads"])), paths.WORKERS_LOG)
    os.environ[worker.ENV] = sock
    return sock


if __name__ == "__main__":
    worker.serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), main, warm_up)
