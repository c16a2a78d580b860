"""Commands of rules/figures.smk: one figure, and the checksum index of them all (`figures/all`)."""

from __future__ import annotations

import hashlib
import os

from ..outputs import figures
from ..outputs.results import read_tables
from ..runtime.io import atomic_write_text, read_json
from ..study.paths import CACHE_INFO


def cmd_figure(a) -> None:
    tables = read_tables(a.tables)
    tables["budget_caches"] = [read_json(os.path.join(c, CACHE_INFO)) for c in a.caches]
    tables["manifest"] = read_json(a.manifest)
    tables["baseline_wd"] = a.baseline_wd
    figures.draw(a.name, tables, a.out)


def cmd_figures_index(a) -> None:
    lines = []
    for p in sorted(a.figures):
        with open(p, "rb") as f:
            lines.append(f"{hashlib.sha256(f.read()).hexdigest()}  {p}")
    atomic_write_text(a.out, "\n".join(lines) + "\n")
