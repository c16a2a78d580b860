"""Commands of rules/ensemble.smk: an ensemble's loss for K = 1..members from its members' log-probs."""

from __future__ import annotations

import json

import numpy as np

from ..runtime.io import atomic_write_json
from ..science.ensemble import ensemble_loss_curve


def cmd_ensemble(a) -> None:
    val = np.stack([np.load(p)["validation"] for p in a.logprobs])
    curve = ensemble_loss_curve(val, seed=a.seed)
    for row in curve:
        row["subsets"] = [list(map(int, s)) for s in row["subsets"]]
    atomic_write_json(a.out, {"ensemble": a.name, "members": a.member_ids, "info": json.loads(a.info), "curve": curve})
