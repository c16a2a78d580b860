"""Commands of rules/results.smk: the runs, ensembles, distillation, benchmarks and tuning tables."""

from __future__ import annotations

import json
import os

from ..data.benchmarks import read_requests
from ..outputs import lm_harness
from ..outputs.results import write_tables
from ..outputs.rows import study_rows
from ..runtime.io import read_json
from ..study import paths
from ..study.paths import fill
from ..study.plan import plan_from_dict


def cmd_results(a) -> None:
    """The tables from the files the rule lists: every trained run's spec, metrics, eval and
    log-probs (in one order), every ensemble's record and every search's final record."""
    plan = plan_from_dict(read_json(a.plan))
    evals = [read_json(p) for p in a.evals]
    if not (len(a.specs) == len(a.metrics) == len(evals) == len(a.logprobs)):
        raise SystemExit("results: --specs, --metrics, --evals and --logprobs must list the same runs")
    ids = [ev["run_id"] for ev in evals]
    specs = dict(zip(ids, map(read_json, a.specs)))
    metrics = dict(zip(ids, map(read_json, a.metrics)))
    logprobs = dict(zip(ids, a.logprobs))
    for rid in ids:
        if (specs[rid]["run_id"] != rid or metrics[rid]["run_id"] != rid
                or os.path.normpath(logprobs[rid]) != os.path.normpath(fill(paths.LOGPROBS, run=rid))):
            raise SystemExit(f"results: the files of run '{rid}' are not listed in the same order")
    ensembles = {e["ensemble"]: e for e in sorted(map(read_json, a.ensembles), key=lambda e: e["ensemble"])}

    scores = lm_harness.SavedScores(json.loads(a.benchmark_settings), read_requests(a.benchmark_requests),
                                    a.benchmark_items, logprobs.__getitem__)

    def score_ensemble(name, k, members):
        return scores.ensemble(f"{name}:K={k}", members)

    tables = study_rows(plan, [read_json(p) for p in a.tuning], specs, metrics, dict(zip(ids, evals)), ensembles,
                        a.baseline_wd, scores.run, score_ensemble)
    write_tables(tables, plan.config_hash, a.out)
