"""A reader of W&B's offline run files (`wandb/offline-run-*/run-<id>.wandb`).

The installed wandb no longer ships one (its `datastore` module left the package when the Go core
took over writing). The format is small: a 7-byte header (":W&B", the magic 0xBEE1 little-endian,
a version byte), then a leveldb-style record log in 32 KiB blocks. Each chunk has a 7-byte header
(crc32 of the type byte and the data, the data's length, its type: FULL, FIRST, MIDDLE, LAST);
a block's last < 7 bytes are zero padding. Each whole record is a protobuf `Record` of
`wandb.proto.wandb_internal_pb2` (run, config, history, summary, exit, ...).

A run killed while writing leaves a truncated last chunk: the records before it are kept and the
run reads as crashed (no exit record). A chunk whose checksum does not match is corruption, and
the error names the file and the offset.
"""

from __future__ import annotations

import glob
import json
import os
import struct
import zlib
from typing import Iterator

FILE_HEADER = struct.Struct("<4sHB")
IDENT, MAGIC = b":W&B", 0xBEE1
BLOCK = 32768
CHUNK_HEADER = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class WandbFileError(ValueError):
    """A file that is not a W&B run log, or one whose records are corrupt."""


def records(path: str) -> Iterator[bytes]:
    """The serialized records of a .wandb file, in order (a truncated tail ends them)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < FILE_HEADER.size:
        raise WandbFileError(f"{path}: {len(data)} bytes, shorter than a W&B header")
    ident, magic, version = FILE_HEADER.unpack_from(data)
    if ident != IDENT or magic != MAGIC:
        raise WandbFileError(f"{path}: not a W&B run log (header {ident!r} {magic:#x}, expected {IDENT!r} {MAGIC:#x})")
    pos, pending = FILE_HEADER.size, None
    while pos + CHUNK_HEADER.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER.size:  # a block's trailer: zero padding
            pos += left
            continue
        crc, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        if crc == length == kind == 0:  # padding up to the block's end
            pos += left
            continue
        start, end = pos + CHUNK_HEADER.size, pos + CHUNK_HEADER.size + length
        if end > len(data):  # the writer was killed mid-chunk
            return
        chunk = data[start:end]
        if zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF != crc:
            raise WandbFileError(f"{path}: corrupt record at byte {pos} (checksum mismatch)")
        pos = end
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind in (MIDDLE, LAST) and pending is not None:
            pending += chunk
            if kind == LAST:
                yield pending
                pending = None
        else:
            raise WandbFileError(f"{path}: chunk of type {kind} at byte {pos} out of sequence")


def _set(target: dict, item) -> None:
    """Apply one config/summary/history item: a `key`, or a `nested_key` path, and its JSON value."""
    path = list(item.nested_key) or [item.key]
    value = json.loads(item.value_json)
    for k in path[:-1]:
        target = target.setdefault(k, {})
    target[path[-1]] = value


def read_run(path: str) -> dict:
    """One offline run as a plain record: id, name, project, group, tags, config, summary, history
    (a list of {"_step": n, key: value}), state ("finished", "failed", "crashed": no exit record)
    and exit code. The same shape wandb_runs.api_record gives for a run fetched from a server."""
    from wandb.proto import wandb_internal_pb2 as pb  # the schema the records are written in

    out: dict = {"id": None, "name": None, "project": None, "entity": None, "group": None, "tags": [],
                 "config": {}, "summary": {}, "history": [], "state": "crashed", "exit_code": None,
                 "source": os.path.abspath(path)}
    for raw in records(path):
        r = pb.Record()
        try:
            r.ParseFromString(raw)
        except Exception as e:  # noqa: BLE001 - protobuf's DecodeError; the file is what is wrong
            raise WandbFileError(f"{path}: a record is not a W&B protobuf Record ({e})") from e
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run = r.run
            out.update(id=run.run_id, name=run.display_name or run.run_id, project=run.project,
                       entity=run.entity or None, group=run.run_group or None, tags=list(run.tags))
            for item in run.config.update:
                _set(out["config"], item)
            for item in run.summary.update:
                _set(out["summary"], item)
        elif kind == "config":
            for item in r.config.update:
                _set(out["config"], item)
        elif kind == "summary":
            for item in r.summary.update:
                _set(out["summary"], item)
        elif kind == "history":
            row: dict = {}
            for item in r.history.item:
                _set(row, item)
            if r.history.HasField("step"):
                row["_step"] = r.history.step.num
            out["history"].append(row)
        elif kind == "exit":
            out["exit_code"] = r.exit.exit_code
            out["state"] = "finished" if r.exit.exit_code == 0 else "failed"
    if out["id"] is None:
        raise WandbFileError(f"{path}: no run record (the run's start was not written)")
    out["config"].pop("_wandb", None)  # wandb's own bookkeeping, not the run's config
    return out


def offline_run_files(roots: list[str]) -> list[str]:
    """Every run log under `roots` (a wandb directory, a folder holding one, or a run folder), sorted."""
    found: set[str] = set()
    for root in roots:
        for pattern in ("run-*.wandb", "offline-run-*/run-*.wandb", "wandb/offline-run-*/run-*.wandb",
                        "run-*/run-*.wandb", "wandb/run-*/run-*.wandb"):
            found.update(glob.glob(os.path.join(root, pattern)))
    return sorted(found)
