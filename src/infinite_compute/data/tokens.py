"""Token streams, nested token budgets and levanter's token caches.

A split is tokenized once into a flat stream with document offsets; every token budget is a prefix
of the training stream, so the budgets are nested. A budget's levanter cache (train + validation)
is what its runs train on; a student's cache mixes its real budget with tokens sampled from its
teacher. levanter is imported inside the functions that use it: the corpus jobs import this layer
without it.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterable, Iterator

import numpy as np

from ..runtime.env import hide_lm_eval, set_job_defaults
from ..runtime.io import atomic_dir, atomic_path, atomic_write_json
from ..study.paths import CACHE_INFO
from ..study.specs import synthetic_tokens
from .corpus import read_jsonl
from .tokenizer import load_tokenizer


def _preprocessor(tokenizer_dir: str):
    # levanter: only for the jobs that tokenize (module docstring)
    from levanter.data.text import TextLmDatasetFormat, preprocessor_for_format

    return preprocessor_for_format(TextLmDatasetFormat(), load_tokenizer(tokenizer_dir), enforce_bos=True,
                                   enforce_eos=True)


_WORKER_PROC = None


def _worker_init(tokenizer_dir: str) -> None:
    """A tokenize worker (a spawned process): the job's environment, then the tokenizer."""
    global _WORKER_PROC
    hide_lm_eval()  # as the job's own process did (cli.main): levanter without lm-eval and torch
    set_job_defaults(1)
    _WORKER_PROC = _preprocessor(tokenizer_dir)


def _worker_tokenize(texts: list[str]) -> list[np.ndarray]:
    return [np.asarray(row["input_ids"], dtype=np.int32) for row in _WORKER_PROC([{"text": t} for t in texts])]


def _batches(jsonl: str, size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for rec in read_jsonl(jsonl):
        batch.append(rec["text"])
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def token_pieces(jsonl: str, tokenizer_dir: str, workers: int = 1) -> Iterator[np.ndarray]:
    """Each document's tokens (levanter's own text preprocessor: BOS ... EOS), in file order.

    With `workers` > 1, batches of documents are tokenized by that many processes, at most two
    batches each in flight (memory stays bounded), and come back in order: the same stream."""
    if workers <= 1:
        proc = _preprocessor(tokenizer_dir)
        for batch in _batches(jsonl, 64):
            for row in proc([{"text": t} for t in batch]):
                yield np.asarray(row["input_ids"], dtype=np.int32)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(tokenizer_dir,))
    pending: deque = deque()
    try:
        for batch in _batches(jsonl, 512):
            pending.append(pool.submit(_worker_tokenize, batch))
            if len(pending) >= 2 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _NpyAppender:
    """A 1-D .npy file written as its values arrive (their number unknown until the end): the
    header is reserved, then rewritten with the final length on close."""

    HEADER = 128  # np.lib.format's v1.0 header of a 1-D array is 128 bytes up to 10^40 values

    def __init__(self, path: str, dtype):
        self.f, self.dtype, self.n = open(path, "wb"), np.dtype(dtype), 0
        self.f.write(b"\0" * self.HEADER)

    def append(self, values: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(values, dtype=self.dtype).tobytes())
        self.n += len(values)

    def close(self) -> None:
        self.f.seek(0)
        np.lib.format.write_array_header_1_0(
            self.f, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (self.n,)})
        assert self.f.tell() == self.HEADER, "the .npy header outgrew its reserved bytes"
        self.f.close()


def write_stream(path: str, pieces: Iterable[np.ndarray], max_tokens: int | None) -> tuple[int, int]:
    """A token stream of `pieces` (documents) cut to its first `max_tokens` (the last document
    truncated), written as it comes: a directory of tokens.npy (int32) and offsets.npy (int64, each
    document's start, then the end). Returns (tokens, documents)."""
    total = docs = 0
    with atomic_dir(path) as tmp:
        toks, offs = _NpyAppender(os.path.join(tmp, "tokens.npy"), np.int32), _NpyAppender(os.path.join(tmp, "offsets.npy"), np.int64)
        try:
            for ids in pieces:
                if max_tokens is not None and total >= max_tokens:
                    break
                offs.append(np.array([total]))
                if max_tokens is not None:
                    ids = ids[: max_tokens - total]
                toks.append(ids)
                total += len(ids)
                docs += 1
            offs.append(np.array([total]))
        finally:
            toks.close()
            offs.close()
    return total, docs


def tokenize_stream(jsonl: str, tokenizer_dir: str, max_tokens: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize documents in order until `max_tokens`, in memory (small streams; the corpus's
    stream is written by write_stream). Returns the flat stream and the document start offsets
    (one extra at the end)."""
    pieces: list[np.ndarray] = []
    total = 0
    for ids in token_pieces(jsonl, tokenizer_dir):
        if max_tokens is not None and total >= max_tokens:
            break
        ids = ids if max_tokens is None else ids[: max_tokens - total]
        pieces.append(ids)
        total += len(ids)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in pieces], dtype=np.int64)]).astype(np.int64)
    stream = np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32)
    return stream, offsets


def write_token_stream(path: str, stream: np.ndarray, offsets: np.ndarray) -> None:
    """A stream in memory, written as one .npz (`path` ends in .npz) or as write_stream's directory."""
    if not path.endswith(".npz"):
        with atomic_dir(path) as tmp:
            np.save(os.path.join(tmp, "tokens.npy"), np.asarray(stream, np.int32))
            np.save(os.path.join(tmp, "offsets.npy"), np.asarray(offsets, np.int64))
        return
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, tokens=stream, offsets=offsets)


def read_token_stream(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, offsets) of a stream: a directory's are memory-mapped (the corpus's stream can
    be larger than memory), an .npz's loaded."""
    if os.path.isdir(path):
        return (np.load(os.path.join(path, "tokens.npy"), mmap_mode="r"),
                np.load(os.path.join(path, "offsets.npy"), mmap_mode="r"))
    with np.load(path) as z:
        return z["tokens"], z["offsets"]


def stream_sha256(stream: np.ndarray, limit: int) -> str:
    """sha256 of the stream's first `limit` tokens' bytes, read in chunks (a memory map stays one)."""
    h = hashlib.sha256()
    step = 1 << 24
    for a in range(0, min(limit, len(stream)), step):
        h.update(np.ascontiguousarray(stream[a : min(a + step, limit)]).tobytes())
    return h.hexdigest()


def documents_of(stream: np.ndarray, offsets: np.ndarray, limit: int) -> Iterable[np.ndarray]:
    """The documents of a token stream cut to its first `limit` tokens (the last one truncated)."""
    for a, b in zip(offsets[:-1], offsets[1:]):
        if a >= limit:
            return
        yield stream[a : min(b, limit)]


def write_levanter_cache(cache_dir: str, docs: Iterable[np.ndarray], tokenizer_dir: str) -> int:
    """Write a finished levanter TreeCache (no Ray) that `load_lm_dataset_cache` accepts."""
    # levanter: only for the jobs that tokenize (module docstring)
    from levanter.store.cache import CacheMetadata, SerialCacheWriter

    proc = _preprocessor(tokenizer_dir)
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
            "train_sha256": stream_sha256(stream, budget),
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
