"""Commands of rules/cpt.smk: the math corpus, CPT evaluations (loss and answer accuracy), the
regularized recipe's selection, its ensemble, and the CPT table with its L(D) fit."""

from __future__ import annotations

import json

import numpy as np

from ..data import math_data
from ..data.tokenizer import load_tokenizer
from ..data.tokens import evaluation_sequences
from ..outputs.results import with_provenance, write_table
from ..outputs.rows import cpt_rows
from ..runtime.io import atomic_write_json, read_json
from ..science.cpt import efficiency, select_regularized
from ..science.ensemble import ensemble_loss
from ..study.plan import plan_from_dict
from .records import read_spec, write_eval


def cmd_math_corpus(a) -> None:
    print(json.dumps(math_data.write_corpus(json.loads(a.params), a.out)))


def cmd_cpt_evaluate(a) -> None:
    """A CPT run's held-out math loss (per-token log-probs saved) and answer accuracy."""
    # the model layer imports jax: here, so that this module's light commands (the corpus, the
    # selection, the table) do not
    from ..model import scoring
    from ..model.answers import answer_accuracy

    tok = load_tokenizer(a.tokenizer)
    problems = math_data.read_held_out(a.held_out)
    spec = read_spec(a.spec)
    with scoring.device_mesh():
        model = scoring.load_model(a.hf, spec, a.tokenizer)
        val = scoring.token_logprobs(model, evaluation_sequences(a.validation, spec.model.seq_len), a.batch_size)
        acc = answer_accuracy([model], tok, problems, a.answer_tokens, a.batch_size, spec.model.seq_len)
    write_eval(a.out_eval, a.out_logprobs, spec.run_id, val, {}, **acc)


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
            acc = answer_accuracy(models[:k], tok, problems, a.answer_tokens, a.batch_size, specs[0].model.seq_len)
            curve.append({"ensemble_size": k, "loss": ensemble_loss(val[:k]), **acc})
    atomic_write_json(a.out, {"members": [s.run_id for s in specs], "curve": curve})


def cmd_cpt_results(a) -> None:
    plan = plan_from_dict(read_json(a.plan))
    s = json.loads(a.settings)
    specs = {sp["run_id"]: sp for sp in map(read_json, a.specs)}
    evals = {ev["run_id"]: ev for ev in map(read_json, a.evals)}
    rows = cpt_rows(plan.cpt, specs, evals, read_json(a.selected)["selected"], read_json(a.ensemble))
    fit_row, rows = efficiency(rows, n_bootstrap=s["bootstrap"], ci_level=s["ci_level"], seed=s["seed"])
    write_table("cpt", with_provenance(rows, plan.config_hash), a.out_table)
    write_table("fits", with_provenance([fit_row], plan.config_hash), a.out_fits)
