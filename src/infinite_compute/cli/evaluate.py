"""Commands of rules/evaluate.smk: a model's validation log-probs and its benchmark requests' scores."""

from __future__ import annotations

import os

import numpy as np

from ..data.tokens import evaluation_sequences
from ..model import scoring
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


def cmd_evaluate(a) -> None:
    spec = read_spec(a.spec)
    seqs = evaluation_sequences(a.validation, spec.model.seq_len)
    pairs, bseqs, bmask = scoring.encoded_request_file(a.requests, a.tokenizer, spec.model.seq_len)
    with scoring.device_mesh():
        model = scoring.load_model(a.hf, spec, a.tokenizer)
        val = scoring.token_logprobs(model, seqs, a.batch_size)
        bench = scoring.score_requests(model, bseqs, bmask, a.batch_size)
    write_eval(a.out_eval, a.out_logprobs, spec.run_id, val, bench, benchmark_requests=len(pairs))
