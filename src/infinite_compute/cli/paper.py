"""Commands of rules/paper.smk: the paper's results section from its template and the tables, as
Markdown and as a standalone HTML page with the figures."""

from __future__ import annotations

import json
import os

from ..outputs import paper
from ..outputs.results import read_tables
from ..runtime.io import atomic_write_text, read_json


def cmd_paper(a) -> None:
    atomic_write_text(a.out, paper.render(a.template, read_tables(a.tables), read_json(a.manifest), a.baseline_wd))


def _read_figure(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    paper.png_size(data, path)  # a file that is not a PNG fails here, naming it
    return data


def cmd_paper_html(a) -> None:
    try:
        captions = json.loads(a.captions)
    except json.JSONDecodeError as e:
        raise ValueError(f"--captions is not a JSON object of figure captions: {e}") from e
    # a figure's name is its file's (figures/{figure}.png, study/paths.py); sorted, so that the page
    # does not depend on the order the rule lists them in
    figures = {os.path.splitext(os.path.basename(p))[0]: _read_figure(p) for p in sorted(a.figures)}
    atomic_write_text(a.out, paper.render_html(a.template, read_tables(a.tables), read_json(a.manifest),
                                               a.baseline_wd, figures, captions))
