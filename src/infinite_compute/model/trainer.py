"""The `trainer` engine: one run of the plan with levanter's own `train_lm` and `Trainer`, in-process,
on every device of its world (model/distributed.py: one process, or several joined by
`jax.distributed`), with the mesh, sharding and mixed precision the config asks for
(`training.sharding`, `training.levanter`).

Its outputs and resumable state are those of engine.py, as for the loop engine; its step records
are levanter's json_logger records, converted to engine.StepRecord as they are logged. In a world of
several processes every rank trains and writes its shards of each checkpoint; rank 0 alone records
the steps, exports the model and publishes the run's outputs, once every rank has finished.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import math
import os
import pathlib
import time
from datetime import timedelta

import jax
import jmp
import levanter.main.train_lm as train_lm
from jax.experimental import multihost_utils
from levanter.callbacks.watch import WatchConfig
from levanter.checkpoint import CheckpointerConfig
from levanter.data.text import UrlSingleDatasetLMConfig
from levanter.distributed import DistributedConfig, RayConfig
from levanter.main.train_lm import TrainLmConfig
from levanter.tracker.json_logger import JsonLoggerConfig
from levanter.trainer import TrainerConfig

from ..data.tokenizer import load_tokenizer
from ..runtime.launch import World, world_of_env
from ..study.specs import RunSpec
from .distributed import describe_mesh, join, mesh_settings
from .engine import (
    StepRecords,
    adamw_config,
    check_init_from,
    process_start,
    publish,
    state_dir,
    step_record_of_levanter,
    summarise,
)
from .shapes import llama_config
from .tracking import group_of, start_service, tags_of, wandb_config

logger = logging.getLogger(__name__)


class _MetricsCollector(logging.Handler):
    """Collects levanter's json_logger records (one per logged step) as StepRecords, and its summary
    (the parameter count, logged again by a resumed run)."""

    def __init__(self, path: str):
        super().__init__(logging.INFO)
        self.records = StepRecords(path)
        self.summary: dict = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            rec = json.loads(record.getMessage())
        except (json.JSONDecodeError, TypeError):
            return
        if not isinstance(rec, dict):
            return
        if rec.get("event") == "summary":
            self.summary.update(rec["metrics"])
        elif rec.get("event") == "log" and rec.get("step") is not None:
            step = step_record_of_levanter(rec["step"], record.created, rec["metrics"])
            if step is not None:
                self.records.add(step)
                self.records.flush()

    def close(self) -> None:
        self.records.close()
        super().close()


def levanter_config(
    spec: RunSpec,
    *,
    cache_dir: str,
    tokenizer_dir: str,
    checkpoint_dir: str,
    export_dir: str,
    evals_per_run: int,
    checkpoint_minutes: float,
    wandb: dict | None,
    init_from: str | None = None,
    trainer: dict | None = None,
):
    """The `TrainLmConfig` of one run: the paper's AdamW recipe, cosine to `min_lr_ratio`;
    `trainer` overrides levanter's TrainerConfig for accelerators (mesh, precision, parallelism)."""

    m = spec.model
    trackers: list = [JsonLoggerConfig()]
    if wandb and wandb.get("enabled"):
        trackers.append(study_wandb_config(spec, wandb))
    steps = spec.num_train_steps
    overrides = dict(trainer or {})  # what the explicit settings below do not take is passed as is
    return TrainLmConfig(
        data=UrlSingleDatasetLMConfig(
            cache_dir=cache_dir,
            tokenizer=tokenizer_dir,
            shuffle=True,
            permutation_type="feistel",
        ),
        model=llama_config(m, tokenizer_dir),
        trainer=TrainerConfig(
            id=spec.run_id,
            seed=spec.seed,
            mp=jmp.get_policy(overrides.pop("mp", "f32")),
            train_batch_size=spec.batch_size,
            num_train_steps=steps,
            steps_per_eval=max(1, math.ceil(steps / evals_per_run)),
            tracker=tuple(trackers),
            require_accelerator=overrides.pop("require_accelerator", False),
            # a diverged run finishes and is recorded as diverged (NaN loss) instead of failing the study
            crash_on_nan=False,
            crash_on_inf=False,
            log_dir=pathlib.Path(checkpoint_dir, "logs"),  # a Path, as levanter types it (its config dump)
            log_jaxprs=False,
            log_xla_hlo=False,
            watch=WatchConfig(interval=0),  # per-parameter norms cost a compile and time per step
            ray=RayConfig(auto_start_cluster=False, start_workers=False),
            # model/distributed.py joins the world before this config is built (the mesh needs its device count)
            distributed=DistributedConfig(initialize_jax_distributed=False),
            checkpointer=CheckpointerConfig(
                base_path=os.path.join(checkpoint_dir, "checkpoints"),
                save_interval=timedelta(minutes=checkpoint_minutes),
                keep=[],
                append_run_id_to_base_path=False,
            ),
            **overrides,
        ),
        optimizer=adamw_config(spec),
        epoch=spec.epochs,
        data_seed=spec.seed,
        hf_save_path=export_dir,
        hf_save_steps=steps,
        # CPT: start from a pretrained model's HF export (a resumed run starts from its checkpoint)
        initialize_from_hf=init_from or False,
    )


def study_wandb_config(spec: RunSpec, settings: dict):
    """levanter's WandbConfig for a run, named, grouped and tagged as the loop engine's (model/tracking.py),
    that also logs the run's spec as its config (the importer places a run by it)."""
    # imported here: it imports wandb, which only a run that logs to it needs
    from levanter.tracker.wandb import WandbConfig

    @dataclasses.dataclass
    class StudyWandbConfig(WandbConfig):
        study_config: dict = dataclasses.field(default_factory=dict)

        def init(self, run_id):
            os.environ.setdefault("WANDB_DIR", os.path.abspath(settings["dir"]))  # inside the project
            os.makedirs(os.environ["WANDB_DIR"], exist_ok=True)
            start_service()
            tracker = super().init(run_id)
            tracker.log_hyperparameters(self.study_config)
            return tracker

    return StudyWandbConfig(project=settings["project"], entity=settings.get("entity"), mode=settings["mode"],
                            name=spec.run_id, id=spec.run_id, group=group_of(spec), save_code=False,
                            tags=tags_of(spec, settings),
                            study_config=wandb_config(spec))


def train(
    spec: RunSpec,
    *,
    cache_dir: str,
    tokenizer_dir: str,
    out_dir: str,
    checkpoint_root: str,
    evals_per_run: int = 8,
    checkpoint_minutes: float = 1.0,
    wandb: dict | None = None,
    init_from: str | None = None,
    trainer: dict | None = None,
    sharding: str = "fsdp",
    world: World | None = None,
) -> dict | None:
    """Train `spec` (from the HF export at `init_from`, if given), export it to `out_dir`/hf and
    write spec.json and metrics.json beside it. In a world of several processes (`world`, else the
    one this process's environment names) each rank calls this; rank 0 returns the metrics, the others None."""
    check_init_from(spec, init_from)
    world = world if world is not None else world_of_env()
    join(world)
    primary = world is None or world.is_primary

    ckpt = state_dir(checkpoint_root, spec)
    export_tmp = os.path.join(ckpt, "hf")
    os.makedirs(ckpt, exist_ok=True)
    cfg = levanter_config(
        spec,
        cache_dir=cache_dir,
        tokenizer_dir=tokenizer_dir,
        checkpoint_dir=ckpt,
        export_dir=export_tmp,
        evals_per_run=evals_per_run,
        checkpoint_minutes=checkpoint_minutes,
        wandb=wandb,
        init_from=init_from,
        trainer=mesh_settings(sharding, trainer or {}),
    )
    logger.info("%s: %d devices in %d processes, mesh %s", spec.run_id, jax.device_count(), jax.process_count(),
                describe_mesh(cfg.trainer))
    # rank 0 alone records the steps: every rank logs them, and they would append to one file
    collector = _MetricsCollector(os.path.join(ckpt, "metrics.jsonl")) if primary else None
    json_log = logging.getLogger("levanter.json_logger")
    if collector is not None:
        json_log.addHandler(collector)
        json_log.setLevel(logging.INFO)
    start = time.time()
    try:
        train_lm.main(cfg)
    finally:
        if collector is not None:
            json_log.removeHandler(collector)
            collector.close()
    wall = time.time() - start
    if world is not None:
        # every rank's last checkpoint shards and export are written before rank 0 publishes (and
        # removes the run's state)
        multihost_utils.sync_global_devices(f"{spec.run_id} trained")
    if not primary:
        return None

    exports = sorted(glob.glob(os.path.join(export_tmp, "**", "step-*"), recursive=True), key=_step_of)
    if not exports or _step_of(exports[-1]) < spec.num_train_steps - 1:
        raise RuntimeError(f"{spec.run_id}: levanter wrote no final HF export under {export_tmp}")
    metrics = summarise(collector.records.items, spec, wall, len(load_tokenizer(tokenizer_dir)),
                        collector.summary.get("parameter_count"), process_start())
    publish(out_dir, spec, exports[-1], metrics, ckpt)
    return metrics


def _step_of(path: str) -> int:
    return int(os.path.basename(path).split("-")[-1])
