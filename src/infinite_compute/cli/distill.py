"""Commands of rules/distill.smk: samples from a teacher, and a student's real + synthetic cache."""

from __future__ import annotations

import json

import numpy as np

from ..data.tokenizer import load_tokenizer
from ..data.tokens import build_distill_cache, write_token_stream
from .records import read_spec


def cmd_sample(a) -> None:
    # the model layer imports jax: here, so that this module's light command (the cache) does not
    from ..model import sampling, scoring

    params = json.loads(a.params)
    tok = load_tokenizer(a.tokenizer)
    specs = [read_spec(p) for p in a.specs]
    seq_len = specs[0].model.seq_len
    n = -(-params["teacher_tokens"] // seq_len)
    with scoring.device_mesh():
        if params.get("sampling", "mixture") == "members":
            load = lambda k: scoring.load_model(a.hfs[k], specs[k], a.tokenizer)  # noqa: E731
            seqs = sampling.sample_by_member(load, len(specs), n, seq_len, tok.eos_token_id, params["temperature"],
                                             params["seed"], a.batch_size)
        else:
            models = [scoring.load_model(hf, s, a.tokenizer) for hf, s in zip(a.hfs, specs)]
            seqs = sampling.sample_sequences(models, n, seq_len, tok.eos_token_id, params["temperature"],
                                             params["seed"], a.batch_size)
    offsets = np.arange(0, seqs.size + 1, seq_len)
    write_token_stream(a.out, seqs.reshape(-1).astype(np.int32), offsets)


def cmd_distill_cache(a) -> None:
    build_distill_cache(a.train, a.validation, a.samples, a.tokenizer, a.budget, a.share, a.out)
