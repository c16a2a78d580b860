"""Commands of rules/import.smk: the study's tables from W&B runs (offline run folders or a server)."""

from __future__ import annotations

import json
import logging

from ..outputs.imported import ImportSettings, import_tables
from ..outputs.results import write_tables
from ..outputs.wandb_runs import api_records, offline_records
from ..runtime.io import atomic_write_json

logger = logging.getLogger(__name__)


def cmd_import_runs(a) -> None:
    """Read every run of the configured source (through the cache), place it, write the tables, the
    report of what was placed and why not, and the manifest the paper's Setup describes."""
    s = json.loads(a.settings)
    settings = ImportSettings(**{k: s[k] for k in ("data", "eval_key", "baseline_weight_decay", "batch_size", "tags",
                                                   "skip_tags", "states", "ensemble_teacher")})
    if s["source"] == "offline":
        records, counts = offline_records(s["offline_dirs"], a.cache)
        where = s["offline_dirs"]
    else:
        # server-side filters keep the listing short; the same filters are applied again to each record
        filters = {"state": {"$in": s["states"]}} | ({"tags": {"$in": s["tags"]}} if s["tags"] else {})
        records, counts = api_records(s["projects"], [settings.loss_key, "train/loss"], filters, a.cache)
        where = s["projects"]
    tables, report = import_tables(records, settings)
    unplaced = [e for e in report if not e["placed"]]
    placed = len(report) - len(unplaced)
    for e in unplaced:
        logger.warning("not placed: %s (%s): %s", e["name"], e["id"], e["reason"])
    logger.info("%d runs: %d read, %d from the cache; %d placed, %d not", len(records), counts["read"],
                counts["cached"], placed, len(unplaced))
    if not tables["tuning"]:
        raise SystemExit(f"import: no run of {where} could be placed in a search cell; see {a.out_report}")
    write_tables(tables, s["config_hash"], a.out)
    atomic_write_json(a.out_report, {"counts": counts, "placed": placed,
                                     "unplaced": len(unplaced), "runs": report})
    atomic_write_json(a.out_manifest, {"source": "wandb", "import": s["source"], "from": where,
                                       "runs": len(records), "placed": placed,
                                       "data": settings.data, "loss_key": settings.loss_key})
