"""Commands of rules/paper.smk: the paper's results section from its template and the tables."""

from __future__ import annotations

from ..outputs import paper
from ..outputs.results import read_tables
from ..runtime.io import atomic_write_text, read_json


def cmd_paper(a) -> None:
    atomic_write_text(a.out, paper.render(a.template, read_tables(a.tables), read_json(a.manifest), a.baseline_wd))
