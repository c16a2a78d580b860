"""Greedy answers to the math domain's held-out questions, from one model or the mixture of an
ensemble's members, scored by exact match (the CPT stage's answer accuracy)."""

from __future__ import annotations

import math

import numpy as np

from ..data import math_data
from ..data.tokenizer import document_start
from .sampling import greedy_completions


def answer_accuracy(models: list, tokenizer, problems: list, n_new: int, batch_size: int, seq_len: int,
                    kv_cache: bool = True) -> dict:
    """Greedy answers to the held-out questions (from the mixture of `models`), scored by exact match;
    `kv_cache` as sampling.greedy_completions takes it."""
    eot = tokenizer.eos_token_id
    start = document_start(tokenizer)
    prompts = [[start] + tokenizer(p.prompt(), add_special_tokens=False)["input_ids"] for p in problems]
    outs = greedy_completions(models, prompts, n_new, eot, batch_size, seq_len, kv_cache)
    texts = [tokenizer.decode([t for t in o if t != eot]) for o in outs]
    right = np.array([math_data.exact_match(t, p) for t, p in zip(texts, problems)], float)
    n = len(right)
    return {
        "accuracy": float(right.mean()),
        "accuracy_stderr": float(right.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
        "n_questions": n,
        "examples": [{"question": p.question, "answer": p.answer, "completion": t}
                     for p, t in list(zip(problems, texts))[:5]],
    }
