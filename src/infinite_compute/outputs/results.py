"""Parquet result tables with declared pyarrow schemas, and the provenance every row carries."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from importlib import metadata

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..runtime.io import atomic_path

PROVENANCE = [
    pa.field("config_hash", pa.string()),
    pa.field("code_version", pa.string()),
    pa.field("package_versions", pa.string()),
]

SCHEMAS: dict[str, pa.Schema] = {
    "runs": pa.schema(
        [
            pa.field("run_id", pa.string()),
            # study.specs.spec_hash of the spec that trained it (null: an imported run named, not specified)
            pa.field("spec_hash", pa.string()),
            pa.field("role", pa.string()),  # search / sweep / member / reseed / teacher / student
            pa.field("sweeps", pa.list_(pa.string())),
            pa.field("searches", pa.list_(pa.string())),  # search cells that trained this run
            pa.field("ensembles", pa.list_(pa.string())),
            pa.field("model", pa.string()),
            pa.field("non_embedding_params", pa.int64()),
            pa.field("parameter_count", pa.int64()),
            pa.field("token_budget", pa.int64()),
            pa.field("epochs", pa.int64()),
            pa.field("learning_rate", pa.float64()),
            pa.field("weight_decay", pa.float64()),
            pa.field("seed", pa.int64()),
            pa.field("batch_size", pa.int64()),
            pa.field("seq_len", pa.int64()),
            pa.field("num_train_steps", pa.int64()),
            pa.field("tokens_seen", pa.int64()),
            pa.field("flops", pa.float64()),
            pa.field("wall_seconds", pa.float64()),
            pa.field("tokens_per_second", pa.float64()),
            pa.field("train_eval_loss", pa.float64()),  # levanter's last in-training eval
            pa.field("loss", pa.float64()),  # our evaluation of the exported weights
            pa.field("diverged", pa.bool_()),
            pa.field("data", pa.string()),
            pa.field("teacher", pa.string()),
            pa.field("synthetic_share", pa.float64()),
            pa.field("eval_curve", pa.string()),  # JSON [{"step", "loss"}]
            *PROVENANCE,
        ]
    ),
    "tuning": pa.schema(
        [
            pa.field("cell", pa.string()),  # one (search, model, token budget)
            pa.field("search", pa.string()),
            pa.field("recipe", pa.string()),  # baseline / regularized
            pa.field("model", pa.string()),
            pa.field("non_embedding_params", pa.int64()),
            pa.field("token_budget", pa.int64()),
            pa.field("run_id", pa.string()),  # the selected run
            pa.field("loss", pa.float64()),  # the selected run's, which chose it: biased low (see loss_mean)
            pa.field("learning_rate", pa.float64()),
            pa.field("weight_decay", pa.float64()),
            pa.field("epochs", pa.int64()),
            pa.field("status", pa.string()),  # certified / edge / round_limit
            pa.field("certified", pa.bool_()),  # every neighbour trained, none lower
            pa.field("edges", pa.list_(pa.string())),  # e.g. "weight_decay up": no neighbour there
            pa.field("on_grid", pa.bool_()),  # False: the optimum is on an extension of the grid
            pa.field("rounds", pa.int64()),
            pa.field("n_trained", pa.int64()),
            pa.field("neighbours", pa.string()),  # JSON [{axis, direction, run_id, loss}]
            # the seed noise of the selected recipe (rows.seed_noise_columns), from its reseeds only: its
            # hyperparameters trained again with seeds selected_seed+1 .. (config tuning.searches[].reseeds)
            pa.field("selected_seed", pa.int64()),
            pa.field("reseed_ids", pa.list_(pa.string())),
            pa.field("reseed_losses", pa.list_(pa.float64())),  # our evaluation, as the runs table's loss
            pa.field("loss_mean", pa.float64()),  # the recipe's unbiased loss (nan: no reseed)
            pa.field("seed_sd", pa.float64()),  # sd of reseed_losses, ddof 1 (nan: fewer than 2)
            pa.field("pooled_sd", pa.float64()),  # seed_sd pooled over the cells of this recipe and budget
            pa.field("pooled_df", pa.int64()),  # its degrees of freedom, sum of (n_i - 1)
            pa.field("loss_se", pa.float64()),  # pooled_sd / sqrt(reseeds of this cell)
            pa.field("winner_bias", pa.float64()),  # loss - loss_mean: the winner's curse of the selection
            *PROVENANCE,
        ]
    ),
    "ensembles": pa.schema(
        [
            pa.field("ensemble", pa.string()),
            pa.field("recipe", pa.string()),  # "fixed" (config `ensembles`) or its `ensemble_recipes` name
            pa.field("cell", pa.string()),  # the search cell whose selected run defines the members
            pa.field("model", pa.string()),
            pa.field("non_embedding_params", pa.int64()),
            pa.field("token_budget", pa.int64()),
            pa.field("epochs", pa.int64()),
            pa.field("learning_rate", pa.float64()),
            pa.field("weight_decay", pa.float64()),
            pa.field("ensemble_size", pa.int64()),
            pa.field("member_ids", pa.list_(pa.string())),
            pa.field("loss", pa.float64()),  # members 0..K-1
            pa.field("loss_mean", pa.float64()),  # over member subsets of size K
            pa.field("loss_std", pa.float64()),
            pa.field("n_subsets", pa.int64()),
            *PROVENANCE,
        ]
    ),
    "distillation": pa.schema(
        [
            pa.field("distillation", pa.string()),
            pa.field("teacher_kind", pa.string()),
            pa.field("teacher", pa.string()),
            pa.field("teacher_size", pa.int64()),
            pa.field("teacher_loss", pa.float64()),
            pa.field("single_model_loss", pa.float64()),  # a single model of the teacher's recipe
            pa.field("student_id", pa.string()),
            pa.field("student_loss", pa.float64()),
            pa.field("synthetic_share", pa.float64()),
            pa.field("teacher_tokens", pa.int64()),
            pa.field("fraction_of_gain_kept", pa.float64()),
            *PROVENANCE,
        ]
    ),
    "benchmarks": pa.schema(
        [
            pa.field("model_id", pa.string()),
            pa.field("kind", pa.string()),  # run / ensemble
            pa.field("family", pa.string()),
            pa.field("task", pa.string()),
            pa.field("loss", pa.float64()),
            pa.field("acc", pa.float64()),
            pa.field("acc_stderr", pa.float64()),
            pa.field("acc_norm", pa.float64()),
            pa.field("acc_norm_stderr", pa.float64()),
            pa.field("n_items", pa.int64()),
            pa.field("chance", pa.float64()),
            *PROVENANCE,
        ]
    ),
    "cpt": pa.schema(
        [
            pa.field("recipe", pa.string()),  # default / small-batch / regularized / ensemble
            pa.field("model_id", pa.string()),  # a run id, or "<run>:K=<k>" for an ensemble
            pa.field("spec_hash", pa.string()),  # a run's (study.specs.spec_hash); null for an ensemble
            pa.field("member_ids", pa.list_(pa.string())),  # the run, or the ensemble's first K members
            pa.field("base_cell", pa.string()),  # the search cell whose selected run CPT starts from, if any
            pa.field("base", pa.string()),  # what CPT starts from: that cell, or hf:<dir> (cpt.base.hf)
            pa.field("model", pa.string()),
            pa.field("token_budget", pa.int64()),  # math tokens
            pa.field("epochs", pa.int64()),
            pa.field("learning_rate", pa.float64()),
            pa.field("weight_decay", pa.float64()),
            pa.field("batch_size", pa.int64()),
            pa.field("ensemble_size", pa.int64()),
            pa.field("selected", pa.bool_()),  # the regularized weight decay selected (and its ensemble)
            pa.field("loss", pa.float64()),  # held-out math loss
            pa.field("accuracy", pa.float64()),  # exact-match answers, greedy
            pa.field("accuracy_stderr", pa.float64()),
            pa.field("n_questions", pa.int64()),
            # lm-eval's mean acc over cpt.tasks (NaN: none named) and its metrics per task (JSON)
            pa.field("benchmark_accuracy", pa.float64()),
            pa.field("benchmarks", pa.string()),
            pa.field("effective_tokens", pa.float64()),  # D_eff under the default recipe's math L(D)
            pa.field("data_efficiency", pa.float64()),
            pa.field("data_efficiency_ci_low", pa.float64()),
            pa.field("data_efficiency_ci_high", pa.float64()),
            *PROVENANCE,
        ]
    ),
    "fits": pa.schema(
        [
            pa.field("fit", pa.string()),  # params (L(N)) / ensemble (L(K)) / joint (E_K over N) / data (L(D))
            pa.field("recipe", pa.string()),
            pa.field("group", pa.string()),
            pa.field("model", pa.string()),  # L(K) fits: the members' model; else null
            pa.field("non_embedding_params", pa.int64()),  # L(K) fits; else null
            pa.field("token_budget", pa.int64()),  # null for L(D)
            pa.field("x_name", pa.string()),
            pa.field("x", pa.list_(pa.float64())),
            pa.field("y", pa.list_(pa.float64())),
            pa.field("point_ids", pa.list_(pa.string())),
            pa.field("A", pa.float64()),
            pa.field("alpha", pa.float64()),
            pa.field("E", pa.float64()),
            pa.field("A_stderr", pa.float64()),
            pa.field("alpha_stderr", pa.float64()),
            pa.field("E_stderr", pa.float64()),
            pa.field("A_ci_low", pa.float64()),
            pa.field("A_ci_high", pa.float64()),
            pa.field("alpha_ci_low", pa.float64()),
            pa.field("alpha_ci_high", pa.float64()),
            pa.field("E_ci_low", pa.float64()),
            pa.field("E_ci_high", pa.float64()),
            pa.field("ci_level", pa.float64()),
            pa.field("n_points", pa.int64()),
            pa.field("status", pa.string()),  # ok / too few points / failed / misfit / flat / no asymptote: ...
            # each point's standard error (null: the noise was not measured and the fit estimated it from
            # its residuals: noise "residuals"); CIs are profile likelihood, a nan end is not determined
            pa.field("y_se", pa.list_(pa.float64())),
            pa.field("noise", pa.string()),  # measured / residuals
            pa.field("noise_df", pa.float64()),  # degrees of freedom of the errors (inf: known)
            pa.field("gof_chi2", pa.float64()),  # goodness of fit: chi-square in units of the errors
            pa.field("gof_dof", pa.int64()),
            pa.field("gof_p", pa.float64()),
            *PROVENANCE,
        ]
    ),
    "efficiency": pa.schema(
        [
            pa.field("recipe", pa.string()),
            pa.field("label", pa.string()),
            pa.field("token_budget", pa.int64()),
            pa.field("loss", pa.float64()),
            pa.field("baseline_loss", pa.float64()),
            pa.field("loss_se", pa.float64()),  # the losses' standard errors (nan: not measured)
            pa.field("baseline_loss_se", pa.float64()),
            pa.field("effective_tokens", pa.float64()),
            pa.field("data_efficiency", pa.float64()),
            pa.field("data_efficiency_ci_low", pa.float64()),  # L(D)'s bootstrap refits x the loss's own CI (asymptotes)
            pa.field("data_efficiency_ci_high", pa.float64()),
            *PROVENANCE,
        ]
    ),
    # the claims scorecard (science/claims.py): one row per claim of the paper
    "claims": pa.schema(
        [
            pa.field("claim", pa.string()),  # C1 ... C7
            pa.field("statement", pa.string()),
            pa.field("criterion", pa.string()),  # with this study's thresholds and budget filled in
            pa.field("verdict", pa.string()),  # reproduced / not reproduced / not determined
            pa.field("reason", pa.string()),
            pa.field("quantities", pa.string()),  # JSON: what the verdict was judged on, CIs included
            *PROVENANCE,
        ]
    ),
}

PACKAGES = ("levanter", "haliax", "jax", "jaxlib", "snakemake", "lmfit", "pandas", "pyarrow", "numpy", "tokenizers")


@functools.lru_cache(maxsize=None)
def package_versions() -> str:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return json.dumps(out, sort_keys=True)


@functools.lru_cache(maxsize=None)
def code_version(path: str = ".") -> str:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=path,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def with_provenance(rows: list[dict], config_hash: str) -> list[dict]:
    prov = {"config_hash": config_hash, "code_version": code_version(), "package_versions": package_versions()}
    return [{**r, **prov} for r in rows]


def to_table(kind: str, rows: list[dict]) -> pa.Table:
    """Rows as a table of the declared schema (a missing or extra column is an error)."""
    schema = SCHEMAS[kind]
    for r in rows:
        missing = set(schema.names) - set(r)
        extra = set(r) - set(schema.names)
        if missing or extra:
            raise ValueError(f"{kind} row {r.get(schema.names[0])}: missing {sorted(missing)}, unexpected {sorted(extra)}")
    return pa.Table.from_pylist(rows, schema=schema)


def write_table(kind: str, rows: list[dict], path: str) -> None:
    table = to_table(kind, rows)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def kind_of(path: str) -> str:
    """A table's kind from its file name: results/runs.parquet -> "runs"."""
    return os.path.basename(path)[: -len(".parquet")]


def write_tables(tables: dict[str, list[dict]], config_hash: str, paths: list[str]) -> None:
    """Each kind's rows, with provenance, to the one of `paths` named for it."""
    outs = {kind_of(p): p for p in paths}
    for kind, rows in tables.items():
        write_table(kind, with_provenance(rows, config_hash), outs[kind])


def read_table(path: str) -> pd.DataFrame:
    # one open file: pyarrow given a path opens it more than once, and a table replaced (renamed onto
    # the path) in between would mix two versions (measured: "Invalid column metadata")
    with open(path, "rb") as f:
        try:
            return pq.read_table(f).to_pandas()
        except pa.ArrowInvalid as e:  # pyarrow's message does not say which file
            raise ValueError(f"{path}: not a readable Parquet table ({e})") from e


TABLES = ("runs", "ensembles", "distillation", "benchmarks", "tuning", "fits", "efficiency")
OPTIONAL_TABLES = ("cpt", "cpt_fits")  # only in a study with a CPT stage
SCORECARD = "claims"  # the claims scorecard: read beside the tables by the figures and the paper


def read_tables(paths: list[str]) -> dict:
    """The result tables at `paths` by kind (the file's name: runs.parquet -> "runs"); every kind of
    TABLES must be there, and the optional ones are None when the study does not make them."""
    t = {kind_of(p): read_table(p) for p in paths}
    missing = [k for k in TABLES if k not in t]
    if missing:
        raise ValueError(f"result tables {missing} are not among {paths}")
    for k in (*OPTIONAL_TABLES, SCORECARD):
        t.setdefault(k, None)
    return t
