"""Run records from W&B, incrementally: local offline run files (wandb_files) or a project on a W&B
server through the public API. Every record has one shape (wandb_files.read_run's) whatever its
source. A cache folder keeps each run's record under its id with the key it was read at (an offline
file's size and mtime; a server run's heartbeat and state), so a second import reads only the runs
that changed. tqdm shows the reading."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Callable, Iterable

from ..runtime.io import atomic_write_text
from .wandb_files import offline_run_files, read_run


class ImportSourceError(ValueError):
    """A config `import` that names no runs; the message names the key."""


def check_source(cfg: dict) -> None:
    """Fail before any job when the config's `import` source cannot give a run: offline folders that
    hold no run file, or a server source without projects."""
    if cfg["source"] == "offline":
        missing = [d for d in cfg["offline_dirs"] if not os.path.isdir(d)]
        if missing:
            raise ImportSourceError(f"import.offline_dirs: no folder {missing}")
        if not offline_run_files(cfg["offline_dirs"]):
            raise ImportSourceError(f"import.offline_dirs: no W&B run file (offline-run-*/run-*.wandb) under "
                                    f"{cfg['offline_dirs']}")
    elif cfg["source"] == "wandb" and not cfg["projects"]:
        raise ImportSourceError("import.projects: source 'wandb' needs at least one entity/project")


def _cache_path(cache_dir: str, source: str, run_id: str) -> str:
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]  # one folder per source: ids are unique within it
    return os.path.join(cache_dir, digest, f"{run_id}.json")


def cached(cache_dir: str, source: str, items: Iterable[tuple[str, str, Callable[[], dict]]],
           desc: str) -> tuple[list[dict], dict]:
    """The records of `items` ((run id, its update key, a function reading it)): from the cache when
    the key is unchanged, else read and cached. Returns the records and counts (read, cached)."""
    from tqdm import tqdm

    items = list(items)
    records, counts = [], {"read": 0, "cached": 0}
    for run_id, key, read in tqdm(items, desc=desc, unit="run", disable=None):
        path = _cache_path(cache_dir, source, run_id)
        if os.path.exists(path):
            with open(path) as f:
                entry = json.load(f)
            if entry["key"] == key:
                records.append(entry["record"])
                counts["cached"] += 1
                continue
        record = read()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write_text(path, json.dumps({"key": key, "record": record}, sort_keys=True))
        records.append(record)
        counts["read"] += 1
    return records, counts


def offline_records(roots: list[str], cache_dir: str) -> tuple[list[dict], dict]:
    """Every offline run under `roots` (wandb_files.offline_run_files)."""
    files = offline_run_files(roots)

    def item(path):
        st = os.stat(path)
        run = os.path.basename(os.path.dirname(path))  # offline-run-<time>-<id>: unique per run folder
        return run, f"{st.st_size}:{st.st_mtime_ns}", lambda: read_run(path)

    return cached(cache_dir, "offline:" + "|".join(sorted(map(os.path.abspath, roots))), map(item, files),
                  "offline runs")


def api_record(run, keys: list[str]) -> dict:
    """A server run (wandb.apis.public.Run) in read_run's shape. The summary holds each key's exact final
    value; `scan_history` (not the sampled `history`) gives every logged value of `keys`."""
    history = []
    for key in keys:  # one scan per key: scan_history returns only rows holding every key asked for
        for row in run.scan_history(keys=[key, "_step"]):
            history.append({"_step": row.get("_step"), key: row.get(key)})
    history.sort(key=lambda r: (r["_step"] is None, r["_step"] or 0))
    summary = {k: v for k, v in dict(run.summary).items() if not k.startswith("_wandb")}
    return {"id": run.id, "name": run.name, "project": run.project, "entity": run.entity, "group": run.group,
            "tags": list(run.tags or []), "config": dict(run.config), "summary": summary, "history": history,
            "state": run.state, "exit_code": None, "source": "/".join(run.path)}


def api_records(projects: list[str], keys: list[str], filters: dict | None, cache_dir: str,
                api=None) -> tuple[list[dict], dict]:
    """Every run of `projects` ("entity/project") matching the server-side `filters` (W&B's MongoDB-style
    query, e.g. {"tags": {"$in": [...]}, "state": "finished"}), listed lazily (light fields only) and
    read in full only when its heartbeat or state changed since the cached copy."""
    if api is None:
        import wandb

        api = wandb.Api(timeout=60)
    records, counts = [], {"read": 0, "cached": 0}
    for project in projects:
        runs = api.runs(project, filters=filters or {}, per_page=500)

        def item(run):
            key = f"{run._attrs.get('heartbeatAt')}:{run.state}"
            return run.id, key, lambda: api_record(run, keys)

        r, c = cached(cache_dir, f"api:{project}", map(item, runs), project)
        records += r
        counts = {k: counts[k] + c[k] for k in counts}
    return records, counts
