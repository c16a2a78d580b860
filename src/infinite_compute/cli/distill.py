"""Commands of rules/distill.smk: samples from a teacher, and a student's real + synthetic cache."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil

import numpy as np

from ..data.tokenizer import load_tokenizer
from ..data.tokens import build_distill_cache, write_token_stream
from ..runtime.io import atomic_path
from .records import read_spec


# sequences per part file of a teacher's corpus: what a preempted sampling job loses at most
PART_TOKENS = 1 << 24


def teacher_corpus(load_member, n_members: int, n: int, seq_len: int, eot_id: int, params: dict, batch_size: int,
                   parts_dir: str) -> np.ndarray:
    """A teacher's corpus of `n` sequences, sampled in parts of PART_TOKENS that are kept in
    `parts_dir` as they are done, so that a rerun after a preemption samples only the missing ones and
    ends with the same corpus. `sampling: mixture` (the default): every token from the mean of the
    members' distributions, all members loaded; `members`: sequence i from member i mod K alone (its
    own seed, seed + k), one member loaded at a time. `load_member(k)` gives member k."""
    # the model layer imports jax: here, so that this module's light command (the cache) does not
    from ..model import sampling

    members = params.get("sampling", "mixture") == "members"
    streams = ([(k, len(range(k, n, n_members)), params["seed"] + k) for k in range(n_members)] if members
               else [(None, n, params["seed"])])
    per_part = max(1, PART_TOKENS // (batch_size * seq_len))
    os.makedirs(parts_dir, exist_ok=True)
    out = np.empty((n, seq_len), np.int32)
    for k, rows, seed in streams:
        models = None
        n_batches = -(-rows // batch_size)
        done = []
        for p, first in enumerate(range(0, n_batches, per_part)):
            path = os.path.join(parts_dir, f"{'all' if k is None else f'member{k}'}-{p:05d}.npy")
            if not os.path.exists(path):
                if models is None:
                    models = [load_member(k)] if members else [load_member(j) for j in range(n_members)]
                seqs = sampling.sample_sequences(models, rows, seq_len, eot_id, params["temperature"], seed,
                                                 batch_size, batches=range(first, min(first + per_part, n_batches)))
                with atomic_path(path) as tmp:
                    with open(tmp, "wb") as f:
                        np.save(f, seqs)
            done.append(np.load(path))
        stream = np.concatenate(done)[:rows] if done else np.zeros((0, seq_len), np.int32)
        if members:
            out[k::n_members] = stream
        else:
            out[:] = stream
        del models
    return out


def cmd_sample(a) -> None:
    # the model layer imports jax: here, so that this module's light command (the cache) does not
    from ..model import scoring

    params = json.loads(a.params)
    tok = load_tokenizer(a.tokenizer)
    specs = [read_spec(p) for p in a.specs]
    seq_len = specs[0].model.seq_len
    n = -(-params["teacher_tokens"] // seq_len)
    # parts of this corpus only (its params and batch): another corpus's leftovers are removed
    ident = hashlib.sha256(json.dumps([params, a.hfs, a.batch_size], sort_keys=True).encode()).hexdigest()[:12]
    parts = f"{a.out}.parts-{ident}"
    for old in glob.glob(f"{a.out}.parts-*"):
        if old != parts:
            shutil.rmtree(old, ignore_errors=True)
    with scoring.device_mesh():
        seqs = teacher_corpus(lambda k: scoring.load_model(a.hfs[k], specs[k], a.tokenizer), len(specs), n, seq_len,
                              tok.eos_token_id, params, a.batch_size, parts)
    offsets = np.arange(0, seqs.size + 1, seq_len)
    write_token_stream(a.out, seqs.reshape(-1).astype(np.int32), offsets)
    shutil.rmtree(parts, ignore_errors=True)


def cmd_distill_cache(a) -> None:
    build_distill_cache(a.train, a.validation, a.samples, a.tokenizer, a.budget, a.share, a.out)
