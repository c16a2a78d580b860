"""Train one run of the plan with levanter's `train_lm`, in-process, on whatever jax device exists.

Outputs (DESIGN.md): <out>/spec.json, <out>/hf/ (HF export: config.json, model.safetensors,
tokenizer), <out>/metrics.json. Resumable levanter checkpoints live in <checkpoint_dir>, outside
the declared outputs, keyed by the spec's hash so an edited spec never resumes a stale run.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import math
import os
import shutil
import statistics
import time
from datetime import timedelta

from .io import atomic_dir, atomic_write_json
from .plan import ModelShape, RunSpec

logger = logging.getLogger(__name__)


def spec_hash(spec: RunSpec) -> str:
    return hashlib.sha256(spec.to_json().encode()).hexdigest()[:10]


class StepRecords:
    """A run's step records (levanter's json_logger records), in memory and appended to `path` beside
    its checkpoints, so a resumed run's metrics still hold the steps before the resume."""

    def __init__(self, path: str):
        self.items: list[dict] = []
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    try:
                        self.items.append(json.loads(line))
                    except json.JSONDecodeError:  # the last line of a killed run may be cut short
                        pass
        self._file = open(path, "a")
        if self._file.tell() and not open(path, "rb").read().endswith(b"\n"):
            self._file.write("\n")  # end a killed writer's cut line, so the next record is whole

    def add(self, rec: dict) -> None:
        self.items.append(rec)
        self._file.write(json.dumps(rec) + "\n")

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class _MetricsCollector(logging.Handler):
    """Collects levanter's json_logger records (one per step) into StepRecords."""

    def __init__(self, path: str):
        super().__init__(logging.INFO)
        self.records = StepRecords(path)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            rec = json.loads(record.getMessage())
        except (json.JSONDecodeError, TypeError):
            return
        if isinstance(rec, dict):
            rec["_time"] = record.created
            self.records.add(rec)
            self.records.flush()

    def close(self) -> None:
        self.records.close()
        super().close()


def _process_start() -> float:
    """When this job's process started (epoch seconds), for the start-up time to the first step:
    the process that asked a warm worker to run the job (worker.JOB_START), or this one."""
    import psutil  # installed with snakemake (and orbax)

    from .worker import JOB_START

    return float(os.environ.get(JOB_START) or psutil.Process().create_time())


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def llama_config(m: ModelShape, tokenizer_dir: str, gradient_checkpointing: bool | None = None):
    """levanter's LlamaConfig of a shape; the tokenizer dir doubles as the local HF reference."""
    from levanter.layers.attention import AttentionBackend
    from levanter.models.llama import LlamaConfig

    return LlamaConfig(
        seq_len=m.seq_len,
        hidden_dim=m.hidden_dim,
        intermediate_dim=m.intermediate_dim,
        num_layers=m.num_layers,
        num_heads=m.num_heads,
        num_kv_heads=m.num_kv_heads,
        gradient_checkpointing=m.gradient_checkpointing if gradient_checkpointing is None else gradient_checkpointing,
        attn_backend=AttentionBackend(m.attention_backend),
        cross_entropy_block_size=m.cross_entropy_block_size,
        tokenizer=tokenizer_dir,
        reference_checkpoint=tokenizer_dir,
    )


def adamw_config(spec: RunSpec):
    """The run's AdamW: the paper's recipe with lr, wd and the schedule as traced state (optim.py)."""
    from .optim import TracedAdamWConfig

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
    import jmp
    from levanter.checkpoint import CheckpointerConfig
    from levanter.data.text import UrlSingleDatasetLMConfig
    from levanter.distributed import RayConfig
    from levanter.main.train_lm import TrainLmConfig
    from levanter.callbacks.watch import WatchConfig
    from levanter.tracker.json_logger import JsonLoggerConfig
    from levanter.trainer import TrainerConfig

    m = spec.model
    trackers: list = [JsonLoggerConfig()]
    if wandb and wandb.get("enabled"):
        from levanter.tracker.wandb import WandbConfig

        trackers.append(
            WandbConfig(project=wandb["project"], mode=wandb["mode"], name=spec.run_id, tags=[spec.data])
        )
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
            log_dir=os.path.join(checkpoint_dir, "logs"),
            log_jaxprs=False,
            log_xla_hlo=False,
            watch=WatchConfig(interval=0),  # per-parameter norms cost a compile and time per step
            ray=RayConfig(auto_start_cluster=False, start_workers=False),
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


def _summarise(records: list[dict], spec: RunSpec, wall: float, vocab_size: int, started: float | None = None) -> dict:
    evals, train_loss = [], []
    summary: dict = {}
    first_step_at, durations, loading = None, [], []
    for r in records:
        if r.get("event") == "log" and r.get("step") is not None:
            mets = r["metrics"]
            if "eval/loss" in mets:
                evals.append({"step": int(r["step"]), "loss": float(mets["eval/loss"])})
            if "train/loss" in mets:
                train_loss.append({"step": int(r["step"]), "loss": float(mets["train/loss"])})
                if first_step_at is None and started is not None and r.get("_time", 0) >= started:
                    first_step_at = r["_time"]  # this process's first step (not a resumed run's earlier one)
            if "throughput/duration" in mets:
                durations.append(float(mets["throughput/duration"]))
            if "throughput/loading_time" in mets:
                loading.append(float(mets["throughput/loading_time"]))
        elif r.get("event") == "summary":
            summary.update(r["metrics"])
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
        "parameter_count": summary.get("parameter_count"),
        # speed: process start to the first step's end; median step compute and data-loading time
        # after the first two steps (which compile)
        "startup_seconds": (first_step_at - started) if (first_step_at and started) else float("nan"),
        "step_seconds": _median(durations[2:]),
        "loading_seconds": _median(loading[2:]),
        "non_embedding_params": spec.model.non_embedding_params(),
        "diverged": not math.isfinite(final) if evals else False,
    }


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
) -> dict:
    """Train `spec` (from the HF export at `init_from`, if given), export it to `out_dir`/hf and
    write spec.json and metrics.json beside it."""
    check_init_from(spec, init_from)
    import levanter.main.train_lm as train_lm

    ckpt = os.path.join(checkpoint_root, f"{spec.run_id}-{spec_hash(spec)}")
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
        trainer=trainer,
    )
    collector = _MetricsCollector(os.path.join(ckpt, "metrics.jsonl"))
    json_log = logging.getLogger("levanter.json_logger")
    json_log.addHandler(collector)
    json_log.setLevel(logging.INFO)
    start = time.time()
    try:
        train_lm.main(cfg)
    finally:
        json_log.removeHandler(collector)
        collector.close()
    wall = time.time() - start

    exports = sorted(glob.glob(os.path.join(export_tmp, "**", "step-*"), recursive=True), key=_step_of)
    if not exports or _step_of(exports[-1]) < spec.num_train_steps - 1:
        raise RuntimeError(f"{spec.run_id}: levanter wrote no final HF export under {export_tmp}")
    from .data import load_tokenizer

    metrics = _summarise(collector.records.items, spec, wall, len(load_tokenizer(tokenizer_dir)), _process_start())
    publish(out_dir, spec, exports[-1], metrics, ckpt)
    return metrics


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


def _step_of(path: str) -> int:
    return int(os.path.basename(path).split("-")[-1])
