"""The environment every job of the study runs in: offline, CPU unless an accelerator is asked for.

The accelerator comes from the config (`resources.accelerator`, which the Snakefile puts in the jobs'
environment as IC_ACCELERATOR; a value already in the environment wins, as profiles/tpu's Ray jobs
set it) and becomes JAX_PLATFORMS before jax is imported:

- `cpu` (the default): JAX_PLATFORMS=cpu. jax never probes for a GPU or TPU, so a study on a machine
  that has one trains exactly as on a laptop, and no CUDA or TPU plugin warning is printed.
- `gpu` / `tpu`: that platform, then the CPU (jax's own host computations). jax fails at the first
  computation when it cannot start the platform: a study that asked for a GPU never trains on a CPU
  without saying so.
- `auto`: JAX_PLATFORMS is left unset and jax picks: a GPU when jax's CUDA plugin is installed and
  sees one, a TPU with libtpu, else the CPU (with a warning from jax).

A JAX_PLATFORMS the user set is kept whatever the accelerator. Off the CPU, jax allocates GPU memory as
it needs it (XLA_PYTHON_CLIENT_PREALLOCATE=false) instead of 75% of it per process.
"""

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


ACCELERATOR_ENV = "IC_ACCELERATOR"
# resources.accelerator -> the JAX_PLATFORMS it sets (None: unset, jax picks)
ACCELERATORS: dict[str, str | None] = {"cpu": "cpu", "gpu": "cuda,cpu", "tpu": "tpu,cpu", "auto": None}


def jax_platforms(accelerator: str | None) -> str | None:
    """The JAX_PLATFORMS of an accelerator (unset or empty: cpu); None leaves jax to pick."""
    key = (accelerator or "cpu").strip().lower()
    if key not in ACCELERATORS:
        raise ValueError(f"{ACCELERATOR_ENV}={accelerator!r} (config resources.accelerator): expected one of "
                         f"{', '.join(ACCELERATORS)}")
    return ACCELERATORS[key]


def set_job_defaults(threads: int | None = None) -> None:
    """Set the defaults above where the user has not. With `threads` 1 the XLA flags ask for
    single-threaded Eigen, but jax 0.7.2's CPU runtime still keeps ~1.95 cores busy on a large
    matmul. Pinning each of two concurrent jobs to its own core was measured too
    (bench/train-before.md): steps 9% faster, start-up slower, the same job time. So two jobs at once
    share the two cores, and neither is pinned. JAX_PLATFORMS follows IC_ACCELERATOR (the module's
    docstring): cpu unless an accelerator is asked for."""
    if threads == 1:
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    for k, v in JOB_DEFAULTS.items():
        os.environ.setdefault(k, v)
    platforms = jax_platforms(os.environ.get(ACCELERATOR_ENV))
    if platforms is not None:
        os.environ.setdefault("JAX_PLATFORMS", platforms)
    if platforms != "cpu":
        # Several jobs share a GPU (one warm worker per job slot): jax's default, 75% of the GPU's memory
        # taken by each process at its start, would leave the second one none.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def hide_lm_eval() -> None:
    """levanter's __init__ imports its lm-eval adapter, which imports lm-eval when installed (with
    torch: ~7 s per job, and broken under USE_TORCH=0); jobs that do not use lm-eval hide it before
    levanter is imported, and levanter falls back as when lm-eval is not installed."""
    sys.modules.setdefault("lm_eval", None)


def check_secrets(logging_config: dict, environ=None) -> None:
    """A study that logs to W&B online needs an API key in the environment of the process that
    starts it (profiles/tpu forwards it to every Ray job; SLURM jobs inherit it) or in ~/.netrc, as
    `wandb login` writes it: fail there, before any job, rather than in every training's wandb.init."""
    environ = os.environ if environ is None else environ
    if not logging_config.get("wandb") or logging_config.get("wandb_mode") != "online":
        return
    if environ.get("WANDB_API_KEY"):
        return
    netrc = os.path.join(environ.get("HOME", os.path.expanduser("~")), ".netrc")
    try:
        with open(netrc) as f:
            if "api.wandb.ai" in f.read():
                return
    except OSError:
        pass
    raise RuntimeError("config key 'logging.wandb_mode': `online` needs WANDB_API_KEY in the environment (or "
                     f"`wandb login`, which writes {netrc}); set it, or set logging.wandb_mode: offline")
