"""A small W&B project in the paper's naming grammar, written as real offline runs by wandb itself,
with losses from known laws, for the importer's tests (tests/test_wandb.py) and its workflow test.

Per size (150m4k, 300m4k, 600m4k, 1_4b4k; the paper fits on their nominal sizes) and one epoch of
209,715,200 tokens (800 steps of 64 x 4096): a grid of wd {0.1, 0.8, 1.6} x epochs {4, 8, 16} at
lr 0.003, with the final loss

    L = E + A / N^alpha + C_WD * log2(wd / 0.8)^2 + C_EP * log2(epochs / 8)^2     (N in billions)

so every regularized cell's optimum (wd 0.8, 8 epochs) is certified and its L(N) is the power law
(A, alpha, E) exactly; the baseline cells (wd 0.1) select 8 epochs. Per size, 4 seed runs of the
ensemble recipe (16 epochs, wd 0.4; `-ts{k}-ds{k}`) and its evaluations at K = 1..4
(`ppl-eval-ensemble-{K}x-<member>`), with L(K) = E_K + B_K / K where E_K follows its own law over N.
Beside them, the runs the import must report and skip: a name outside the grammar, a run with no
eval loss, a crashed run, and a run tagged `ignore`."""

from __future__ import annotations

import math
import os
import shutil

from infinite_compute.outputs.wandb_files import WandbFileError, read_run
from infinite_compute.study.paper_names import build_name

SIZES = {"150m4k": 0.15, "300m4k": 0.3, "600m4k": 0.6, "1_4b4k": 1.4}
TOKENS, STEPS, BATCH, SEQ = 209_715_200, 800, 64, 4096
WDS, EPOCHS, LR = (0.1, 0.8, 1.6), (4, 8, 16), 0.003
A, ALPHA, E = 0.5, 0.6, 3.0
C_WD, C_EP = 0.02, 0.03
ENS_A, ENS_ALPHA, ENS_E, ENS_B = 0.4, 0.6, 2.9, 0.2  # E_K(N) = ENS_E + ENS_A / N^ENS_ALPHA; L(K) = E_K + ENS_B / K
SEED_SD = (-0.006, 0.002, 0.004, -0.001)  # member k's offset from the mean member
KS = (1, 2, 3, 4)
TAG = "data-scaling-laws-6-10"
BAD = ("not-a-paper-name", "150m4k-209Mx4-dclm-cos-lr0.0030-wd0.20-bs64", "150m4k-209Mx4-dclm-cos-lr0.0030-wd0.40",
       "150m4k-209Mx2-dclm-cos-lr0.0030-wd0.10")  # unparseable; no eval loss; crashed; tagged ignore


def grid_loss(n: float, wd: float, epochs: int) -> float:
    return E + A / n**ALPHA + C_WD * math.log2(wd / 0.8) ** 2 + C_EP * math.log2(epochs / 8) ** 2


def ensemble_loss(n: float, k: int) -> float:
    return ENS_E + ENS_A / n**ENS_ALPHA + ENS_B / k


def _config(epochs: int) -> dict:
    return {"trainer": {"num_train_steps": STEPS * epochs, "train_batch_size": BATCH, "seed": 0},
            "model": {"seq_len": SEQ}, "optimizer": {"learning_rate": LR}}


def write_project(root: str, sizes: dict = SIZES) -> list[str]:
    """The project's runs under `root`/wandb/offline-run-*; returns their names (the skipped included)."""
    import wandb

    os.environ["WANDB_SILENT"] = "true"
    settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, disable_code=True,
                              disable_git=True, x_disable_meta=True, save_code=False)
    names = []

    def run(name, config, loss, tags=(TAG,), steps=(0, 1), crash=False):
        # wandb's offline writer, on a machine under full load, now and then leaves a run file without
        # its run record (seen in 2 of some 40 test runs on 2 busy cores): such a file is written again,
        # so that the tests read what wandb logs when it logs, and the reader's own error on a broken
        # file is tested where it is meant to be (test_wandb's bad-file tests)
        for attempt in range(3):
            r = wandb.init(project="paper-like", name=name, dir=root, mode="offline", config=config,
                           tags=list(tags), settings=settings, reinit="finish_previous")
            for s in steps:
                r.log({"train/loss": 4.0 - 0.1 * s}, step=s)
            if loss is not None:
                r.log({"eval/dclm/loss": loss + 0.05}, step=steps[-1] + 1)  # an earlier eval: the curve
                r.log({"eval/dclm/loss": loss}, step=steps[-1] + 2)
            r.summary["parameter_count"] = int(sizes.get(name.split("-")[0], 0.1) * 1.1e9)
            run_dir = os.path.dirname(r.dir)
            r.finish(exit_code=1 if crash else 0)
            try:
                read_run(os.path.join(run_dir, f"run-{r.id}.wandb"))
                break
            except WandbFileError:
                if attempt == 2:
                    raise
                shutil.rmtree(run_dir)
        names.append(name)

    for model, n in sizes.items():
        for wd in WDS:
            for ep in EPOCHS:
                run(build_name(model, TOKENS, ep, "dclm", LR, wd, "-bs64"), _config(ep), grid_loss(n, wd, ep))
        member = build_name(model, TOKENS, 16, "dclm", LR, 0.4)
        mean1 = ensemble_loss(n, 1)
        for k, off in enumerate(SEED_SD):
            run(f"{member}-ts{k}-ds{k}", _config(16), mean1 + off)
        for k in KS:  # an evaluation job's config: its own steps, not its members'
            run(f"ppl-eval-ensemble-{k}x-{member}-ts0-ds0", {**_config(1), "trainer": {"num_train_steps": 1}},
                ensemble_loss(n, k))
    run(BAD[0], _config(4), 3.5)
    run(BAD[1], _config(4), None)
    run(BAD[2], _config(4), 3.6, crash=True)
    run(BAD[3], _config(2), 3.7, tags=(TAG, "ignore"))
    return names
