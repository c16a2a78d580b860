"""Commands of rules/tuning.smk: a search round's record, and a search's outcome."""

from __future__ import annotations

import json

from ..runtime.io import atomic_write_json, read_json
from ..study.tuning import cell_from_dict, final_record, round_record


def cmd_tune_round(a) -> None:
    cell = cell_from_dict(json.loads(a.cell))
    previous = read_json(a.previous[0]) if a.previous else None
    if (previous is None) != (a.round == 0):
        raise SystemExit(f"{cell.cell_id}: round {a.round} needs exactly the record of round {a.round - 1}")
    losses = {}
    for path in a.evals:
        ev = read_json(path)
        losses[ev["run_id"]] = ev["loss"]
    record = round_record(cell, a.round, previous, losses)
    atomic_write_json(a.out, record)
    print(json.dumps({k: record[k] for k in ("cell", "round", "status", "next")}))


def cmd_tune_final(a) -> None:
    try:
        record = final_record(read_json(a.round), a.round)
    except ValueError as e:  # a search that has not ended: the job fails with the reason, as a message
        raise SystemExit(str(e)) from None
    atomic_write_json(a.out, record)
