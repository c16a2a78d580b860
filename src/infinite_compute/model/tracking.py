"""A run's W&B logging through levanter's tracker (`levanter.tracker.wandb.WandbTracker`), for both
engines. Run name and id = the run id; group = its recipe (the run id without its seed: the seeds of
one recipe, an ensemble's members, share it); tags = its data, role and the config's tags; config =
its spec, with levanter's keys beside it (`trainer.num_train_steps`, `trainer.train_batch_size`,
`model.seq_len`) so that the importer (outputs/imported.py) reads it as it reads the paper's runs.

Logging never costs a run: offline mode needs no network or login; a failure to start, log or
finish is a warning and the run trains on without it. The run's files go to `dir` (results/wandb),
inside the project; `wandb sync results/wandb/wandb/offline-run-*` uploads them later."""

from __future__ import annotations

import logging
import os

from ..study.specs import RunSpec, recipe_of

logger = logging.getLogger(__name__)


def wandb_config(spec: RunSpec) -> dict:
    """What a run logs as its config: the spec whole ("study"), and levanter's keys for it."""
    d = spec.to_dict()
    return {"study": d, "trainer": {"num_train_steps": spec.num_train_steps, "train_batch_size": spec.batch_size,
                                    "seed": spec.seed},
            "model": {**d["model"], "seq_len": spec.model.seq_len},
            "optimizer": {"learning_rate": spec.learning_rate, "weight_decay": spec.weight_decay, **spec.optimizer}}


def group_of(spec: RunSpec) -> str:
    return recipe_of(spec.run_id)


def role_of(spec: RunSpec) -> str:
    return "cpt" if spec.init_from else "student" if spec.teacher else "pretraining"


def tags_of(spec: RunSpec, settings: dict) -> list[str]:
    """A run's tags: its data ("d8192", "distill", "math"), its role and the config's `logging.wandb_tags`."""
    return [spec.data.split("/")[0], role_of(spec), *settings.get("tags", [])]


def tracker_summary(metrics: dict) -> dict:
    """A finished run's summary (from its metrics.json): what the importer reads beside the history."""
    return {"parameter_count": metrics["parameter_count"], "non_embedding_params": metrics["non_embedding_params"],
            "throughput/total_tokens": metrics["tokens_seen"], "throughput/total_gflops": metrics["flops"] / 1e9,
            "wall_seconds": metrics["wall_seconds"], "eval/loss": metrics["final_eval_loss"]}


def start_service() -> None:
    """Start this process's wandb service (wandb-core), once, with its standard streams on /dev/null.
    wandb spawns it at a process's first wandb.init with the process's stdio: in a warm worker those
    are the first logging job's own (its client's pipes, its log file), which the service would then
    hold open for the worker's life, so that the job's caller never sees them close."""
    import sys

    import wandb

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        wandb.setup().ensure_service()
    finally:
        for fd, copy in zip((0, 1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(null)


class Tracker:
    """levanter's WandbTracker for one run, or nothing when logging is off or cannot start."""

    def __init__(self, spec: RunSpec, settings: dict | None):
        self.tracker = None
        if not settings or not settings.get("enabled"):
            return
        try:
            import wandb
            from levanter.tracker.wandb import WandbTracker

            start_service()
            # lean settings: no code, git, system stats or console capture (each costs a run seconds)
            lean = wandb.Settings(silent=True, console="off", x_disable_stats=True, disable_code=True,
                                  disable_git=True, x_disable_meta=True, save_code=False, init_timeout=60)
            run = wandb.init(project=settings["project"], entity=settings.get("entity"), name=spec.run_id,
                             id=spec.run_id, group=group_of(spec), resume="allow", mode=settings["mode"],
                             dir=settings["dir"], tags=tags_of(spec, settings),
                             settings=lean, anonymous="never", reinit="finish_previous")
            self.tracker = WandbTracker(run)
            self.tracker.log_hyperparameters(wandb_config(spec))
        except Exception as e:  # noqa: BLE001 - logging is never a reason for a run to fail
            logger.warning("W&B logging is off for %s: %s: %s", spec.run_id, type(e).__name__, e)
            self.tracker = None

    @property
    def active(self) -> bool:
        return self.tracker is not None

    def _call(self, what: str, *args, **kwargs) -> None:
        if self.tracker is None:
            return
        try:
            getattr(self.tracker, what)(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            logger.warning("W&B %s failed (%s: %s); logging stops for this run", what, type(e).__name__, e)
            self.tracker = None

    def log(self, metrics: dict, step: int) -> None:
        self._call("log", metrics, step=step)

    def summary(self, metrics: dict) -> None:
        self._call("log_summary", metrics)

    def finish(self) -> None:
        self._call("finish")
