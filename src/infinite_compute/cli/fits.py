"""Commands of rules/fits.smk: the power-law fits and the data-efficiency multipliers."""

from __future__ import annotations

import json

from ..outputs.results import read_table, with_provenance, write_table
from ..runtime.io import atomic_write_json
from ..science.analysis import compute_fits


def cmd_fits(a) -> None:
    s = json.loads(a.settings)
    fits, eff = compute_fits(read_table(a.tuning), read_table(a.ensembles), data_scaling_models=s["data_scaling_models"],
                             n_bootstrap=s["bootstrap"], ci_level=s["ci_level"], seed=s["seed"])
    ch = s["config_hash"]
    write_table("fits", with_provenance(fits, ch), a.out_fits)
    write_table("efficiency", with_provenance(eff, ch), a.out_efficiency)
    atomic_write_json(a.out_json, {"fits": fits, "efficiency": eff})
