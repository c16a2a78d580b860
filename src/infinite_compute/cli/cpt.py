"""Commands of rules/cpt.smk: the math corpus, CPT evaluations (loss and answer accuracy), the
regularized recipe's selection, its ensemble, and the CPT table with its L(D) fit."""

from __future__ import annotations

import json
import os

import numpy as np

from ..data import math_data
from ..data.benchmarks import read_requests, write_items, write_requests
from ..data.tokenizer import load_tokenizer
from ..data.tokens import evaluation_sequences
from ..outputs import lm_harness
from ..outputs.results import with_provenance, write_table
from ..outputs.rows import cpt_rows
from ..runtime.io import atomic_write_json, read_json
from ..science.cpt import efficiency, select_regularized
from ..science.ensemble import ensemble_loss
from ..study import paths
from ..study.paths import fill
from ..study.plan import plan_from_dict
from ..study.tasks import MATH_CHOICE
from .records import read_spec, write_eval


def cmd_math_corpus(a) -> None:
    print(json.dumps(math_data.write_corpus(json.loads(a.params), a.out)))


def cmd_cpt_requests(a) -> None:
    """The items of the local heldout_math_choice (from the held-out problems) and every request
    lm-eval asks of a CPT model on cpt.tasks (none when it is empty)."""
    s = json.loads(a.settings)
    problems = math_data.read_held_out(a.held_out)
    write_items(math_data.choice_items(problems, s["choices"], s["seed"]) if MATH_CHOICE in s["tasks"] else [],
                a.out_items)
    pairs = lm_harness.settings_requests(s, a.out_items)
    write_requests(a.out_requests, s["tasks"], pairs)
    print(json.dumps({"tasks": s["tasks"], "requests": len(pairs)}))


def cmd_cpt_evaluate(a) -> None:
    """A CPT run's held-out math loss (per-token log-probs saved) and answer accuracy."""
    # the model layer imports jax: here, so that this module's light commands (the corpus, the
    # selection, the table) do not
    from ..model import scoring
    from ..model.answers import answer_accuracy

    tok = load_tokenizer(a.tokenizer)
    problems = math_data.read_held_out(a.held_out)
    spec = read_spec(a.spec)
    pairs, bseqs, bmask = scoring.encoded_request_file(a.requests, a.tokenizer, spec.model.seq_len)
    with scoring.device_mesh():
        model = scoring.load_model(a.hf, spec, a.tokenizer)
        val = scoring.token_logprobs(model, evaluation_sequences(a.validation, spec.model.seq_len), a.batch_size)
        acc = answer_accuracy([model], tok, problems, a.answer_tokens, a.batch_size, spec.model.seq_len)
        bench = scoring.score_requests(model, bseqs, bmask, a.batch_size)  # cpt.tasks' requests (maybe none)
    write_eval(a.out_eval, a.out_logprobs, spec.run_id, val, bench, benchmark_requests=len(pairs), **acc)


def cmd_cpt_select(a) -> None:
    losses = {ev["run_id"]: ev["loss"] for ev in map(read_json, a.evals)}
    best = select_regularized(losses)
    atomic_write_json(a.out, {"selected": best, "losses": losses})
    print(best)


def cmd_cpt_ensemble(a) -> None:
    """The ensemble of the selected regularized CPT recipe at K = 1..members: loss from the saved
    log-probs, accuracy by greedy answers from the mixture of the first K members."""
    from ..model import scoring  # jax: as in cmd_cpt_evaluate
    from ..model.answers import answer_accuracy

    tok = load_tokenizer(a.tokenizer)
    problems = math_data.read_held_out(a.held_out)
    val = np.stack([np.load(p)["validation"] for p in a.logprobs])
    specs = [read_spec(p) for p in a.specs]
    curve = []
    with scoring.device_mesh():
        models = [scoring.load_model(hf, s, a.tokenizer) for hf, s in zip(a.hfs, specs)]
        for k in range(1, len(models) + 1):
            # members in turn, not one decode of all: the paper's four 3B members fit a v4 host's chips
            acc = answer_accuracy(models[:k], tok, problems, a.answer_tokens, a.batch_size, specs[0].model.seq_len,
                                  kv_cache=False)
            curve.append({"ensemble_size": k, "loss": ensemble_loss(val[:k]), **acc})
    atomic_write_json(a.out, {"members": [s.run_id for s in specs], "curve": curve})


def cmd_cpt_results(a) -> None:
    plan = plan_from_dict(read_json(a.plan))
    s = json.loads(a.settings)
    specs = {sp["run_id"]: sp for sp in map(read_json, a.specs)}
    evals = {ev["run_id"]: ev for ev in map(read_json, a.evals)}
    score = _benchmark_scorer(s, a.requests, a.items, a.logprobs)
    rows = cpt_rows(plan.cpt, specs, evals, read_json(a.selected)["selected"], read_json(a.ensemble), score)
    selected = read_json(a.selected)["selected"]
    members = [ev["loss"] for ev in map(read_json, a.member_evals) if ev["run_id"] != selected]
    fit_row, rows = efficiency(rows, n_bootstrap=s["bootstrap"], ci_level=s["ci_level"], seed=s["seed"],
                               reseed_losses=members)
    write_table("cpt", with_provenance(rows, plan.config_hash), a.out_table)
    write_table("fits", with_provenance([fit_row], plan.config_hash), a.out_fits)


def _benchmark_scorer(s: dict, requests: str, items: str, logprobs: list[str]):
    """lm-eval's metrics on cpt.tasks of a CPT model or of the mixture of ensemble members, from
    their saved log-probs: members (run ids) -> {task: metrics}; {} when the study names no tasks."""
    if not s["tasks"]:
        return lambda members: {}
    listed = {os.path.normpath(p) for p in logprobs}

    def path_of(rid):
        path = os.path.normpath(fill(paths.CPT_LOGPROBS, run=rid))
        if path not in listed:
            raise SystemExit(f"cpt-results: the log-probs of '{rid}' ({path}) are not among --logprobs")
        return path

    scores = lm_harness.SavedScores(s, read_requests(requests), items, path_of)
    return lambda members: scores.run(members[0]) if len(members) == 1 else scores.ensemble("+".join(members), members)
