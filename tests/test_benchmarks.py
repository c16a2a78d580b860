"""Benchmarks through lm-eval-harness: its requests for the local task, its metrics from log-likelihoods
we give it (single models and ensembles, checked by hand), and the request encoding."""

import json
import math

import numpy as np
import pytest

from infinite_compute.data.benchmarks import build_items, build_local_items, build_pair_items
from infinite_compute.outputs import lm_harness


@pytest.fixture(scope="module")
def items_file(tmp_path_factory):
    docs = [{"id": f"d{k}", "text": "\n".join(f"doc {k} line {i} " + "word " * (i * k % 5) for i in range(8))}
            for k in range(6)]
    items = build_items(docs, items=12, choices=3, context_lines=2, min_line_chars=5, seed=0)
    path = tmp_path_factory.mktemp("bench") / "benchmark.jsonl"
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    return str(path), items


@pytest.fixture(scope="module")
def tasks(items_file):
    return lm_harness.task_dict(["heldout_next_line"], items_file[0], num_fewshot=0, seed=0)


def test_lm_eval_asks_for_every_choice_after_its_context(items_file, tasks):
    _, items = items_file
    pairs = lm_harness.requests(tasks, None)
    assert sorted(pairs) == sorted({(it["context"], c) for it in items for c in it["choices"]})


def test_lm_eval_metrics_from_given_loglikelihoods(items_file, tasks):
    _, items = items_file
    rng = np.random.default_rng(3)
    table = {(it["context"], c): (float(rng.normal(-20, 5)), False) for it in items for c in it["choices"]}
    assert set(table) == set(lm_harness.requests(tasks, None))
    # by hand: acc takes the likeliest choice, acc_norm the likeliest per character of the choice
    acc = [np.argmax([table[(it["context"], c)][0] for c in it["choices"]]) == it["label"] for it in items]
    acc_norm = [np.argmax([table[(it["context"], c)][0] / len(c) for c in it["choices"]]) == it["label"] for it in items]
    assert acc != acc_norm and 0 < np.mean(acc) < 1  # the case tells the two metrics apart
    m = lm_harness.score(tasks, table, "hand", None)["heldout_next_line"]
    assert m["n_items"] == 12 and m["chance"] == pytest.approx(1 / 3)
    assert m["acc"] == pytest.approx(np.mean(acc)) and m["acc_norm"] == pytest.approx(np.mean(acc_norm))
    assert m["acc_stderr"] == pytest.approx(np.std(acc, ddof=1) / math.sqrt(12))


PYTHON_DOCS = [
    {"id": "m1", "text": "import os\n\n\ndef join_all(parts, sep):\n    total = sep.join(parts)\n    return total + sep\n"},
    {"id": "m2", "text": "class Box:\n    def __init__(self, size):\n        self.size = size * 2\n"
                         "        self.items = list(range(size))\n"},
    {"id": "prose", "text": "This is English text, not Python.\nIt has lines that are long enough to use.\n"
                            "So a swap here could never be told from the original by compiling it.\n"},
]


def test_minimal_pairs_swap_two_words_so_the_document_no_longer_compiles():
    kw = dict(items=5, context_lines=1, min_line_chars=10, seed=0)
    items = build_pair_items(PYTHON_DOCS, **kw)
    assert items == build_pair_items(PYTHON_DOCS, **kw) and len(items) == 5
    assert len({it["id"] for it in items}) == 5
    by_id = {d["id"]: d["text"].split("\n") for d in PYTHON_DOCS}
    for it in items:
        doc, i = it["id"].split("@")
        lines, i = by_id[doc], int(i)
        assert doc != "prose" and it["task"] == "heldout_minimal_pairs"
        true, wrong = it["choices"][it["label"]], it["choices"][1 - it["label"]]
        assert true == lines[i] and it["context"] == lines[i - 1] + "\n"
        assert sorted(wrong) == sorted(true) and wrong != true  # the same characters, in another order
        with pytest.raises(SyntaxError):
            compile("\n".join(lines[:i] + [wrong] + lines[i + 1:]), "x", "exec")
    assert {it["label"] for seed in range(4) for it in build_pair_items(PYTHON_DOCS, **{**kw, "seed": seed})} == {0, 1}
    with pytest.raises(ValueError, match="benchmark.items=50"):
        build_pair_items(PYTHON_DOCS, **{**kw, "items": 50})


def test_both_local_tasks_through_lm_eval(tmp_path):
    docs = PYTHON_DOCS + [{"id": f"d{k}", "text": "\n".join(f"doc {k} line {i}" for i in range(8))} for k in range(4)]
    items = build_local_items(docs, tasks=["heldout_next_line", "heldout_minimal_pairs"], items=4, choices=3,
                              context_lines=1, min_line_chars=10, seed=0)
    path = tmp_path / "benchmark.jsonl"
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    tasks = lm_harness.task_dict(["heldout_next_line", "heldout_minimal_pairs"], str(path), num_fewshot=0, seed=0)
    pairs = lm_harness.requests(tasks, None)
    assert sorted(set(pairs)) == sorted({(it["context"], c) for it in items for c in it["choices"]})
    # the true choice twice as likely as each other: every item right, at each task's own chance
    table = {(it["context"], c): (-1.0 if c == it["choices"][it["label"]] else -2.0, False) for it in items
             for c in it["choices"]}
    m = lm_harness.score(tasks, table, "hand", None)
    assert {t: (v["n_items"], v["acc"], v["chance"]) for t, v in m.items()} == {
        "heldout_next_line": (4, 1.0, pytest.approx(1 / 3)), "heldout_minimal_pairs": (4, 1.0, 0.5)}


def test_missing_request_names_the_model(items_file, tasks):
    with pytest.raises(KeyError, match="model-x"):
        lm_harness.score(tasks, {}, "model-x", None)


def test_ensemble_loglikelihood_is_the_mixture_per_token():
    pairs = [("a", "b"), ("c", "d"), ("e", "f")]
    offsets = np.array([0, 2, 3, 3])  # request 3 has no continuation token: log-likelihood 0
    m1 = {"bench_logprobs": np.log([0.5, 0.25, 0.1]), "bench_offsets": offsets, "bench_greedy": np.array([1, 0, 1], bool)}
    m2 = {"bench_logprobs": np.log([0.5, 0.75, 0.3]), "bench_offsets": offsets, "bench_greedy": np.array([0, 0, 1], bool)}
    single = lm_harness.run_table(pairs, m1)
    assert single[("a", "b")] == (pytest.approx(math.log(0.5 * 0.25)), True)
    assert single[("e", "f")] == (0.0, True)
    ens = lm_harness.ensemble_table(pairs, [m1, m2])
    assert ens[("a", "b")][0] == pytest.approx(math.log(0.5) + math.log(0.5))  # mean(0.25, 0.75) = 0.5
    assert ens[("c", "d")][0] == pytest.approx(math.log(0.2))
    # the mixture's log-likelihood is not the mean of the members' (Jensen: it is at least that)
    assert ens[("a", "b")][0] > (single[("a", "b")][0] + lm_harness.run_table(pairs, m2)[("a", "b")][0]) / 2


def test_requests_are_encoded_like_lm_eval(tmp_path):
    from infinite_compute.data import tokenizer
    from infinite_compute.model import scoring

    corpus = tmp_path / "train.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"line {i} says hello world\n" * 3}) + "\n" for i in range(50)))
    tokenizer.train_tokenizer(str(corpus), 300, 100_000, str(tmp_path / "tok"))
    tok = tokenizer.load_tokenizer(str(tmp_path / "tok"))
    eot = tok.eos_token_id
    pairs = [("line 1 says", " hello world"), ("line 2 says ", "hello"), ("x" * 200, " world")]
    seqs, mask = scoring.encode_requests(pairs, tok, 16, eot)
    for (ctx, cont), seq, m in zip(pairs, seqs, mask):
        n_spaces = len(ctx) - len(ctx.rstrip())  # a trailing space moves to the continuation
        ctx, cont = ctx[: len(ctx) - n_spaces], ctx[len(ctx) - n_spaces :] + cont
        targets = seq[1:][m]  # the predicted tokens marked as continuation
        assert tok.decode(targets.tolist()) == cont
        last = np.flatnonzero(m)[-1]
        assert (seq[last + 2 :] == eot).all()  # padding after the continuation
    assert seqs[0][0] == eot  # a request starts at <|endoftext|> when it fits
