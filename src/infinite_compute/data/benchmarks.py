"""An offline multiple-choice task built from held-out text: "which line comes next?".

Each item shows `context_lines` consecutive lines of a held-out document; the options are the
true next line and lines drawn from other held-out documents. Models score options by
log-likelihood through lm-eval-harness (outputs/lm_harness.py: a local task YAML over these items).
"""

from __future__ import annotations

import json

import numpy as np

from ..runtime.io import atomic_path, atomic_write_json

ITEM_KEYS = ("items", "choices", "context_lines", "min_line_chars")  # the `benchmark` keys items depend on


def _lines(text: str, min_chars: int) -> list[str]:
    return [ln for ln in text.splitlines() if len(ln.strip()) >= min_chars]


def build_items(
    documents: list[dict], *, items: int, choices: int, context_lines: int, min_line_chars: int, seed: int
) -> list[dict]:
    """Deterministic multiple-choice items from held-out documents ({"id", "text"} dicts)."""
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
                "id": f"{doc_lines[k][0]}@{i}",
                "context": "\n".join(lines[i - context_lines : i]) + "\n",
                "choices": options,
                "label": label,
            }
        )
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
