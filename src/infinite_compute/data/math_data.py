"""The second domain for continued pre-training: arithmetic and word problems with exact answers.

Problems are drawn from a seed, so the corpus is the same on every machine. Each problem is
held out or not by a stable hash of its question text, not by its position in the stream. A
held-out question therefore never appears in the training text, however many problems are drawn.
A problem is written as

    Question: Ada has 17 pens and buys 25 more. How many pens does Ada have now?
    Answer: 42

and an answer is scored by exact match of the integer after "Answer:".
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass

from ..runtime.io import atomic_dir, atomic_write_json
from ..study.tasks import MATH_CHOICE
from .corpus import Document, iter_documents, stable_unit
from .shards import ShardError

KINDS = ("add", "sub", "mul", "buy", "share", "rate")
_NAMES = ("Ada", "Ben", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lena")
_THINGS = ("pens", "apples", "books", "coins", "stamps", "marbles", "cards", "shells")
_ANSWER = re.compile(r"Answer:\s*(-?\d+)")


@dataclass(frozen=True)
class Problem:
    kind: str
    question: str
    answer: int

    def text(self) -> str:
        """The problem as it appears in the corpus (question and answer, newline-terminated)."""
        return f"Question: {self.question}\nAnswer: {self.answer}\n"

    def prompt(self) -> str:
        """What a model is given at evaluation: the question and the answer's cue."""
        return f"Question: {self.question}\nAnswer:"


def _problem(rng: random.Random, kind: str) -> Problem:
    name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
    if kind == "add":
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        return Problem(kind, f"What is {a} + {b}?", a + b)
    if kind == "sub":
        a, b = sorted((rng.randint(10, 999), rng.randint(10, 999)), reverse=True)
        return Problem(kind, f"What is {a} - {b}?", a - b)
    if kind == "mul":
        a, b = rng.randint(2, 99), rng.randint(2, 30)
        return Problem(kind, f"What is {a} * {b}?", a * b)
    if kind == "buy":
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        return Problem(kind, f"{name} has {a} {thing} and buys {b} more. How many {thing} does {name} have now?", a + b)
    if kind == "share":
        per, people = rng.randint(2, 20), rng.randint(2, 12)
        return Problem(kind, f"{name} shares {per * people} {thing} equally among {people} friends. "
                             f"How many {thing} does each friend get?", per)
    if kind == "rate":
        per, days = rng.randint(2, 25), rng.randint(2, 14)
        return Problem(kind, f"{name} collects {per} {thing} every day for {days} days. "
                             f"How many {thing} does {name} collect?", per * days)
    raise ValueError(f"unknown problem kind '{kind}'; known: {KINDS}")


def is_held_out(problem: Problem, held_out_fraction: float) -> bool:
    """Whether a question belongs to the held-out set: a stable hash of its text alone."""
    return stable_unit(f"math:{problem.question}") < held_out_fraction


def generate(seed: int, n_train: int, n_held_out: int, held_out_fraction: float = 0.1) -> tuple[list, list]:
    """`n_train` training problems and `n_held_out` distinct held-out ones, drawn from one seeded
    stream. A held-out question never appears among the training problems. Training problems can
    repeat (the stream is random), as text on the web does; held-out ones are deduplicated."""
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    rng = random.Random(seed)
    train: list[Problem] = []
    held: dict[str, Problem] = {}
    # a generous cap: every draw is held out with probability held_out_fraction
    for _ in range(50 * (n_train + n_held_out) + 1000):
        if len(train) >= n_train and len(held) >= n_held_out:
            return train, list(held.values())
        p = _problem(rng, rng.choice(KINDS))
        if is_held_out(p, held_out_fraction):
            if len(held) < n_held_out:
                held.setdefault(p.question, p)
        elif len(train) < n_train:
            train.append(p)
    raise ValueError(f"could not draw {n_held_out} distinct held-out problems; raise held_out_fraction")


def parse_answer(text: str) -> int | None:
    """The integer after the first "Answer:" in `text`, or None."""
    m = _ANSWER.search(text)
    return int(m.group(1)) if m else None


def exact_match(completion: str, problem: Problem) -> bool:
    """A completion of `problem.prompt()` is right when its leading integer is the answer."""
    m = re.match(r"\s*(-?\d+)", completion)
    return m is not None and int(m.group(1)) == problem.answer


def write_corpus(params: dict, out_dir: str) -> dict:
    """The math domain as a corpus directory: train.jsonl (`per_document` problems per document),
    validation.jsonl (each held-out problem, question and answer: the CPT validation loss) and
    held_out.jsonl (question, answer and prompt: the answer accuracy)."""
    files = params.get("files")
    train, held = generate(params["seed"], 0 if files else params["train"], params["held_out"],
                           params["held_out_fraction"])
    k = params["per_document"]
    manifest: list[dict] = []
    if files:  # a real math corpus (e.g. MegaMath shards): its text replaces the generated problems,
        # streamed shard by shard in file order (the CPT budgets are prefixes of it)
        train_docs = iter_documents({**params["data"], "source": "files", "files": files}, manifest)
    else:
        train_docs = (Document(f"math-{i // k}", "".join(p.text() for p in train[i : i + k]))
                      for i in range(0, len(train), k))
    n_train = 0
    with atomic_dir(out_dir) as tmp:
        with open(os.path.join(tmp, "train.jsonl"), "w") as f:
            try:
                for d in train_docs:
                    f.write(json.dumps({"id": d.doc_id, "text": d.text}) + "\n")
                    n_train += 1
            except ShardError:
                raise  # it names the file
            except (FileNotFoundError, ValueError) as e:  # a key of the math corpus is cpt.files
                raise type(e)(str(e).replace("data.files", "cpt.files")) from None
        with open(os.path.join(tmp, "validation.jsonl"), "w") as f:
            for i, p in enumerate(held):
                f.write(json.dumps({"id": f"held-{i}", "text": p.text()}) + "\n")
        with open(os.path.join(tmp, "held_out.jsonl"), "w") as f:
            for p in held:
                f.write(json.dumps({"kind": p.kind, "question": p.question, "answer": p.answer}) + "\n")
        info = {"params": params, "train_documents": n_train, "files": manifest,
                "train_problems": 0 if manifest else len(train), "held_out_problems": len(held),
                "kinds": {kd: sum(p.kind == kd for p in train) for kd in KINDS}}
        atomic_write_json(os.path.join(tmp, "info.json"), info)
    return info


def choice_items(problems: list[Problem], choices: int, seed: int) -> list[dict]:
    """The held-out problems as a multiple-choice task (MATH_CHOICE, MathQA's form): the prompt, and
    the answer among `choices` distinct integers within 12 of it, in a seeded order. The items'
    fields are those of the study's local tasks (data/benchmarks.py), so lm-eval reads them alike."""
    rng = random.Random(seed)
    offsets = [d for d in range(-12, 13) if d]
    out = []
    for i, p in enumerate(problems):
        options = [p.answer + d for d in rng.sample(offsets, choices - 1)] + [p.answer]
        rng.shuffle(options)
        out.append({"task": MATH_CHOICE, "id": f"math-{i}", "context": p.prompt(),
                    "choices": [f" {x}" for x in options], "label": options.index(p.answer)})
    return out


def read_held_out(path: str) -> list[Problem]:
    with open(path) as f:
        return [Problem(r["kind"], r["question"], r["answer"]) for r in map(json.loads, f) if r]
