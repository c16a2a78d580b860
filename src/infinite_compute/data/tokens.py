"""Token streams, nested token budgets and levanter's token caches.

A split is tokenized once into a flat stream with document offsets; every token budget is a prefix
of the training stream, so the budgets are nested. A budget's levanter cache (train + validation)
is what its runs train on; a student's cache mixes its real budget with tokens sampled from its
teacher. levanter is imported inside the functions that use it: the corpus jobs import this layer
without it.
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from ..runtime.io import atomic_dir, atomic_path, atomic_write_json
from ..study.paths import CACHE_INFO
from ..study.specs import synthetic_tokens
from .corpus import read_jsonl, sha256_bytes
from .tokenizer import load_tokenizer


def tokenize_stream(jsonl: str, tokenizer_dir: str, max_tokens: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize documents in order with levanter's own text preprocessor until `max_tokens`.

    Returns the flat token stream and the document start offsets (one extra at the end).
    """
    # levanter: only for the jobs that tokenize (module docstring)
    from levanter.data.text import TextLmDatasetFormat, preprocessor_for_format

    tok = load_tokenizer(tokenizer_dir)
    proc = preprocessor_for_format(TextLmDatasetFormat(), tok, enforce_bos=True, enforce_eos=True)
    pieces: list[np.ndarray] = []
    total = 0
    batch: list[dict] = []

    def flush() -> bool:
        nonlocal total
        for row in proc(batch):
            ids = np.asarray(row["input_ids"], dtype=np.int32)
            pieces.append(ids)
            total += len(ids)
            if max_tokens is not None and total >= max_tokens:
                return True
        batch.clear()
        return False

    for rec in read_jsonl(jsonl):
        batch.append({"text": rec["text"]})
        if len(batch) == 64 and flush():
            break
    else:
        if batch:
            flush()
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    stream = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
    if max_tokens is not None:
        stream = stream[:max_tokens]
        offsets = np.minimum(offsets, len(stream))
        offsets = offsets[: int(np.searchsorted(offsets, len(stream), side="left")) + 1]
    return stream, offsets


def write_token_stream(path: str, stream: np.ndarray, offsets: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, tokens=stream, offsets=offsets)


def read_token_stream(path: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as z:
        return z["tokens"], z["offsets"]


def documents_of(stream: np.ndarray, offsets: np.ndarray, limit: int) -> Iterable[np.ndarray]:
    """The documents of a token stream cut to its first `limit` tokens (the last one truncated)."""
    for a, b in zip(offsets[:-1], offsets[1:]):
        if a >= limit:
            return
        yield stream[a : min(b, limit)]


def write_levanter_cache(cache_dir: str, docs: Iterable[np.ndarray], tokenizer_dir: str) -> int:
    """Write a finished levanter TreeCache (no Ray) that `load_lm_dataset_cache` accepts."""
    # levanter: only for the jobs that tokenize (module docstring)
    from levanter.data.text import TextLmDatasetFormat, preprocessor_for_format
    from levanter.store.cache import CacheMetadata, SerialCacheWriter

    tok = load_tokenizer(tokenizer_dir)
    proc = preprocessor_for_format(TextLmDatasetFormat(), tok, enforce_bos=True, enforce_eos=True)
    # the cache's rows have the fields the tokenizer returns: besides input_ids, some tokenizers (a
    # Hugging Face base's, cpt.base.hf) return token_type_ids, all 0 for one text
    others = [k for k in proc.output_exemplar if k != "input_ids"]
    rows = 0
    with atomic_dir(cache_dir) as tmp:
        with SerialCacheWriter(tmp, proc.output_exemplar, CacheMetadata(preprocessor_metadata=proc.metadata)) as w:
            batch: list[dict] = []
            for ids in docs:
                ids = np.asarray(ids, dtype=np.int32)
                batch.append({"input_ids": ids, **{k: np.zeros_like(ids) for k in others}})
                if len(batch) == 256:
                    w.write_batch(batch)
                    rows += len(batch)
                    batch = []
            if batch:
                w.write_batch(batch)
                rows += len(batch)
    return rows


def build_budget_cache(train_tokens: str, val_tokens: str, tokenizer_dir: str, budget: int, out_dir: str) -> dict:
    """levanter cache (train + validation splits) of the first `budget` training tokens."""
    stream, offsets = read_token_stream(train_tokens)
    if len(stream) < budget:
        raise ValueError(
            f"config key 'data.token_budgets': budget {budget} exceeds the {len(stream)} training tokens of the corpus"
        )
    vstream, voffsets = read_token_stream(val_tokens)
    with atomic_dir(out_dir) as tmp:
        rows = write_levanter_cache(os.path.join(tmp, "train"), documents_of(stream, offsets, budget), tokenizer_dir)
        write_levanter_cache(
            os.path.join(tmp, "validation"), documents_of(vstream, voffsets, len(vstream)), tokenizer_dir
        )
        info = {
            "token_budget": budget,
            "train_tokens": int(min(budget, len(stream))),
            "train_documents": rows,
            "validation_tokens": int(len(vstream)),
            "train_sha256": sha256_bytes(stream[:budget].tobytes()),
        }
        atomic_write_json(os.path.join(tmp, CACHE_INFO), info)
    return info


def evaluation_sequences(val_tokens: str, seq_len: int) -> np.ndarray:
    """The held-out token stream cut into whole sequences [n, seq_len]: what every model is scored on."""
    stream, _ = read_token_stream(val_tokens)
    n = len(stream) // seq_len
    if n == 0:
        raise ValueError(f"data.validation_tokens gives {len(stream)} tokens: fewer than one sequence of {seq_len}")
    return stream[: n * seq_len].reshape(n, seq_len)


def build_distill_cache(train_tokens: str, val_tokens: str, samples: str, tokenizer_dir: str, budget: int,
                        share: float, out_dir: str) -> dict:
    """A student's levanter cache: the first `budget` real tokens plus the teacher's samples tiled to
    `share` of the mix (the samples repeat when the teacher sampled fewer tokens than the share needs)."""
    stream, offsets = read_token_stream(train_tokens)
    syn, syn_offsets = read_token_stream(samples)
    vstream, voffsets = read_token_stream(val_tokens)
    need = synthetic_tokens(budget, share)
    reps = -(-need // len(syn))
    syn_docs = [d for _ in range(reps) for d in documents_of(syn, syn_offsets, len(syn))]
    tiled = np.concatenate(syn_docs)[:need]
    tiled_offsets = np.concatenate([[0], np.cumsum([len(d) for d in syn_docs])])
    tiled_offsets = np.minimum(tiled_offsets, need)
    docs = list(documents_of(stream, offsets, budget)) + list(documents_of(tiled, tiled_offsets, need))
    info = {"real_tokens": budget, "synthetic_tokens": int(need), "synthetic_share": share}
    with atomic_dir(out_dir) as tmp:
        write_levanter_cache(os.path.join(tmp, "train"), docs, tokenizer_dir)
        write_levanter_cache(os.path.join(tmp, "validation"), documents_of(vstream, voffsets, len(vstream)),
                             tokenizer_dir)
        atomic_write_json(os.path.join(tmp, CACHE_INFO), info)
    return info
