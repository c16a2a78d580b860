"""What the commands read and write beside the layers' own files: a run's spec, and an evaluation's
two outputs (its eval record and its per-token log-probs). Light: no jax, for every command."""

from __future__ import annotations

import os

import numpy as np

from ..runtime.io import atomic_path, atomic_write_json, read_json
from ..study.specs import RunSpec


def read_spec(path: str) -> RunSpec:
    return RunSpec.from_dict(read_json(path))


def write_eval(out_eval: str, out_logprobs: str, run_id: str, validation: np.ndarray, arrays: dict, **fields) -> None:
    """An evaluation's outputs: the logprobs file (the validation per-token log-probs and `arrays`)
    and the eval file (the validation loss and `fields`)."""
    os.makedirs(os.path.dirname(out_logprobs) or ".", exist_ok=True)
    with atomic_path(out_logprobs) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, validation=validation, **arrays)
    loss = float(-validation.astype(np.float64).mean())
    atomic_write_json(out_eval, {"run_id": run_id, "loss": loss, "validation_tokens": int(validation.size), **fields})
