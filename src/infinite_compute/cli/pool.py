"""The warm-worker pool of the study's jax jobs (runtime/worker.py): `python -m infinite_compute.cli.pool
<socket> <workers> <owner pid>` serves the command line's `main`, each worker warmed up once."""

from __future__ import annotations

import sys

from ..runtime import worker
from . import main, warm_up


def start(path: str, workers: int, log: str) -> int:
    """Start a pool for this process (Snakemake's onstart) in the background; returns its pid."""
    return worker.start(path, workers, log, __name__)


if __name__ == "__main__":
    worker.serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), main, warm_up)
