"""Commands of rules/train.smk (and the CPT runs of rules/cpt.smk): train one run with its engine."""

from __future__ import annotations

import json

from ..model import loop, trainer
from ..study.specs import RunSpec


def cmd_train(a) -> None:
    spec = RunSpec.from_dict(json.loads(a.spec))
    settings = json.loads(a.settings)
    common = dict(cache_dir=a.cache, tokenizer_dir=a.tokenizer, out_dir=a.out, checkpoint_root=a.checkpoints,
                  evals_per_run=settings["evals_per_run"], checkpoint_minutes=settings["checkpoint_minutes"],
                  wandb=settings.get("wandb"), init_from=a.init_from)
    if settings["engine"] == "loop":
        metrics = loop.train(spec, **common)
    else:
        metrics = trainer.train(spec, **common, trainer=settings.get("trainer"))
    print(json.dumps({k: metrics[k] for k in ("run_id", "final_eval_loss", "wall_seconds", "tokens_per_second")}))
