"""Continued pre-training on the math domain: evaluation (held-out loss and answer accuracy) of
single runs and ensembles, and the CPT table with each recipe's data-efficiency multiplier
against the default recipe's math data-scaling law L(D)."""

from __future__ import annotations

import math

import numpy as np

from . import math_data


def answer_accuracy(models: list, tokenizer, problems: list, n_new: int, batch_size: int, seq_len: int) -> dict:
    """Greedy answers to the held-out questions (from the mixture of `models`), scored by exact match."""
    from .evaluate import greedy_completions

    eot = tokenizer.eos_token_id
    prompts = [[eot] + tokenizer(p.prompt(), add_special_tokens=False)["input_ids"] for p in problems]
    outs = greedy_completions(models, prompts, n_new, eot, batch_size, seq_len)
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


def select_regularized(losses: dict[str, float]) -> str:
    """The regularized recipe's weight decay: its run with the lowest held-out math loss."""
    finite = {r: v for r, v in losses.items() if np.isfinite(v)}
    if not finite:
        raise ValueError(f"every regularized CPT run diverged: {sorted(losses)}")
    return min(sorted(finite), key=lambda r: finite[r])


def cpt_rows(cpt: dict, specs: dict, evals: dict, selected: str, ensemble: dict) -> list[dict]:
    """One row per CPT model: the default recipe at each budget, the small batch, each regularized
    weight decay (the selected one marked), and the ensemble at each K."""
    rows = []

    def add(recipe, model_id, rid, ev, **extra):
        s = specs[rid]
        rows.append({
            "recipe": recipe, "model_id": model_id, "base_cell": cpt["base_cell"], "model": cpt["model"],
            "token_budget": int(s["token_budget"]), "epochs": int(s["epochs"]), "learning_rate": s["learning_rate"],
            "weight_decay": s["weight_decay"], "batch_size": int(s["batch_size"]), "ensemble_size": 1,
            "selected": False, "loss": ev["loss"], "accuracy": ev["accuracy"],
            "accuracy_stderr": ev["accuracy_stderr"], "n_questions": int(ev["n_questions"]), **extra,
        })

    for _, rid in sorted(cpt["scaling"].items(), key=lambda kv: int(kv[0])):
        add("default", rid, rid, evals[rid])
    add("small-batch", cpt["small_batch"], cpt["small_batch"], evals[cpt["small_batch"]])
    for rid in cpt["regularized"]:
        add("regularized", rid, rid, evals[rid], selected=rid == selected)
    for row in ensemble["curve"]:
        k = row["ensemble_size"]
        add("ensemble", f"{selected}:K={k}", selected, row, ensemble_size=int(k), selected=True)
    return rows


def efficiency(rows: list[dict], *, n_bootstrap: int, ci_level: float, seed: int) -> tuple[dict, list[dict]]:
    """The default recipe's math L(D) (a fit row) and, per row, its data-efficiency multiplier:
    D_eff(its loss) / D_eff(the default recipe's loss at the same budget), with a CI that combines
    the law's bootstrap refits. Rows gain data_efficiency, its CI and effective_tokens."""
    from .analysis import _fit, _fit_row
    from .fits import bootstrap_laws, data_efficiency, data_efficiency_interval, inverse_power_law

    kw = dict(n_bootstrap=n_bootstrap, ci_level=ci_level, seed=seed)
    points = [r for r in rows if r["recipe"] == "default" and np.isfinite(r["loss"])]
    x, y = [r["token_budget"] for r in points], [r["loss"] for r in points]
    result = _fit(x, y, "token_budget", **kw, asymptote=False)  # a law to invert: E = 0 serves
    fit_row = _fit_row("cpt-data", "default", "math", "token_budget", x, y, [r["model_id"] for r in points],
                       result=result, **kw)
    law = result[0] if result[1] == "ok" else None
    base = {r["token_budget"]: r["loss"] for r in points}
    laws = bootstrap_laws(law) if law is not None else None
    out = []
    for r in rows:
        r = dict(r)
        r["effective_tokens"] = r["data_efficiency"] = math.nan
        r["data_efficiency_ci_low"] = r["data_efficiency_ci_high"] = math.nan
        if law is not None and r["token_budget"] in base and np.isfinite(r["loss"]):
            b = base[r["token_budget"]]
            r["effective_tokens"] = float(inverse_power_law(law, r["loss"]))
            r["data_efficiency"] = float(data_efficiency(law, r["loss"], b))
            lo, hi = data_efficiency_interval(laws, r["loss"], b, ci_level=ci_level)
            r["data_efficiency_ci_low"], r["data_efficiency_ci_high"] = lo, hi
        out.append(r)
    return fit_row, out
