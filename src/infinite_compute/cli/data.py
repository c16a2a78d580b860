"""Commands of rules/data.smk: corpus, tokenizer, token streams, budget caches, benchmark items and
lm-eval's requests."""

from __future__ import annotations

import json
import shutil

from ..data import benchmarks, corpus, tokenizer, tokens
from ..outputs import lm_harness


def cmd_corpus(a) -> None:
    corpus.prepare_corpus({"data": json.loads(a.data), "seed": a.seed}, a.out, workers=a.workers)


def cmd_tokenizer(a) -> None:
    tokenizer.train_tokenizer(a.train, a.vocab_size, a.training_chars, a.out)


def cmd_word_tokenizer(a) -> None:
    """The synthetic source's tokenizer: its symbols, from the corpus manifest."""
    with open(a.manifest) as f:
        tokenizer.word_tokenizer(json.load(f)["synthetic"]["symbols"], a.out)


def cmd_copy_tokenizer(a) -> None:
    print(json.dumps(tokenizer.copy_tokenizer(a.path, a.out)))


def cmd_tokenize(a) -> None:
    for split, jsonl, limit, out in (("train", a.train, a.train_tokens, a.out_train),
                                     ("validation", a.validation, a.validation_tokens or None, a.out_validation)):  # 0: all
        n, docs = tokens.write_stream(out, tokens.token_pieces(jsonl, a.tokenizer, a.workers), limit)
        if limit is not None and n < limit:
            shutil.rmtree(out, ignore_errors=True)
            raise SystemExit(
                f"config key '{'data.token_budgets' if split == 'train' else 'data.validation_tokens'}': "
                f"{limit} tokens asked, but the {split} split of the corpus has only {n}"
            )
        print(json.dumps({"split": split, "tokens": n, "documents": docs}))


def cmd_cache(a) -> None:
    tokens.build_budget_cache(a.train, a.validation, a.tokenizer, a.budget, a.out)


def cmd_benchmark_items(a) -> None:
    params = json.loads(a.params)
    docs = list(corpus.read_jsonl(a.validation))
    if a.whole:  # every piece of a held-out source is held out (data.held_out_by: source): join them
        docs = benchmarks.whole_documents(docs)
    items = benchmarks.build_local_items(docs, seed=a.seed, **{k: params[k] for k in benchmarks.ITEM_KEYS})
    benchmarks.write_items(items, a.out)
    lm_harness.write_local_tasks(a.out, a.tasks_dir)


def cmd_benchmark_requests(a) -> None:
    """Every (context, continuation) pair lm-eval asks of a model on the configured tasks."""
    s = json.loads(a.settings)
    pairs = lm_harness.settings_requests(s, a.items)
    benchmarks.write_requests(a.out, s["tasks"], pairs)
    print(json.dumps({"tasks": s["tasks"], "requests": len(pairs)}))
