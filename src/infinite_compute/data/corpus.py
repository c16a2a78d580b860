"""The corpus and its split into training and validation documents.

The default corpus is text every Python install carries: the interpreter's standard-library
sources and its pydoc topic texts. Documents are chosen and ordered by hashes only, so the same
interpreter gives the same corpus, recorded file by file (sha256) in a manifest.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import platform
import re
import shutil
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from typing import Iterable, Iterator

from ..runtime.io import atomic_path, atomic_write_json, atomic_write_text
from ..study.config import ConfigError
from . import shards, synthetic

EOT = "<|endoftext|>"


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stable_unit(key: str) -> float:
    """A number in [0, 1) fixed by `key` alone: the basis of splits and orders."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:15], 16) / float(1 << 60)


def split_long(doc_id: str, text: str, max_chars: int) -> Iterator[Document]:
    """Cut a document at line boundaries into pieces of at most `max_chars` characters."""
    if len(text) <= max_chars:
        yield Document(doc_id, text)
        return
    yield from split_lines(doc_id, text.splitlines(keepends=True), max_chars)


def split_lines(doc_id: str, lines: Iterable[str], max_chars: int) -> Iterator[Document]:
    """split_long of the text `lines` make, read line by line: a document need not be held whole."""
    it = iter(lines)
    head: list[str] = []
    size = 0
    for line in it:
        head.append(line)
        size += len(line)
        if size > max_chars:
            break
    else:
        yield Document(doc_id, "".join(head))
        return
    piece: list[str] = []
    size = 0
    n = 0
    for line in itertools.chain(head, it):
        while len(line) > max_chars:  # a single huge line: hard cut
            if piece:
                yield Document(f"{doc_id}#{n}", "".join(piece))
                n, piece, size = n + 1, [], 0
            yield Document(f"{doc_id}#{n}", line[:max_chars])
            n, line = n + 1, line[max_chars:]
        if size + len(line) > max_chars and piece:
            yield Document(f"{doc_id}#{n}", "".join(piece))
            n, piece, size = n + 1, [], 0
        piece.append(line)
        size += len(line)
    if piece:
        yield Document(f"{doc_id}#{n}", "".join(piece))


def stdlib_sources() -> list[tuple[str, str]]:
    """(relative path, absolute path) of the interpreter's stdlib .py files, tests excluded."""
    root = sysconfig.get_paths()["stdlib"]
    out = []
    for path in glob.glob(os.path.join(root, "**", "*.py"), recursive=True):
        rel = os.path.relpath(path, root)
        parts = rel.split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts:
            continue
        if any(p in ("test", "tests", "idle_test") for p in parts):
            continue
        out.append((rel, path))
    return sorted(out)


def _glob(pattern: str) -> list[str]:
    """Local paths, or URLs of a bucket (gs://, s3://, ...) through fsspec, matching `pattern`."""
    if "://" not in pattern:
        return glob.glob(pattern, recursive=True)
    import fsspec  # only for URLs and buckets: a local corpus does not import it

    fs, _, _ = fsspec.get_fs_token_paths(pattern)
    protocol = pattern.split("://", 1)[0]
    return [p if "://" in p else f"{protocol}://{p}" for p in fs.glob(pattern)]


def matching_files(patterns: list[str]) -> list[str]:
    """The files `data.files` names, in order, each once; an error names the pattern that matches none."""
    if not patterns:
        raise ValueError("config key 'data.files': source is 'files' but no file or pattern is given")
    paths: list[str] = []
    for i, pat in enumerate(patterns):
        hits = sorted(_glob(pat))
        if not hits:
            raise FileNotFoundError(f"config key 'data.files[{i}]': no file matches '{pat}'")
        paths.extend(hits)
    return sorted(dict.fromkeys(paths))


def check_shards(patterns: list[str], data_cfg: dict, key: str) -> tuple[list[str], bool]:
    """The local files of `patterns` (the config key `key`): each matches, the whole is not empty,
    and each is sniffed (shards.sniff). Returns them, and whether URLs follow (read by the job)."""
    first_remote = next((i for i, p in enumerate(patterns) if "://" in p and not p.startswith("file://")), len(patterns))
    local = [p.removeprefix("file://") for p in patterns[:first_remote]]
    try:
        paths = [p for p in matching_files(local) if os.path.isfile(p)] if local else []
    except (FileNotFoundError, ValueError) as e:
        raise type(e)(str(e).replace("data.files", key)) from None
    remote = first_remote < len(patterns)
    if not remote and sum(os.path.getsize(p) for p in paths) < (1 << 20) and not any(
            open(p, "rb").read().strip() for p in paths):
        raise ConfigError(key, f"the corpus is empty: {len(paths)} file(s) with no text ({paths[:3]})")
    for path in paths:
        shards.sniff(path, data_cfg)
    return paths, remote


def check_local_files(data_cfg: dict) -> None:
    """Before any job runs (the Snakefile calls this): every local pattern of `data.files` matches a
    file, each file's first bytes are text in the form its name declares (shards.sniff), and
    uncompressed text is large enough for the largest token budget plus the validation tokens. A
    token of a byte-level tokenizer covers at least one byte, and each document adds one end-of-text
    token, so B bytes give at most 2B tokens; compressed shards can hold any amount, and the tokenize
    job checks the exact count. Raises ConfigError or FileNotFoundError naming the key, or a
    ShardError naming the file; URLs and buckets are checked by the corpus job, which reads them."""
    if data_cfg["source"] != "files":
        return
    paths, remote = check_shards(data_cfg["files"], data_cfg, "data.files")
    if remote:  # a bucket: the corpus job, which reads it, checks it and the rest
        return
    if any(shards.shard_format(p)[0] == "parquet" or shards.shard_format(p)[1] for p in paths):
        return  # compressed: the bound below does not hold
    size = sum(os.path.getsize(p) for p in paths)
    need = max(data_cfg["token_budgets"]) + data_cfg.get("validation_tokens", 0)
    if need > 2 * size:
        raise ConfigError(
            "data.token_budgets",
            f"the largest budget ({max(data_cfg['token_budgets'])} tokens) plus data.validation_tokens "
            f"({data_cfg.get('validation_tokens', 0)}) is {need} tokens, more than the at most {2 * size} "
            f"that data.files can give ({size} bytes in {len(paths)} file(s))",
        )


def source_shards(data_cfg: dict) -> list[tuple[str, str]]:
    """(name, path) of the files the corpus reads, in order: the name is what its documents' ids
    and the manifest call it (a stdlib file by its path relative to the stdlib)."""
    if data_cfg["source"] == "stdlib":
        return stdlib_sources()
    if data_cfg["source"] == "files":
        return [(p, p) for p in matching_files(data_cfg["files"])]
    return []


PYDOC_TOPICS = os.path.join("pydoc_data", "topics.py")


def shard_documents(name: str, path: str, data_cfg: dict, stats: shards.ShardStats) -> Iterator[Document]:
    """One shard's documents (long ones cut by split_long), in file order; `stats` is filled in."""
    max_chars = data_cfg["max_document_chars"]
    stdlib = data_cfg["source"] == "stdlib"
    if stdlib and name == PYDOC_TOPICS:
        # the English documentation: one document per topic, not Python source
        with open(path, "rb") as f:
            raw = f.read()
        stats.bytes, stats.sha256 = len(raw), sha256_bytes(raw)
        ns: dict = {}
        exec(compile(raw, path, "exec"), ns)
        for topic in sorted(ns["topics"]):
            yield from split_long(f"pydoc_data/topics:{topic}", ns["topics"][topic], max_chars)
        return
    for doc_id, text in shards.read_documents(path, data_cfg, stats, name=name, allow_empty=stdlib):
        yield from (split_long(doc_id, text, max_chars) if isinstance(text, str) else split_lines(doc_id, text, max_chars))


def iter_documents(data_cfg: dict, files: list[dict]) -> Iterator[Document]:
    """The corpus's documents in file order, streamed; each shard's manifest entry is appended to
    `files` once the shard has been read."""
    if data_cfg["source"] == "synthetic":  # generated: no files, the manifest records the source instead
        yield from (Document(doc_id, text) for doc_id, text in synthetic.documents(data_cfg["synthetic"]) if text.strip())
        return
    for name, path in source_shards(data_cfg):
        stats = shards.ShardStats(name, shards.describe(*shards.shard_format(path)))
        for d in shard_documents(name, path, data_cfg, stats):
            if d.text.strip():
                stats.documents += 1
                stats.characters += len(d.text)
                yield d
        _check_not_empty(data_cfg, path, range(stats.documents))
        files.append(stats.entry())


def collect_documents(data_cfg: dict) -> tuple[list[Document], list[dict]]:
    """The corpus's documents in memory, and the manifest entries of the files they came from: for
    small corpora (tests, the synthetic source); prepare_corpus streams instead."""
    files: list[dict] = []
    docs = list(iter_documents(data_cfg, files))
    if not docs:
        raise ValueError("the corpus is empty: no document with any text (check data.source / data.files)")
    return docs, files


def _check_not_empty(data_cfg: dict, path: str, docs) -> None:
    if data_cfg["source"] == "files" and not docs:
        raise shards.ShardError(path, "the whole file", "no document with any text (an empty shard)")


_PIECE = re.compile(r"#\d+$")


def source_id(doc_id: str) -> str:
    """The id of the document a piece was cut from (split_long names pieces `<id>#<k>`)."""
    return _PIECE.sub("", doc_id)


def held_out(doc_id: str, validation_fraction: float, by: str = "piece") -> bool:
    """Whether a document is held out: a stable function of its id alone, whatever the order of the
    shards or the number of workers. `by` (data.held_out_by) is `piece`, each piece on its own, or
    `source`, every piece of one source document (a file, a JSON line, a row) on the same side, so
    that no held-out text was seen in training whatever data.max_document_chars cuts."""
    return stable_unit(f"split:{source_id(doc_id) if by == 'source' else doc_id}") < validation_fraction


def order_key(doc_id: str, seed: int, order: str = "pieces") -> float:
    """Where a piece goes in its split's order: a seeded hash of its own id (`pieces`: a long document's
    pieces land apart) or of its source document's (`documents`: they stay together, see sort_key)."""
    return stable_unit(f"order:{seed}:{source_id(doc_id) if order == 'documents' else doc_id}")


def sort_key(key: float, doc_id: str, order: str = "pieces") -> tuple:
    """The full sort key of a piece with order_key `key`: ties broken by id, or, for `documents`, by
    source and then piece number, so that a document's pieces follow each other in their own order
    and the packed token stream holds it whole (as marin packs the authors' DCLM tokens)."""
    if order != "documents":
        return key, doc_id
    m = _PIECE.search(doc_id)
    return key, source_id(doc_id), int(m.group()[1:]) if m else -1


def split_documents(docs: list[Document], validation_fraction: float, seed: int, by: str = "piece",
                    order: str = "pieces") -> tuple[list, list]:
    """Held-out documents by a stable hash of their id (held_out); each split ordered by a seeded hash
    (order_key, sort_key)."""
    train, val = [], []
    for d in docs:
        (val if held_out(d.doc_id, validation_fraction, by) else train).append(d)
    ordered = lambda d: sort_key(order_key(d.doc_id, seed, order), d.doc_id, order)  # noqa: E731
    return sorted(train, key=ordered), sorted(val, key=ordered)


# --- the streamed corpus: shards -> spill files by order bucket -> sorted splits ---

SPLITS = ("train", "validation")
BUCKET_BYTES = 64 << 20  # text per order bucket: what the merge holds in memory at once
MAX_BUCKETS = 256  # spill files a task may hold open, per split
COMPRESSION_GUESS = 5  # text per stored byte of a compressed shard, to size the buckets


def _stored_size(path: str) -> int:
    if "://" in path:
        return BUCKET_BYTES * 4  # a URL's size would cost a request: assume a large shard
    return os.path.getsize(path)


def _estimated_text(path: str) -> int:
    kind, compression = shards.shard_format(path)
    return _stored_size(path) * (COMPRESSION_GUESS if compression or kind == "parquet" else 1)


def _tasks(items: list[tuple[str, str]], workers: int) -> list[list[tuple[str, str]]]:
    """Shards grouped into tasks of about equal text, at least 4 per worker where there is enough."""
    total = sum(_estimated_text(p) for _, p in items)
    target = max(1 << 20, min(BUCKET_BYTES, total // (4 * workers) + 1))
    tasks, cur, size = [], [], 0
    for item in items:
        cur.append(item)
        size += _estimated_text(item[1])
        if size >= target:
            tasks.append(cur)
            cur, size = [], 0
    if cur:
        tasks.append(cur)
    return tasks


def _spill_task(index: int, items: list, data_cfg: dict, seed: int, n_buckets: int, spill: str) -> dict:
    """Read a task's shards; write each document as [order key, id, text] to the spill file of its
    split and order bucket. Returns the shards' manifest entries and per split the documents,
    characters and spill files written."""
    handles: dict[tuple[str, int], object] = {}
    out = {"files": [], **{s: {"documents": 0, "characters": 0} for s in SPLITS}}
    try:
        for name, path in items:
            stats = shards.ShardStats(name, shards.describe(*shards.shard_format(path)))
            n = 0
            for d in shard_documents(name, path, data_cfg, stats):
                if not d.text.strip():
                    continue
                n += 1
                stats.characters += len(d.text)
                split = ("validation" if held_out(d.doc_id, data_cfg["validation_fraction"], data_cfg.get("held_out_by", "piece"))
                         else "train")
                key = order_key(d.doc_id, seed, data_cfg.get("order", "pieces"))
                b = min(int(key * n_buckets), n_buckets - 1)
                f = handles.get((split, b))
                if f is None:
                    f = handles[(split, b)] = open(os.path.join(spill, f"{split}-{b:03d}-{index:06d}.jsonl"), "w")
                f.write(json.dumps([key, d.doc_id, d.text]) + "\n")
                out[split]["documents"] += 1
                out[split]["characters"] += len(d.text)
            _check_not_empty(data_cfg, path, range(n))
            stats.documents = n
            out["files"].append(stats.entry())
    finally:
        for f in handles.values():
            f.close()
    return out


def _run_tasks(tasks: list, data_cfg: dict, seed: int, n_buckets: int, spill: str, workers: int) -> list[dict]:
    args = [(i, t, data_cfg, seed, n_buckets, spill) for i, t in enumerate(tasks)]
    if workers <= 1 or len(tasks) <= 1:
        return [_spill_task(*a) for a in args]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_spill_task, *zip(*args)))


def _merge(spill: str, split: str, n_buckets: int, out_path: str, order: str = "pieces") -> None:
    """The split's documents in order: bucket by bucket (key ranges), each sorted by sort_key."""
    names = sorted(os.listdir(spill))
    with atomic_path(out_path) as tmp, open(tmp, "w") as out:
        for b in range(n_buckets):
            prefix = f"{split}-{b:03d}-"
            rows = []
            for name in names:
                if name.startswith(prefix):
                    with open(os.path.join(spill, name)) as f:
                        rows.extend(json.loads(line) for line in f)
            rows.sort(key=lambda r: sort_key(r[0], r[1], order))
            for _, doc_id, text in rows:
                out.write(json.dumps({"id": doc_id, "text": text}) + "\n")


def prepare_corpus(config: dict, out_dir: str, workers: int = 1) -> dict:
    """Write train.jsonl, validation.jsonl and manifest.json of the corpus into `out_dir`.

    Streams: shards are read in chunks (`workers` processes at once), each document goes to a spill
    file of its split and order bucket, and each split is written bucket by bucket, so memory holds
    one bucket (BUCKET_BYTES of text), not the corpus. The output is the same whatever `workers`."""
    data_cfg = config["data"]
    seed = config["seed"]
    os.makedirs(out_dir, exist_ok=True)
    if data_cfg["source"] == "synthetic":
        docs, files = collect_documents(data_cfg)
        train, val = split_documents(docs, data_cfg["validation_fraction"], seed, data_cfg.get("held_out_by", "piece"),
                                     data_cfg.get("order", "pieces"))
        _check_splits(len(docs), len(train), len(val), data_cfg)
        for name, split in (("train", train), ("validation", val)):
            atomic_write_text(os.path.join(out_dir, f"{name}.jsonl"),
                              "".join(json.dumps({"id": d.doc_id, "text": d.text}) + "\n" for d in split))
        counts = {s: {"documents": len(x), "characters": sum(len(d.text) for d in x)} for s, x in zip(SPLITS, (train, val))}
    else:
        items = source_shards(data_cfg)
        total = sum(_estimated_text(p) for _, p in items)
        n_buckets = max(1, min(MAX_BUCKETS, -(-total // BUCKET_BYTES)))
        for stale in glob.glob(os.path.join(out_dir, ".spill-*")):  # a killed job's: nothing to resume from
            shutil.rmtree(stale, ignore_errors=True)
        spill = tempfile.mkdtemp(prefix=".spill-", dir=out_dir)
        try:
            results = _run_tasks(_tasks(items, workers), data_cfg, seed, n_buckets, spill, workers)
            files = [f for r in results for f in r["files"]]
            counts = {s: {k: sum(r[s][k] for r in results) for k in ("documents", "characters")} for s in SPLITS}
            n = counts["train"]["documents"] + counts["validation"]["documents"]
            if n == 0:
                raise ValueError("the corpus is empty: no document with any text (check data.source / data.files)")
            _check_splits(n, counts["train"]["documents"], counts["validation"]["documents"], data_cfg)
            for split in SPLITS:
                _merge(spill, split, n_buckets, os.path.join(out_dir, f"{split}.jsonl"), data_cfg.get("order", "pieces"))
        finally:
            shutil.rmtree(spill, ignore_errors=True)
    manifest = {
        "source": data_cfg["source"],
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "stdlib": sysconfig.get_paths()["stdlib"] if data_cfg["source"] == "stdlib" else None,
        "files": files,
        "documents": {s: counts[s]["documents"] for s in SPLITS},
        "characters": {s: counts[s]["characters"] for s in SPLITS},
        "held_out": f"a document whose sha256('split:' + id) falls below data.validation_fraction "
                    f"({data_cfg['validation_fraction']}); ids are the file's name, then its line or row; by "
                    f"{data_cfg.get('held_out_by', 'piece')} (data.held_out_by)",
        "skipped": {k: sum(f.get(k, 0) for f in files) for k in ("replaced_bytes", "empty_records")},
        "corpus_sha256": sha256_bytes("".join(f["sha256"] for f in files).encode()),
    }
    if data_cfg["source"] == "synthetic":  # its parameters, seed and exact entropies (nats per symbol)
        manifest["synthetic"] = synthetic.describe(data_cfg["synthetic"])
        manifest["corpus_sha256"] = sha256_bytes("".join(d.text for d in docs).encode())
    atomic_write_json(os.path.join(out_dir, "manifest.json"), manifest)
    return manifest


def _check_splits(n: int, n_train: int, n_val: int, data_cfg: dict) -> None:
    if not n_train or not n_val:
        raise ValueError(
            f"the corpus has {n} documents: too few to hold out "
            f"data.validation_fraction={data_cfg['validation_fraction']} and still train"
        )


def read_jsonl(path: str) -> Iterator[dict]:
    with open(path) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
