"""What the two training engines share (loop.py, our compiled loop; trainer.py, levanter's Trainer):
the checkpoint folder of a spec, the step records a run logs and a resumed run keeps, the metrics
summary written to metrics.json, the run's AdamW, and the publication of a finished run's outputs.

A run's outputs (docs/internals.md): <out>/spec.json, <out>/hf/ (HF export: config.json, model.safetensors,
tokenizer) and <out>/metrics.json. Its resumable state lives in <checkpoints>/<run id>-<spec hash>,
outside the declared outputs, so an edited spec never resumes a stale run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import statistics

import psutil  # installed with snakemake (and orbax)

from ..runtime.io import atomic_dir, atomic_write_json
from ..runtime.worker import JOB_START
from ..study.specs import RunSpec
from .optim import TracedAdamWConfig


def state_dir(checkpoint_root: str, spec: RunSpec) -> str:
    """The run's resumable state: keyed by run id and spec hash."""
    return os.path.join(checkpoint_root, f"{spec.run_id}-{spec.spec_hash()}")


@dataclasses.dataclass(frozen=True)
class StepRecord:
    """What a run logs at one step: its training loss and times, or the validation loss after it."""

    step: int
    time: float  # when it was logged (epoch seconds)
    train_loss: float | None = None
    eval_loss: float | None = None
    step_seconds: float | None = None  # the step's compute time
    loading_seconds: float | None = None  # the time taken to read its batch


class StepRecords:
    """A run's step records, in memory and appended to `path` beside its checkpoints, so a resumed
    run's metrics still hold the steps before the resume."""

    def __init__(self, path: str):
        self.items: list[StepRecord] = []
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    try:
                        rec = _step_record(json.loads(line))
                    except (json.JSONDecodeError, TypeError, KeyError):  # a killed run's last line may be cut short
                        continue
                    if rec is not None:
                        self.items.append(rec)
        self._file = open(path, "a")
        if self._file.tell() and not open(path, "rb").read().endswith(b"\n"):
            self._file.write("\n")  # end a killed writer's cut line, so the next record is whole

    def add(self, rec: StepRecord) -> None:
        self.items.append(rec)
        self._file.write(json.dumps(dataclasses.asdict(rec)) + "\n")

    def keep_before(self, step: int) -> None:
        """Forget the records from `step` on: a run resumed from a checkpoint at `step` redoes them."""
        self.items = [r for r in self.items if r.step < step]

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


# levanter's json_logger keys of the fields a step record keeps
_LEVANTER_KEYS = {"train_loss": "train/loss", "eval_loss": "eval/loss", "step_seconds": "throughput/duration",
                  "loading_seconds": "throughput/loading_time"}


def step_record_of_levanter(step: int, time: float, metrics: dict) -> StepRecord | None:
    """The step record of one levanter json_logger record's metrics, None if it holds none of ours."""
    fields = {k: float(metrics[key]) for k, key in _LEVANTER_KEYS.items() if key in metrics}
    return StepRecord(step=int(step), time=time, **fields) if fields else None


def _step_record(d: dict) -> StepRecord | None:
    """A line of a run's records file; a run resumed across the change to StepRecord (its state kept
    levanter's json_logger records, with `_time`) keeps its earlier steps."""
    if "event" in d:
        return step_record_of_levanter(d["step"], d["_time"], d["metrics"]) if d["event"] == "log" else None
    return StepRecord(**d)


def process_start() -> float:
    """When this job's process started (epoch seconds), for the start-up time to the first step:
    the process that asked a warm worker to run the job (worker.JOB_START), or this one."""
    return float(os.environ.get(JOB_START) or psutil.Process().create_time())


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarise(records: list[StepRecord], spec: RunSpec, wall: float, vocab_size: int,
              parameter_count: int | None, started: float | None = None) -> dict:
    """metrics.json of a finished run, from its step records."""
    evals, train_loss = [], []
    first_step_at, durations, loading = None, [], []
    for r in records:
        if r.eval_loss is not None:
            evals.append({"step": int(r.step), "loss": float(r.eval_loss)})
        if r.train_loss is not None:
            train_loss.append({"step": int(r.step), "loss": float(r.train_loss)})
            if first_step_at is None and started is not None and r.time >= started:
                first_step_at = r.time  # this process's first step (not a resumed run's earlier one)
        if r.step_seconds is not None:
            durations.append(float(r.step_seconds))
        if r.loading_seconds is not None:
            loading.append(float(r.loading_seconds))
    # one record per step, the latest (a resumed run logs again the steps after its checkpoint)
    evals = sorted({e["step"]: e for e in evals}.values(), key=lambda e: e["step"])
    train_loss = sorted({e["step"]: e for e in train_loss}.values(), key=lambda e: e["step"])
    tokens = spec.num_train_steps * spec.batch_size * spec.model.seq_len
    flops = spec.model.flops_per_token(vocab_size) * tokens
    final = evals[-1]["loss"] if evals else float("nan")
    return {
        "run_id": spec.run_id,
        "final_eval_loss": final,
        "final_train_loss": train_loss[-1]["loss"] if train_loss else float("nan"),
        "eval_loss": evals,
        "train_loss": train_loss[:: max(1, len(train_loss) // 200)],
        "steps": spec.num_train_steps,
        "tokens_seen": tokens,
        "flops": flops,
        "wall_seconds": wall,
        "tokens_per_second": tokens / wall if wall > 0 else float("nan"),
        "parameter_count": parameter_count,
        # speed: process start to the first step's end; median step compute and data-loading time
        # after the first two steps (which compile)
        "startup_seconds": (first_step_at - started) if (first_step_at and started) else float("nan"),
        "step_seconds": _median(durations[2:]),
        "loading_seconds": _median(loading[2:]),
        "non_embedding_params": spec.model.non_embedding_params(),
        "diverged": not math.isfinite(final) if evals else False,
    }


def adamw_config(spec: RunSpec) -> TracedAdamWConfig:
    """The run's AdamW: the paper's recipe with lr, wd and the schedule as traced state (optim.py)."""
    opt = spec.optimizer
    return TracedAdamWConfig(
        learning_rate=spec.learning_rate,
        weight_decay=spec.weight_decay,
        beta1=opt["beta1"],
        beta2=opt["beta2"],
        epsilon=opt["epsilon"],
        max_grad_norm=opt["max_grad_norm"],
        warmup=opt["warmup"],
        lr_schedule=opt["lr_schedule"],
        min_lr_ratio=opt["min_lr_ratio"],
    )


def check_init_from(spec: RunSpec, init_from: str | None) -> None:
    if (init_from is None) != (spec.init_from is None):
        raise ValueError(f"{spec.run_id}: init_from is {spec.init_from!r} in its spec but {init_from!r} was given")


def publish(out_dir: str, spec: RunSpec, export: str, metrics: dict, checkpoints: str) -> None:
    """A finished run's outputs, all at once: hf/ (from `export`), spec.json, metrics.json; then its
    resumable state goes (nothing is left to resume)."""
    with atomic_dir(out_dir) as tmp:
        shutil.copytree(export, os.path.join(tmp, "hf"))
        atomic_write_json(os.path.join(tmp, "spec.json"), spec.to_dict())
        atomic_write_json(os.path.join(tmp, "metrics.json"), metrics)
    shutil.rmtree(checkpoints, ignore_errors=True)
