"""`provenance`: the runs behind a figure, a table row or a number, from the study's Parquet tables.

    python -m infinite_compute provenance fits kind=params recipe=regularized
    python -m infinite_compute provenance ensembles reg-ens-n2-d8k K=3 --json

The selector's grammar is outputs/provenance.py's docstring.
"""

from __future__ import annotations

import json
import os
import sys

from ..outputs.provenance import TABLE_KINDS, ProvenanceError, provenance, render
from ..outputs.results import read_table


def cmd_provenance(a) -> None:
    if not os.path.isdir(a.results):
        raise SystemExit(f"provenance: no results folder '{a.results}' (run the study first, or pass --results)")
    # every table that exists; one the selector needs and the study lacks is reported by name
    tables = {k: read_table(p) if os.path.exists(p := os.path.join(a.results, f"{k}.parquet")) else None
              for k in TABLE_KINDS}
    try:
        answer = provenance(a.selector, tables)
    except ProvenanceError as e:
        raise SystemExit(f"provenance: {e}") from None
    if a.json:
        json.dump(answer, sys.stdout, indent=1, default=str)
        print()
    else:
        print(render(answer))
