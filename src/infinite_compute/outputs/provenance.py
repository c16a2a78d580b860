"""The runs behind a figure, a table row or a number of the paper, read from the result tables.

A selector names what a reader sees, in the tables' own words (`python -m infinite_compute
provenance --help`):

    fits kind=params recipe=regularized        the regularized L(N) fits: the selected run of each size
    ensembles reg-ens-n2-d8k K=3               that ensemble's 3-member row: its first 3 members
    tuning regularized-n2-d8k                  a search cell: its selected run, every run it trained, its reseeds
    efficiency recipe=regularized D=8k         a multiplier: its loss's runs and the baseline L(D)'s
    benchmarks reg-ens-n2-d8k:K=4 task=...     a model's (or ensemble's) accuracy
    claims C2                                  the rows its verdict reads (CLAIM_READS)
    figure params                              every row the figure reads

The first word is a table (or `figure`); a bare word is matched against the table's id column
(`ID_COLUMNS`), `key=value` against a column. K, N and D stand for ensemble_size,
non_embedding_params and token_budget, `kind` for a fit's `fit`; numbers compare as numbers, token
counts may be written 8k or 1m, and a list column matches when it holds the value. Each row is
followed to the runs it was computed from (`links`), and each run is looked up in the runs table for
its spec hash, config hash and code version. Pure functions of the tables: cli/provenance.py reads
the files and prints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pandas as pd

from ..science.analysis import ASYMPTOTE_LABELS
from ..study.specs import format_tokens


class ProvenanceError(ValueError):
    """A selector that names no table, column or row; the message says what exists."""


# the column a bare word of a selector is matched against
ID_COLUMNS = {
    "runs": "run_id", "tuning": "cell", "ensembles": "ensemble", "distillation": "distillation",
    "benchmarks": "model_id", "cpt": "model_id", "fits": "group", "cpt_fits": "group", "efficiency": "label",
    "claims": "claim",
}
TABLE_KINDS = tuple(ID_COLUMNS)
# the paper's letters, and `kind` for a fit's kind (params / ensemble / joint / data)
ALIASES = {"K": "ensemble_size", "N": "non_embedding_params", "D": "token_budget"}
TABLE_ALIASES = {"fits": {"kind": "fit"}, "cpt_fits": {"kind": "fit"}}
# what each figure reads, as selectors (outputs/figures.py: the tables and the kinds of row it filters)
FIGURE_READS: dict[str, tuple[str, ...]] = {
    "data": (),  # the corpus manifest and the token caches: no run
    "training": ("runs",),
    "epochs": ("tuning recipe=baseline", "tuning recipe=regularized"),
    "weight_decay": ("tuning recipe=regularized",),
    "params": ("fits kind=params",),
    "ensembles": ("ensembles", "fits kind=ensemble"),
    "joint": ("fits kind=joint", "fits kind=params recipe=regularized"),
    "asymptotes": ("fits kind=params", "fits kind=joint", "fits kind=ensemble"),
    "tokens": ("fits kind=params", "fits kind=joint", "fits kind=data", "efficiency"),
    "data_scaling": ("fits kind=data", "efficiency"),
    "efficiency": ("efficiency",),
    "distillation": ("distillation",),
    "benchmarks": ("benchmarks",),
    "cpt": ("cpt",),
    "claims": ("claims",),
    "floor": ("fits",),
}
# what each claim's verdict reads (science/claims.py); {budget} is the budget its quantities name. The
# seed noise it judges against is in the reseeds, which a tuning row and a fit's point lead to.
CLAIM_READS: dict[str, tuple[str, ...]] = {
    "C1": ("tuning recipe=baseline D={budget}", "tuning recipe=regularized D={budget}"),
    "C2": ("fits kind=params recipe=regularized D={budget}",),
    "C3": ("fits kind=params recipe=regularized D={budget}", "fits kind=joint D={budget}",
           "fits kind=ensemble D={budget}", "ensembles D={budget}"),
    "C4": ("fits kind=params recipe=regularized", "fits kind=joint", "fits kind=ensemble", "ensembles"),
    "C5": ("distillation", "ensembles"),
    "C6": ("benchmarks",),
    "C7": ("cpt",),
    "F1": ("fits kind=params", "fits kind=ensemble", "fits kind=joint"),
    "F2": ("fits kind=params recipe=regularized",),
}
_ENSEMBLE_K = re.compile(r"^(?P<name>.+):K=(?P<k>\d+)$")  # "<ensemble>:K=<k>" (fits, benchmarks, cpt)
_ENSEMBLE_LABEL = re.compile(r"^(?P<name>.+) \(K=(?P<k>\d+)\)$")  # "<ensemble> (K=<k>)" (efficiency)
_TOKENS = re.compile(r"^(?P<n>\d+)(?P<unit>[km])$")
# key=value with a column's name for key; other words are ids (`reg-ens-n2-d8k:K=4` is a model id)
_FILTER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SHOWN = ("fit", "recipe", "group", "token_budget", "ensemble_size", "task", "kind", "loss", "E", "E_ci_low",
          "E_ci_high", "status", "data_efficiency", "verdict", "student_loss", "accuracy")


@dataclasses.dataclass(frozen=True)
class Selector:
    table: str  # a table kind, or "figure"
    ident: str | None
    filters: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        return " ".join([self.table, *([self.ident] if self.ident else []), *(f"{k}={v}" for k, v in self.filters)])


@dataclasses.dataclass(frozen=True)
class Link:
    """A run a table row was computed from, and how (`via`: the path from the row to the run)."""

    run_id: str
    via: str


def parse_selector(words: list[str] | str) -> Selector:
    words = words.split() if isinstance(words, str) else list(words)
    if not words:
        raise ProvenanceError(f"an empty selector: name a table ({', '.join(TABLE_KINDS)}) or `figure <name>`")
    table, rest = words[0], words[1:]
    if table != "figure" and table not in ID_COLUMNS:
        raise ProvenanceError(f"'{table}' is not a table; the tables are {', '.join(TABLE_KINDS)}, "
                              f"and `figure <name>` selects a figure's rows")
    bare = [w for w in rest if not _FILTER.match(w)]
    if len(bare) > 1:
        raise ProvenanceError(f"{' '.join(words)}: one id at most (got {', '.join(bare)}); "
                              "filter other columns with key=value")
    filters = []
    for w in rest:
        if _FILTER.match(w):
            k, _, v = w.partition("=")
            if not v:
                raise ProvenanceError(f"'{w}': a filter is key=value")
            filters.append((k, v))
    return Selector(table, bare[0] if bare else None, tuple(filters))


def _column(table: str, key: str, df: pd.DataFrame) -> str:
    col = TABLE_ALIASES.get(table, {}).get(key) or ALIASES.get(key) or key
    if col not in df.columns:
        aliases = {**ALIASES, **TABLE_ALIASES.get(table, {})}
        known = ", ".join(c for c in df.columns if c not in ("config_hash", "code_version", "package_versions"))
        short = ", ".join(f"{a} for {c}" for a, c in aliases.items() if c in df.columns)
        raise ProvenanceError(f"{table} has no column '{key}'; its columns: {known}" + (f" ({short})" if short else ""))
    return col


def _number(text: str) -> float | None:
    """A number as a reader writes it: 0.01, 1e-3, or a token count 8k / 1m (as run ids write them)."""
    m = _TOKENS.match(text)
    if m:
        return float(int(m["n"]) << (10 if m["unit"] == "k" else 20))
    try:
        return float(text)
    except ValueError:
        return None


def _matches(value, text: str) -> bool:
    if isinstance(value, (list, tuple, np.ndarray)):
        return any(_matches(v, text) for v in value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return text in ("null", "none", "nan")
    if isinstance(value, (bool, np.bool_)):
        return text.lower() == str(bool(value)).lower()
    if isinstance(value, (int, float, np.integer, np.floating)):
        x = _number(text)
        return x is not None and bool(np.isclose(float(value), x, rtol=1e-9, atol=0.0))
    return str(value) == text


def _shown_values(df: pd.DataFrame, col: str, limit: int = 12) -> str:
    vals = []
    for v in df[col]:
        for x in (v if isinstance(v, (list, tuple, np.ndarray)) else [v]):
            s = format_tokens(int(x)) if col == "token_budget" and _is_number(x) else str(x)
            if s not in vals:
                vals.append(s)
    more = f", ... ({len(vals)} values)" if len(vals) > limit else ""
    return ", ".join(vals[:limit]) + more


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


def select_rows(sel: Selector, tables: dict[str, pd.DataFrame | None]) -> pd.DataFrame:
    """The rows of `sel.table` that match; no row, or no such table, is an error that says what exists."""
    df = tables.get(sel.table)
    if df is None:
        have = ", ".join(k for k in TABLE_KINDS if tables.get(k) is not None)
        raise ProvenanceError(f"no {sel.table} table: results/{sel.table}.parquet is missing (this study does not "
                              f"make it, or has not run yet); the tables here: {have or 'none'}")
    conditions = ([(ID_COLUMNS[sel.table], sel.ident)] if sel.ident else []) + list(sel.filters)
    masks = [df[_column(sel.table, key, df)].map(lambda v, t=text: _matches(v, t)).astype(bool)
             for key, text in conditions]
    mask = pd.Series(True, index=df.index)
    for m in masks:
        mask &= m
    if not mask.any():
        hints = []
        for i, (key, _) in enumerate(conditions):
            # the values this key takes among the rows the other conditions leave (all rows if none)
            others = pd.Series(True, index=df.index)
            for j, m in enumerate(masks):
                if j != i:
                    others &= m
            rows = df[others] if others.any() else df
            hints.append(f"{key} is one of: {_shown_values(rows, _column(sel.table, key, df))}")
        raise ProvenanceError(f"no row of {sel.table} matches `{sel}` ({len(df)} rows; "
                              f"{'; '.join(hints) or 'the table is empty'})")
    return df[mask]


# --- following a row to its runs -------------------------------------------------------------------


def _ensemble_members(name: str, k: int | None, tables: dict) -> list[str] | None:
    """The members of an ensemble's K-row (the largest K when `k` is None), from the ensembles table."""
    ens = tables.get("ensembles")
    if ens is None:
        return None
    g = ens[ens["ensemble"] == name]
    if k is not None:
        g = g[g["ensemble_size"] == k]
    if g.empty:
        return None
    return list(g.loc[g["ensemble_size"].idxmax(), "member_ids"])


def resolve_ref(ref: str, tables: dict, via: str) -> list[Link]:
    """What a reference in a table stands for: a run id, an ensemble's K members (`<name>:K=<k>`,
    `<name> (K=<k>)`), or an ensemble by name (all its members: what its L(K) fit read)."""
    runs = tables.get("runs")
    if runs is not None and ref in set(runs["run_id"]):
        return [Link(ref, via)]
    m = _ENSEMBLE_K.match(ref) or _ENSEMBLE_LABEL.match(ref)
    name, k = (m["name"], int(m["k"])) if m else (ref, None)
    members = _ensemble_members(name, k, tables)
    if members is not None:
        return [Link(r, f"{via} > ensemble {name} (K={len(members)}) member") for r in members]
    cpt = tables.get("cpt")
    if cpt is not None and ref in set(cpt["model_id"]):  # a CPT run or ensemble: not in the runs table
        return links("cpt", cpt[cpt["model_id"] == ref].iloc[0], tables, via)
    return [Link(ref, f"{via} (not found in runs or ensembles)")]


def _row_reseeds(row) -> list[str]:
    """A tuning row's reseeds: its selected recipe at other seeds, behind loss_mean and the seed noise
    (a table written before the column has none)."""
    return list(row["reseed_ids"]) if "reseed_ids" in row.index and row["reseed_ids"] is not None else []


def _reseeds_of_selections(tables: dict) -> dict[str, list[str]]:
    """A search's selected run -> its reseeds: a fit's point named by a selection is the mean of these
    (the selection chose the recipe and is left out of the mean, science/analysis.py)."""
    tuning = tables.get("tuning")
    if tuning is None:
        return {}
    pairs = ((r["run_id"], _row_reseeds(r)) for _, r in tuning.iterrows())
    return {rid: ids for rid, ids in pairs if ids}


def _fit_links(row, tables: dict, via: str) -> list[Link]:
    out = []
    letter = {c: a for a, c in ALIASES.items()}.get(row["x_name"], row["x_name"])  # the paper's N, K or D
    reseeds = _reseeds_of_selections(tables)
    for pid, x in zip(row["point_ids"], row["x"]):
        what = format_tokens(int(x)) if row["x_name"] == "token_budget" else f"{x:g}"
        point = f"{via} point {letter}={what}"
        if pid in reseeds:
            out += [Link(pid, f"{point} > selected (chose the recipe)")]
            out += [Link(r, f"{point} > reseed (in the mean)") for r in reseeds[pid]]
        else:
            out += resolve_ref(pid, tables, point)
    return out


def _fit_of_asymptote(row, fits: pd.DataFrame) -> pd.DataFrame:
    """The fits row whose E an efficiency row's asymptote label reads (science/analysis.compute_fits)."""
    for fit, label in ASYMPTOTE_LABELS.items():
        if row["label"] == label:
            return fits[(fits["fit"] == fit) & (fits["recipe"] == row["recipe"])
                        & (fits["token_budget"] == row["token_budget"])]
    if row["label"].endswith(" asymptote (K -> inf)"):
        return fits[(fits["fit"] == "ensemble") & (fits["group"] == row["label"][: -len(" asymptote (K -> inf)")])]
    return fits.iloc[0:0]


def _claim_links(row, tables: dict, via: str) -> list[Link]:
    """The runs of the rows a claim's verdict reads (CLAIM_READS), at the budget its quantities name."""
    q = json.loads(row["quantities"]) if row["quantities"] else {}
    out: list[Link] = []
    for text in CLAIM_READS.get(row["claim"], ()):
        if "{budget}" in text:
            text = text.format(budget=q["budget"]) if q.get("budget") is not None else text.replace(" D={budget}", "")
        sel = parse_selector(text)
        if tables.get(sel.table) is None:
            continue
        try:
            rows = select_rows(sel, tables)
        except ProvenanceError:  # e.g. no joint fit in a study without ensembles of a search
            continue
        for _, r in rows.iterrows():
            out += links(sel.table, r, tables, f"{via} > {sel.table} {row_label(sel.table, r)}")
    return out


def row_label(table: str, row) -> str:
    """A row as the paper would name it."""
    if table in ("fits", "cpt_fits"):
        return f"{row['fit']} {row['recipe']} {row['group']}"
    if table == "ensembles":
        return f"{row['ensemble']} K={row['ensemble_size']}"
    if table == "benchmarks":
        return f"{row['model_id']} {row['task']}"
    if table == "efficiency":
        return f"{row['recipe']} {row['label']} D={format_tokens(int(row['token_budget']))}"
    if table == "cpt":
        return f"{row['recipe']} {row['model_id']}"
    return str(row[ID_COLUMNS[table]])


def links(table: str, row, tables: dict, here: str | None = None) -> list[Link]:
    """The runs one row of `table` was computed from, each with the path that leads to it (from `here`)."""
    here = here or f"{table} {row_label(table, row)}"
    if table == "runs":
        return [Link(row["run_id"], here)]
    if table == "tuning":
        runs = tables["runs"]
        searched = runs[runs["searches"].map(lambda c: row["cell"] in c)]["run_id"]
        reseeds = _row_reseeds(row)
        return [Link(row["run_id"], f"{here} > selected")] + [
            Link(r, f"{here} > searched") for r in sorted(searched) if r != row["run_id"]] + [
            Link(r, f"{here} > reseed") for r in reseeds]
    if table == "ensembles":
        return [Link(r, f"{here} > member") for r in row["member_ids"]]
    if table in ("fits", "cpt_fits"):
        return _fit_links(row, tables, here)
    if table == "distillation":
        return ([Link(row["student_id"], f"{here} > student")]
                + resolve_ref(str(row["teacher"]), tables, f"{here} > teacher"))
    if table == "benchmarks":
        return resolve_ref(row["model_id"], tables, here)
    if table == "cpt":
        # (a table written before the column: the model id itself)
        members = list(row["member_ids"]) if "member_ids" in row.index else [row["model_id"]]
        return [Link(r, here + (" > member" if len(members) > 1 or r != row["model_id"] else "")) for r in members]
    if table == "efficiency":
        fits = tables.get("fits")
        out = []
        asym = _fit_of_asymptote(row, fits) if fits is not None else None
        if asym is not None and not asym.empty:
            for _, f in asym.iterrows():
                out += _fit_links(f, tables, f"{here} > fit {f['fit']} {f['recipe']} {f['group']}")
        else:
            out += resolve_ref(row["label"], tables, here)
        if fits is not None:  # every multiplier reads the baseline's L(D) and its loss at this budget
            for _, f in fits[fits["fit"] == "data"].iterrows():
                out += _fit_links(f, tables, f"{here} > baseline L(D)")
        return out
    if table == "claims":
        return _claim_links(row, tables, here)
    raise ProvenanceError(f"no provenance for table {table}")


# --- the answer ------------------------------------------------------------------------------------


def _value(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if math.isnan(v) else float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def provenance(words: list[str] | str, tables: dict[str, pd.DataFrame | None]) -> dict:
    """The selected rows and the runs behind them (each run once, with every path to it), as plain data:
    {"selector", "rows": [{table, row, config_hash, code_version, values}], "runs": [{run_id,
    spec_hash, config_hash, code_version, role, loss, via}]}."""
    sel = parse_selector(words)
    if sel.table == "figure":
        if sel.ident not in FIGURE_READS:
            raise ProvenanceError(f"no figure '{sel.ident}'; the figures: {', '.join(FIGURE_READS)}")
        selectors = [parse_selector(s) for s in FIGURE_READS[sel.ident]]
    else:
        selectors = [sel]
    rows, found = [], {}
    for s in selectors:
        if sel.table == "figure" and tables.get(s.table) is None:
            continue  # a figure drawn without that table (a study with no CPT stage, say)
        for _, row in select_rows(s, tables).iterrows():
            rows.append({"table": s.table, "row": row_label(s.table, row),
                         "config_hash": row.get("config_hash"), "code_version": row.get("code_version"),
                         "values": {c: _value(row[c]) for c in _SHOWN if c in row.index}})
            for link in links(s.table, row, tables):
                found.setdefault(link.run_id, []).append(link.via)
    known = _run_info(tables)
    out_runs = [{"run_id": rid, **known.get(rid, dict.fromkeys(("spec_hash", "config_hash", "code_version", "role",
                                                                  "loss"))),
                 "via": list(dict.fromkeys(vias))} for rid, vias in found.items()]
    return {"selector": str(sel), "rows": rows, "runs": out_runs}


def _run_info(tables: dict) -> dict[str, dict]:
    """run id -> its spec hash, config hash, code version, role and loss: from the runs table, and for
    CPT runs (not in it) from their own rows of the CPT table; an ensemble's other CPT members have none."""
    out: dict[str, dict] = {}
    cpt = tables.get("cpt")
    if cpt is not None and "spec_hash" in cpt.columns:
        for _, r in cpt[cpt["spec_hash"].notna()].iterrows():
            out[r["model_id"]] = {"spec_hash": r["spec_hash"], "config_hash": r["config_hash"],
                                  "code_version": r["code_version"], "role": f"cpt {r['recipe']}",
                                  "loss": _value(r["loss"])}
    runs = tables.get("runs")
    if runs is not None:
        for _, r in runs.iterrows():
            out[r["run_id"]] = {"spec_hash": r.get("spec_hash"), "config_hash": r["config_hash"],
                                "code_version": r["code_version"], "role": r["role"], "loss": _value(r["loss"])}
    return out


def render(answer: dict) -> str:
    """The answer as a reader's text: the rows, then one line per run."""
    lines = [f"provenance {answer['selector']}: {len(answer['rows'])} row(s), {len(answer['runs'])} run(s)", ""]
    for r in answer["rows"]:
        vals = "  ".join(f"{k}={_fmt(v)}" for k, v in r["values"].items() if v is not None)
        lines.append(f"  {r['table']} {r['row']}  [config {r['config_hash']}, code {r['code_version']}]")
        if vals:
            lines.append(f"      {vals}")
    if not answer["runs"]:
        return "\n".join(lines + ["  no run: " + ("these rows are not computed from trained runs" if answer["rows"]
                                                   else "this figure reads no row of the tables")])
    cols = ("run_id", "spec_hash", "config_hash", "code_version", "role", "loss")
    table = [[_fmt(run[c]) for c in cols] for run in answer["runs"]]
    widths = [max([len(c)] + [len(t[i]) for t in table]) for i, c in enumerate(cols)]
    lines += ["", "  ".join(c.ljust(w) for c, w in zip(cols, widths)) + "  via"]
    indent = " " * (sum(widths) + 2 * len(widths))
    for run, t in zip(answer["runs"], table):
        lines.append("  ".join(v.ljust(w) for v, w in zip(t, widths)) + "  " + run["via"][0])
        for v in run["via"][1:SHOWN_PATHS]:
            lines.append(indent + v)
        if len(run["via"]) > SHOWN_PATHS:  # a run behind many rows (an ensemble's member at each K)
            lines.append(indent + f"... and {len(run['via']) - SHOWN_PATHS} more (--json lists them)")
    return "\n".join(lines)


SHOWN_PATHS = 2  # paths to one run shown in the text


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
