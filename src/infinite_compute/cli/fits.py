"""Commands of rules/fits.smk: the power-law fits, the data-efficiency multipliers and the claims scorecard."""

from __future__ import annotations

import json

from ..data.synthetic import loss_floor
from ..outputs.results import read_table, read_tables, with_provenance, write_table
from ..runtime.io import atomic_write_json
from ..science.analysis import compute_fits
from ..science.claims import scorecard


def cmd_fits(a) -> None:
    s = json.loads(a.settings)
    fits, eff = compute_fits(read_table(a.tuning), read_table(a.ensembles), data_scaling_models=s["data_scaling_models"],
                             n_bootstrap=s["bootstrap"], ci_level=s["ci_level"], seed=s["seed"])
    ch = s["config_hash"]
    write_table("fits", with_provenance(fits, ch), a.out_fits)
    write_table("efficiency", with_provenance(eff, ch), a.out_efficiency)
    atomic_write_json(a.out_json, {"fits": fits, "efficiency": eff})


def cmd_claims(a) -> None:
    """The claims scorecard from the result tables."""
    tables = read_tables(a.tables)
    with open(a.manifest) as f:
        source = json.load(f).get("synthetic")
    # a synthetic source's entropy sets the loss floor, in nats per token at the study's context
    floor = None if source is None else loss_floor(source["conditional_entropies"], a.seq_len,
                                                   source["document_symbols"])
    rows = scorecard(tables, a.baseline_wd, a.seed, floor, primary_task=a.primary_task)
    write_table("claims", with_provenance(rows, tables["runs"]["config_hash"].iloc[0]), a.out)
