"""Offline multiple-choice tasks built from held-out text (the study's local tasks).

- `heldout_next_line`, "which line comes next?": each item shows `context_lines` consecutive lines
  of a held-out document; the options are the true next line and lines drawn from other held-out
  documents.
- `heldout_minimal_pairs`, "which line is Python?": the same context; the options are the true
  next line and a copy of it with two adjacent words swapped, such that the document no longer
  compiles. Both options hold the same characters, so neither is favoured by its length: a model
  must know the language's order to tell them apart, which small models learn early (the next-line
  task needs more than they know).

Models score options by log-likelihood through lm-eval-harness (outputs/lm_harness.py: a local task
YAML over each task's items). Every item carries its task's name.
"""

from __future__ import annotations

import json
import re
import warnings

import numpy as np

from ..runtime.io import atomic_path, atomic_write_json
from ..study.tasks import MINIMAL_PAIRS, NEXT_LINE
# the `benchmark` keys the items depend on (rules/data.smk passes them to benchmark-items)
ITEM_KEYS = ("tasks", "items", "choices", "context_lines", "min_line_chars")


def _lines(text: str, min_chars: int) -> list[str]:
    return [ln for ln in text.splitlines() if len(ln.strip()) >= min_chars]


def whole_documents(documents: list[dict]) -> list[dict]:
    """Held-out pieces joined back into the documents they were cut from (`<id>#<k>`, in k order;
    split_long cuts at line ends, so the join is the source text): a benchmark's items then do not
    depend on how finely the corpus is cut. Only for a corpus held out by source (data.held_out_by),
    where every piece of a held-out source is there."""
    groups: dict[str, list[tuple[int, str]]] = {}
    order: list[str] = []
    for d in documents:
        m = _PIECE.search(d["id"])
        src, k = (d["id"][: m.start()], int(m.group(1))) if m else (d["id"], -1)
        if src not in groups:
            groups[src] = []
            order.append(src)
        groups[src].append((k, d["text"]))
    return [{"id": src, "text": "".join(t for _, t in sorted(groups[src]))} for src in order]


_PIECE = re.compile(r"#(\d+)$")


def build_local_items(documents: list[dict], *, tasks: list[str], seed: int, **params) -> list[dict]:
    """The items of every local task in `tasks` (others are lm-eval's own), `params["items"]` each."""
    out: list[dict] = []
    if NEXT_LINE in tasks:
        out += build_items(documents, seed=seed, **params)
    if MINIMAL_PAIRS in tasks:
        out += build_pair_items(documents, items=params["items"], context_lines=params["context_lines"],
                                min_line_chars=params["min_line_chars"], seed=seed)
    return out


def build_items(
    documents: list[dict], *, items: int, choices: int, context_lines: int, min_line_chars: int, seed: int
) -> list[dict]:
    """Deterministic next-line items from held-out documents ({"id", "text"} dicts)."""
    rng = np.random.default_rng(seed)
    doc_lines = [(d["id"], _lines(d["text"], min_line_chars)) for d in documents]
    positions = [(k, i) for k, (_, lines) in enumerate(doc_lines) for i in range(context_lines, len(lines))]
    pool = [(k, ln) for k, (_, lines) in enumerate(doc_lines) for ln in lines]
    if len(positions) < items or len({ln for _, ln in pool}) < choices * 2:
        raise ValueError(
            f"benchmark: the held-out text gives {len(positions)} candidate questions, fewer than "
            f"benchmark.items={items}; lower it or hold out more text (data.validation_fraction)"
        )
    out: list[dict] = []
    for p in rng.permutation(len(positions)):
        if len(out) == items:
            break
        k, i = positions[p]
        lines = doc_lines[k][1]
        answer = lines[i]
        distractors: list[str] = []
        for q in rng.permutation(len(pool)):
            dk, ln = pool[q]
            if dk != k and ln != answer and ln not in distractors:
                distractors.append(ln)
                if len(distractors) == choices - 1:
                    break
        label = int(rng.integers(choices))
        options = distractors[:label] + [answer] + distractors[label:]
        out.append(
            {
                "task": NEXT_LINE,
                "id": f"{doc_lines[k][0]}@{i}",
                "context": "\n".join(lines[i - context_lines : i]) + "\n",
                "choices": options,
                "label": label,
            }
        )
    return out


def _compiles(text: str) -> bool:
    with warnings.catch_warnings():  # invalid escapes and the like warn; only a SyntaxError matters
        warnings.simplefilter("ignore")
        try:
            compile(text, "<held-out>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            return False
    return True


def swap_words(line: str, rng: np.random.Generator) -> str | None:
    """`line` with two adjacent, different space-separated words swapped (its indentation and its
    characters kept), or None when it has fewer than two words that differ."""
    indent = line[: len(line) - len(line.lstrip())]
    words = line.strip().split(" ")
    spots = [j for j in range(len(words) - 1) if words[j] and words[j + 1] and words[j] != words[j + 1]]
    if not spots:
        return None
    j = spots[int(rng.integers(len(spots)))]
    words[j], words[j + 1] = words[j + 1], words[j]
    return indent + " ".join(words)


def build_pair_items(documents: list[dict], *, items: int, context_lines: int, min_line_chars: int,
                     seed: int) -> list[dict]:
    """Deterministic minimal pairs from the held-out documents that compile as Python: a line of at
    least `min_line_chars` characters against its word-swapped copy, which makes the document fail to
    compile (a swap that still compiles, such as `a + b` -> `b + a`, is never a question)."""
    rng = np.random.default_rng(seed)
    docs = [(d["id"], d["text"].split("\n")) for d in documents]
    positions = [(k, i) for k, (_, lines) in enumerate(docs) for i in range(context_lines, len(lines))
                 if len(lines[i].strip()) >= min_line_chars]
    out: list[dict] = []
    compiles: dict[int, bool] = {}
    for p in rng.permutation(len(positions)):
        if len(out) == items:
            break
        k, i = positions[p]
        name, lines = docs[k]
        if k not in compiles:
            compiles[k] = _compiles("\n".join(lines))
        corrupted = swap_words(lines[i], rng) if compiles[k] else None
        if corrupted is None or _compiles("\n".join(lines[:i] + [corrupted] + lines[i + 1:])):
            continue
        label = int(rng.integers(2))
        options = [corrupted, lines[i]] if label else [lines[i], corrupted]
        out.append({"task": MINIMAL_PAIRS, "id": f"{name}@{i}", "context": "\n".join(lines[i - context_lines: i]) + "\n",
                    "choices": options, "label": label})
    if len(out) < items:
        raise ValueError(f"benchmark: the held-out text gives {len(out)} minimal pairs (Python lines whose word swap "
                         f"no longer compiles), fewer than benchmark.items={items}; lower it or hold out more text")
    return out


def write_items(items: list[dict], path: str) -> None:
    """The items as JSON lines, lm-eval's local dataset (lm_harness.write_local_tasks points at it)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            for it in items:
                f.write(json.dumps(it) + "\n")


def write_requests(path: str, tasks: list[str], pairs) -> None:
    """The (context, continuation) pairs lm-eval asks of every model: each evaluation scores them."""
    atomic_write_json(path, {"tasks": tasks, "requests": [list(p) for p in pairs]})


def read_requests(path: str) -> list[tuple[str, str]]:
    with open(path) as f:
        return [tuple(p) for p in json.load(f)["requests"]]
