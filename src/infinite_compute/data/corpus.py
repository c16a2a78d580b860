"""The corpus and its split into training and validation documents.

The default corpus is text every Python install carries: the interpreter's standard-library
sources and its pydoc topic texts. Documents are chosen and ordered by hashes only, so the same
interpreter gives the same corpus, recorded file by file (sha256) in a manifest.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import sys
import sysconfig
from dataclasses import dataclass
from typing import Iterator

from ..runtime.io import atomic_write_json, atomic_write_text
from ..study.config import ConfigError
from . import synthetic

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
    piece: list[str] = []
    size = 0
    n = 0
    for line in text.splitlines(keepends=True):
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


def check_local_files(data_cfg: dict) -> None:
    """Before any job runs (the Snakefile calls this): every local pattern of `data.files` matches a
    file, the files hold text, and they are large enough for the largest token budget plus the
    validation tokens. A token of a byte-level tokenizer covers at least one byte, and each document
    adds one end-of-text token, so B bytes give at most 2B tokens; the tokenize job checks the exact
    count. Raises ConfigError or FileNotFoundError naming the key; URLs and buckets are checked by
    the corpus job."""
    if data_cfg["source"] != "files":
        return
    pats = data_cfg["files"]
    first_remote = next((i for i, p in enumerate(pats) if "://" in p and not p.startswith("file://")), len(pats))
    local = [p.removeprefix("file://") for p in pats[:first_remote]]
    if first_remote < len(pats):  # a bucket: the corpus job, which reads it, checks it and the rest
        if local:
            matching_files(local)
        return
    paths = [p for p in matching_files(local) if os.path.isfile(p)]
    size = sum(os.path.getsize(p) for p in paths)
    if size < (1 << 20) and not any(open(p, "rb").read().strip() for p in paths):
        raise ConfigError("data.files", f"the corpus is empty: {len(paths)} file(s) with no text ({paths[:3]})")
    need = max(data_cfg["token_budgets"]) + data_cfg.get("validation_tokens", 0)
    if need > 2 * size:
        raise ConfigError(
            "data.token_budgets",
            f"the largest budget ({max(data_cfg['token_budgets'])} tokens) plus data.validation_tokens "
            f"({data_cfg.get('validation_tokens', 0)}) is {need} tokens, more than the at most {2 * size} "
            f"that data.files can give ({size} bytes in {len(paths)} file(s))",
        )


def collect_documents(data_cfg: dict) -> tuple[list[Document], list[dict]]:
    """The corpus's documents and the manifest entries of the files they came from."""
    files: list[dict] = []
    docs: list[Document] = []
    max_chars = data_cfg["max_document_chars"]

    def add_file(rel: str, path: str) -> bytes:
        if "://" in path:  # a URL or bucket (gs://, s3://, https://, file://): through fsspec
            import fsspec  # only for URLs and buckets, as in _glob

            with fsspec.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
        files.append({"path": rel, "sha256": sha256_bytes(raw), "bytes": len(raw)})
        return raw

    if data_cfg["source"] == "synthetic":  # generated: no files, the manifest records the source instead
        docs = [Document(doc_id, text) for doc_id, text in synthetic.documents(data_cfg["synthetic"])]
    elif data_cfg["source"] == "stdlib":
        for rel, path in stdlib_sources():
            raw = add_file(rel, path)
            if rel == os.path.join("pydoc_data", "topics.py"):
                # the English documentation: one document per topic, not Python source
                ns: dict = {}
                exec(compile(raw, path, "exec"), ns)
                for topic in sorted(ns["topics"]):
                    docs.extend(split_long(f"pydoc_data/topics:{topic}", ns["topics"][topic], max_chars))
                continue
            text = raw.decode("utf-8", errors="replace")
            docs.extend(split_long(rel, text, max_chars))
    else:
        for path in matching_files(data_cfg["files"]):
            raw = add_file(path, path)
            if path.endswith(".jsonl"):
                for i, line in enumerate(raw.decode("utf-8").splitlines()):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        text = rec[data_cfg["text_field"]]
                    except (json.JSONDecodeError, KeyError, TypeError) as e:
                        raise ValueError(
                            f"{path}, line {i + 1}: expected a JSON object with a "
                            f"'{data_cfg['text_field']}' field (data.text_field): {e}"
                        ) from None
                    docs.extend(split_long(f"{path}:{i}", str(text), max_chars))
            else:
                docs.extend(split_long(path, raw.decode("utf-8", errors="replace"), max_chars))
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise ValueError("the corpus is empty: no document with any text (check data.source / data.files)")
    return docs, files


def split_documents(docs: list[Document], validation_fraction: float, seed: int) -> tuple[list, list]:
    """Held-out documents by a stable hash of their id; each split ordered by a seeded hash."""
    train, val = [], []
    for d in docs:
        (val if stable_unit(f"split:{d.doc_id}") < validation_fraction else train).append(d)
    order = lambda d: stable_unit(f"order:{seed}:{d.doc_id}")  # noqa: E731
    return sorted(train, key=order), sorted(val, key=order)


def prepare_corpus(config: dict, out_dir: str) -> dict:
    """Write train.jsonl, validation.jsonl and manifest.json of the corpus into `out_dir`."""
    data_cfg = config["data"]
    docs, files = collect_documents(data_cfg)
    train, val = split_documents(docs, data_cfg["validation_fraction"], config["seed"])
    if not train or not val:
        raise ValueError(
            f"the corpus has {len(docs)} documents: too few to hold out "
            f"data.validation_fraction={data_cfg['validation_fraction']} and still train"
        )
    os.makedirs(out_dir, exist_ok=True)
    for name, split in (("train", train), ("validation", val)):
        atomic_write_text(
            os.path.join(out_dir, f"{name}.jsonl"),
            "".join(json.dumps({"id": d.doc_id, "text": d.text}) + "\n" for d in split),
        )
    manifest = {
        "source": data_cfg["source"],
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "stdlib": sysconfig.get_paths()["stdlib"] if data_cfg["source"] == "stdlib" else None,
        "files": files,
        "documents": {"train": len(train), "validation": len(val)},
        "characters": {"train": sum(len(d.text) for d in train), "validation": sum(len(d.text) for d in val)},
        "corpus_sha256": sha256_bytes("".join(f["sha256"] for f in files).encode()),
    }
    if data_cfg["source"] == "synthetic":  # its parameters, seed and exact entropies (nats per symbol)
        manifest["synthetic"] = synthetic.describe(data_cfg["synthetic"])
        manifest["corpus_sha256"] = sha256_bytes("".join(d.text for d in docs).encode())
    atomic_write_json(os.path.join(out_dir, "manifest.json"), manifest)
    return manifest


def read_jsonl(path: str) -> Iterator[dict]:
    with open(path) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
