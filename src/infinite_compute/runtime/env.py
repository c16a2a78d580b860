"""The environment every job of the study runs in: offline, CPU unless an accelerator is asked for."""

from __future__ import annotations

import os
import sys

# Offline, CPU-friendly defaults for every levanter/jax process (the user may override each).
JOB_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_AUTH_MODE": "disabled",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "USE_TORCH": "0",
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
}


def set_job_defaults(threads: int | None = None) -> None:
    """Set the defaults above where the user has not. With `threads` 1 the XLA flags ask for
    single-threaded Eigen, but jax 0.7.2's CPU runtime still keeps ~1.95 cores busy on a large
    matmul. Pinning each of two concurrent jobs to its own core was measured too
    (bench/train-before.md): steps 9% faster, start-up slower, the same job time. So two jobs at once
    share the two cores, and neither is pinned. JAX_PLATFORMS is cpu unless IC_ACCELERATOR is set."""
    if threads == 1:
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    for k, v in JOB_DEFAULTS.items():
        os.environ.setdefault(k, v)
    if "JAX_PLATFORMS" not in os.environ and not os.environ.get("IC_ACCELERATOR"):
        os.environ["JAX_PLATFORMS"] = "cpu"


def hide_lm_eval() -> None:
    """levanter's __init__ imports its lm-eval adapter, which imports lm-eval when installed (with
    torch: ~7 s per job, and broken under USE_TORCH=0); jobs that do not use lm-eval hide it before
    levanter is imported, and levanter falls back as when lm-eval is not installed."""
    sys.modules.setdefault("lm_eval", None)
