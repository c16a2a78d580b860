"""The math CPT domain: seeded problems, exact answers, held-out questions never in training."""

import re
from collections import Counter

import pytest

from infinite_compute.data import math_data as md
from infinite_compute.data.math_data import (
    KINDS,
    Problem,
    exact_match,
    generate,
    is_held_out,
    parse_answer,
)


def recompute(p: Problem) -> int:
    """The answer from the question's own numbers, independently of the generator."""
    nums = [int(v) for v in re.findall(r"\d+", p.question)]
    if p.kind in ("add", "buy"):
        return nums[0] + nums[1]
    if p.kind == "sub":
        return nums[0] - nums[1]
    if p.kind in ("mul", "rate"):
        return nums[0] * nums[1]
    if p.kind == "share":
        assert nums[0] % nums[1] == 0
        return nums[0] // nums[1]
    raise AssertionError(p.kind)


def test_same_seed_same_problems_other_seed_differs():
    a, b, c = generate(3, 200, 50), generate(3, 200, 50), generate(4, 200, 50)
    assert a == b
    assert a[0] != c[0]


def test_answers_are_exact_and_every_kind_occurs():
    train, held = generate(0, 600, 100)
    assert len(train) == 600 and len(held) == 100
    for p in train + held:
        assert p.answer == recompute(p), p
        assert parse_answer(p.text()) == p.answer
    assert set(Counter(p.kind for p in train)) == set(KINDS)


def test_held_out_questions_never_appear_in_training():
    train, held = generate(1, 3000, 200, held_out_fraction=0.2)
    train_questions = {p.question for p in train}
    assert len({p.question for p in held}) == 200  # distinct
    assert not train_questions & {p.question for p in held}
    assert all(is_held_out(p, 0.2) for p in held) and not any(is_held_out(p, 0.2) for p in train)


def test_exact_match_scores_the_leading_integer():
    p = Problem("add", "What is 2 + 3?", 5)
    assert p.prompt() + " 5\n" == p.text()
    assert exact_match(" 5\nQuestion: ...", p) and exact_match("5", p)
    assert not exact_match(" 55", p) and not exact_match(" five", p) and not exact_match(" -5", p)


def test_bad_fraction_is_an_error():
    with pytest.raises(ValueError, match="held_out_fraction"):
        generate(0, 10, 10, held_out_fraction=0.0)


def test_cpt_multiplier_on_a_known_law():
    """Default-recipe points on L(D) = 10 / D^0.3 + 2: a recipe reaching, at budget D, the loss
    the law gives at 4D has a multiplier of 4."""
    from infinite_compute.science import cpt

    law = lambda d: 10.0 / d**0.3 + 2.0  # noqa: E731
    rows = [{"recipe": "default", "model_id": f"d{d}", "token_budget": d, "loss": law(d)} for d in (1000, 2000, 4000, 8000)]
    rows.append({"recipe": "regularized", "model_id": "r", "token_budget": 2000, "loss": law(8000)})
    fit, out = cpt.efficiency(rows, n_bootstrap=20, ci_level=0.9, seed=0)
    assert fit["status"] == "ok" and abs(fit["alpha"] - 0.3) < 1e-3 and abs(fit["E"] - 2.0) < 1e-3
    by = {r["model_id"]: r for r in out}
    assert abs(by["r"]["data_efficiency"] - 4.0) < 1e-2 and abs(by["r"]["effective_tokens"] - 8000) < 10
    assert abs(by["d2000"]["data_efficiency"] - 1.0) < 1e-9


def test_regularized_selection_skips_diverged_runs():
    from infinite_compute.science import cpt

    assert cpt.select_regularized({"a": 3.0, "b": float("nan"), "c": 2.5}) == "c"
    with pytest.raises(ValueError, match="diverged"):
        cpt.select_regularized({"a": float("nan")})


def test_corpus_files_keep_held_out_questions_out_of_training(tmp_path):
    import json

    info = md.write_corpus({"seed": 1, "train": 200, "held_out": 30, "held_out_fraction": 0.2, "per_document": 4},
                           str(tmp_path / "math"))
    train = "".join(json.loads(l)["text"] for l in open(tmp_path / "math" / "train.jsonl"))
    held = md.read_held_out(str(tmp_path / "math" / "held_out.jsonl"))
    assert info["train_problems"] == 200 and len(held) == 30
    assert sum(1 for _ in open(tmp_path / "math" / "train.jsonl")) == 50
    assert not any(f"Question: {p.question}\n" in train for p in held)


def test_a_real_math_corpus_replaces_the_generated_problems(tmp_path):
    import json

    shard = tmp_path / "megamath-0.jsonl"
    shard.write_text("".join(json.dumps({"text": f"Proof {i}: 2 + 2 = 4."}) + "\n" for i in range(7)))
    params = {"seed": 1, "train": 10**9, "held_out": 5, "held_out_fraction": 0.2, "per_document": 4,
              "files": [str(tmp_path / "megamath-*.jsonl")], "data": {"text_field": "text", "max_document_chars": 8000}}
    info = md.write_corpus(params, str(tmp_path / "math"))
    lines = [json.loads(l)["text"] for l in open(tmp_path / "math" / "train.jsonl")]
    assert lines == [f"Proof {i}: 2 + 2 = 4." for i in range(7)] and info["train_problems"] == 0
    assert len(md.read_held_out(str(tmp_path / "math" / "held_out.jsonl"))) == 5
    with pytest.raises(FileNotFoundError, match="cpt.files"):
        md.write_corpus({**params, "files": [str(tmp_path / "nothing-*.jsonl")]}, str(tmp_path / "m2"))


def test_choice_items_hold_the_answer_among_distinct_nearby_numbers():
    from infinite_compute.study.tasks import MATH_CHOICE

    _, held = md.generate(0, 10, 50)
    items = md.choice_items(held, 4, seed=3)
    assert items == md.choice_items(held, 4, seed=3)  # seeded
    assert [it["context"] for it in items] == [p.prompt() for p in held]
    for it, p in zip(items, held):
        numbers = [int(c) for c in it["choices"]]
        assert it["task"] == MATH_CHOICE and len(set(numbers)) == 4 and numbers[it["label"]] == p.answer
        assert all(c.startswith(" ") for c in it["choices"]) and max(abs(n - p.answer) for n in numbers) <= 12
    # the answer's position is spread over the options, not always one
    assert len({it["label"] for it in items}) == 4
