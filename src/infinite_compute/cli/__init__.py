"""The command line: one subcommand per rule, grouped in one module per rule file (cli/data.py for
rules/data.smk, ...). A command reads the files its rule declares, calls one function of the layers
below, and writes the rule's outputs; the logic lives in those layers.

Only the chosen command's module is imported (`importlib`, below): the jax commands' modules import
jax and levanter at their top, and a light job (a table, a figure) must not pay for them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..runtime import worker
from ..runtime.env import hide_lm_eval, set_job_defaults

# name -> (module of cli, its function, the arguments: a flag, or (flag, argparse keywords))
COMMANDS: dict[str, tuple[str, str, tuple]] = {
    "corpus": ("data", "corpus", ("--data", ("--seed", {"type": int}), "--out",
                                  ("--workers", {"type": int, "default": 1, "required": False}))),
    "tokenizer": ("data", "tokenizer", ("--train", ("--vocab-size", {"type": int}), ("--training-chars", {"type": int}),
                                        "--out")),
    "copy-tokenizer": ("data", "copy_tokenizer", ("--path", "--out")),
    "word-tokenizer": ("data", "word_tokenizer", ("--manifest", "--out")),
    "tokenize": ("data", "tokenize", ("--train", "--validation", "--tokenizer", ("--train-tokens", {"type": int}),
                                      ("--validation-tokens", {"type": int}), "--out-train", "--out-validation",
                                      ("--workers", {"type": int, "default": 1, "required": False}))),
    "cache": ("data", "cache", ("--train", "--validation", "--tokenizer", ("--budget", {"type": int}), "--out")),
    "benchmark-items": ("data", "benchmark_items", ("--validation", "--params", ("--seed", {"type": int}), "--out",
                                                    "--tasks-dir", ("--whole", {"action": "store_true", "required": False}))),
    "benchmark-requests": ("data", "benchmark_requests", ("--items", "--settings", "--out")),
    "train": ("train", "train", ("--spec", "--cache", "--tokenizer", "--out", "--checkpoints", "--settings",
                                 ("--init-from", {"required": False, "default": None}))),
    "tune-round": ("tuning", "tune_round", ("--cell", ("--round", {"type": int}), ("--previous", {"nargs": "*"}),
                                            ("--evals", {"nargs": "+", "required": True}), "--out")),
    "tune-final": ("tuning", "tune_final", ("--round", "--out")),
    "evaluate": ("evaluate", "evaluate", ("--spec", "--hf", "--validation", "--requests", "--tokenizer",
                                          ("--batch-size", {"type": int}), "--out-eval", "--out-logprobs")),
    "ensemble": ("ensemble", "ensemble", ("--name", ("--logprobs", {"nargs": "+", "required": True}),
                                          ("--member-ids", {"nargs": "+", "required": True}), "--info",
                                          ("--seed", {"type": int}), "--out")),
    "sample": ("distill", "sample", (("--specs", {"nargs": "+", "required": True}),
                                     ("--hfs", {"nargs": "+", "required": True}), "--tokenizer", "--params",
                                     ("--batch-size", {"type": int}), "--out")),
    "distill-cache": ("distill", "distill_cache", ("--train", "--validation", "--samples", "--tokenizer",
                                                   ("--budget", {"type": int}), ("--share", {"type": float}), "--out")),
    "math-corpus": ("cpt", "math_corpus", ("--params", "--out")),
    "cpt-requests": ("cpt", "cpt_requests", ("--held-out", "--settings", "--out-items", "--out-requests")),
    "cpt-evaluate": ("cpt", "cpt_evaluate", ("--spec", "--hf", "--validation", "--held-out", "--requests", "--tokenizer",
                                             ("--answer-tokens", {"type": int}), ("--batch-size", {"type": int}),
                                             "--out-eval", "--out-logprobs")),
    "cpt-select": ("cpt", "cpt_select", (("--evals", {"nargs": "+", "required": True}), "--out")),
    "cpt-ensemble": ("cpt", "cpt_ensemble", (("--specs", {"nargs": "+", "required": True}),
                                             ("--hfs", {"nargs": "+", "required": True}),
                                             ("--logprobs", {"nargs": "+", "required": True}), "--held-out",
                                             "--tokenizer", ("--answer-tokens", {"type": int}),
                                             ("--batch-size", {"type": int}), "--out")),
    "cpt-results": ("cpt", "cpt_results", ("--plan", ("--specs", {"nargs": "+", "required": True}),
                                           ("--evals", {"nargs": "+", "required": True}),
                                           ("--member-evals", {"nargs": "*", "default": []}),
                                           ("--logprobs", {"nargs": "+", "required": True}), "--selected", "--ensemble",
                                           "--requests", "--items", "--settings", "--out-table", "--out-fits")),
    "results": ("results", "results", ("--plan", ("--tuning", {"nargs": "*"}), ("--specs", {"nargs": "+"}),
                                       ("--metrics", {"nargs": "+"}), ("--evals", {"nargs": "+"}),
                                       ("--logprobs", {"nargs": "+"}), ("--ensembles", {"nargs": "*"}),
                                       ("--baseline-wd", {"type": float}), "--benchmark-items",
                                       "--benchmark-settings", "--benchmark-requests",
                                       ("--out", {"nargs": "+", "required": True}))),
    "import-runs": ("imports", "import_runs", ("--settings", "--cache", ("--out", {"nargs": "+", "required": True}),
                                               "--out-report", "--out-manifest")),
    "fits": ("fits", "fits", ("--tuning", "--ensembles", "--settings", "--out-fits", "--out-efficiency",
                              "--out-json")),
    "claims": ("fits", "claims", (("--tables", {"nargs": "+", "required": True}), ("--baseline-wd", {"type": float}),
                                  ("--seed", {"type": int}), "--manifest", ("--seq-len", {"type": int}),
                                  ("--primary-task", {"default": None}), "--out")),
    "figure": ("figures", "figure", ("--name", ("--tables", {"nargs": "+", "required": True}),
                                     ("--caches", {"nargs": "*", "default": []}), "--manifest",
                                     ("--baseline-wd", {"type": float}), "--out")),
    "figures-index": ("figures", "figures_index", (("--figures", {"nargs": "+", "required": True}), "--out")),
    "paper": ("paper", "paper", ("--template", ("--tables", {"nargs": "+", "required": True}), "--manifest",
                                 ("--baseline-wd", {"type": float}), "--out")),
    "paper-html": ("paper", "paper_html", ("--template", ("--tables", {"nargs": "+", "required": True}),
                                           "--manifest", ("--baseline-wd", {"type": float}),
                                           ("--figures", {"nargs": "+", "required": True}), "--captions",
                                           "--out")),
    # not a rule's: a reader's question, "which runs is this number made of?" (outputs/provenance.py)
    "fetch-inputs": ("inputs", "fetch_inputs", (("--configfile", {"nargs": "*", "default": []}),)),
    "memory-plan": ("memory", "memory_plan", (("--configfile", {"nargs": "*", "default": []}), ("--profile", {"default": None, "required": False}))),
    "provenance": ("provenance", "provenance", (("selector", {"nargs": "+", "metavar": "WORD",
                                                              "help": "a table or `figure`, an id, key=value filters"}),
                                                ("--results", {"default": "results", "required": False,
                                                               "help": "the folder of the Parquet tables"}),
                                                ("--json", {"action": "store_true", "required": False}))),
}
# the commands that import jax and levanter: run by a warm worker when Snakemake started a pool
JAX_COMMANDS = frozenset({"train", "evaluate", "cpt-evaluate", "cpt-ensemble", "sample"})
# the commands that use lm-eval; every other one hides it from levanter (runtime.env.hide_lm_eval)
LM_EVAL_COMMANDS = frozenset({"benchmark-requests", "results", "cpt-requests", "cpt-results", "memory-plan", "fetch-inputs"})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="infinite-compute", description=__doc__)
    p.add_argument("--threads", type=int, default=None, help="cores this job may use (Snakemake's {threads})")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, (module, fn, args) in COMMANDS.items():
        sp = sub.add_parser(name)
        for spec in args:
            flag, kw = spec if isinstance(spec, tuple) else (spec, {})
            kw = dict(kw)
            if flag.startswith("-"):
                kw["required"] = kw.get("required", not kw.get("nargs") == "*")
            sp.add_argument(flag, **kw)
        sp.set_defaults(module=module, fn=fn)
    return p


# commands whose output a reader reads: no INFO lines of the libraries they import
QUIET_COMMANDS = frozenset({"provenance"})


def main(argv: list[str] | None = None) -> None:
    a = parser().parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)  # a launcher (cli/train.py) runs the same command per rank
    logging.basicConfig(level=logging.WARNING if a.cmd in QUIET_COMMANDS else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if a.cmd in JAX_COMMANDS and (rc := worker.forward(sys.argv[1:] if argv is None else argv)) is not None:
        sys.exit(rc)  # run by a warm worker (runtime/worker.py), when Snakemake started a pool
    if a.cmd not in LM_EVAL_COMMANDS:
        hide_lm_eval()
    set_job_defaults(a.threads)
    getattr(importlib.import_module(f"{__name__}.{a.module}"), f"cmd_{a.fn}")(a)


def warm_up() -> None:
    """What every jax command imports, once per warm worker (cli/pool.py): their modules, and the
    model layer those import inside a command (cli/cpt.py, cli/distill.py)."""
    hide_lm_eval()  # as main does for these commands
    set_job_defaults()
    for module in sorted({COMMANDS[c][0] for c in JAX_COMMANDS}):
        importlib.import_module(f"{__name__}.{module}")
    for module in ("answers", "loop", "sampling", "scoring", "trainer"):
        importlib.import_module(f"..model.{module}", __package__)
