"""The study's compiled training engine: levanter's Llama, data cache, next-token loss, optimizer
state, tensorstore checkpoints and HF export, driven by a loop whose programs are compiled once per
model shape and run many steps per call.

Why a loop of our own: at the default study's sizes levanter's `Trainer` spends longer setting a run
up than training it (bench/train.py). Its train step, model init and evaluation close over the run's
config, so every run traces and lowers them again (~5-15 s on 2 cores) even when the persistent
compilation cache then finds the binary. Here the learning rate, weight decay and schedule length are
optimizer state (optim.TracedAdamW), so one set of programs serves every run of a shape; in a warm
worker (runtime/worker.py) they are traced once per shape and reused by each later job, and `chunk` steps
run per call inside one `lax.scan` (no Python or dispatch between them).

What stays levanter's, so a run here is the same training as `levanter.main.train_lm` (tests check
that the two engines' losses agree): the keys (PRNGKey(seed) split in 4, the data key from the data
seed), the data order (TokenSeqDataset over the levanter cache, its Feistel shuffle, EpochDataset),
LmExample.causal with EOS segments, compute_next_token_loss, TrainerState's optimizer init and
take_train_step, the validation loss averaged over all tokens, the eval schedule (after step 0,
every `steps_per_eval`, and the last step), save/load_checkpoint, and the HF converter's export.
Outputs are those engine.publish writes for both engines: spec.json, hf/, metrics.json.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import math
import os
import shutil
import time

import equinox as eqx
import haliax as hax
import jax
import jax.numpy as jnp
import jax.random as jrandom
import numpy as np
from levanter.checkpoint import (
    discover_latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from levanter.data.dataset import EpochDataset
from levanter.data.text import (
    DEFAULT_IGNORE_INDEX,
    TokenSeqDataset,
    UrlSingleDatasetLMConfig,
)
from levanter.models.lm_model import LmExample, compute_next_token_loss
from levanter.trainer import DEFAULT_JAX_CONFIG
from levanter.trainer_state import init_optimizer_for_trainables, take_train_step
from levanter.utils.jax_utils import parameter_count

from ..data.tokenizer import load_tokenizer
from ..study.specs import ModelShape, RunSpec
from .engine import (
    StepRecord,
    StepRecords,
    adamw_config,
    check_init_from,
    process_start,
    publish,
    state_dir,
    summarise,
)
from .optim import TracedAdamWConfig, learning_rates
from .scoring import device_mesh, load_model
from .shapes import llama_config
from .tracking import Tracker, tracker_summary

logger = logging.getLogger(__name__)

CHUNK = 16  # steps per compiled call (bench/train.py: 1.2-1.5x over one step per call at these sizes)


@dataclasses.dataclass(frozen=True)
class Static:
    """What a compiled program depends on; runs that share it share the programs."""

    model: ModelShape
    vocab: int
    batch: int
    chunk: int
    beta1: float
    beta2: float
    epsilon: float
    max_grad_norm: float | None
    eos_id: int | None
    ignore_id: int | None


_PROGRAMS: dict[tuple[Static, str], "Programs"] = {}
TRACES = {"run_chunk": 0}  # how often this process traced the training program (once per shape is the point)


class Programs:
    """The jitted programs of one `Static` (and tokenizer dir, which the model's config carries)."""

    def __init__(self, static: Static, tokenizer_dir: str):
        self.static = s = static
        self.config = llama_config(s.model, tokenizer_dir)
        self.Vocab = hax.Axis("vocab", s.vocab)
        Pos = self.config.Pos
        Batch = hax.Axis("batch", s.batch)
        # the update reads lr, wd and the schedule from the optimizer state: these numbers are unused
        opt = TracedAdamWConfig(learning_rate=0.0, weight_decay=0.0, beta1=s.beta1, beta2=s.beta2,
                                epsilon=s.epsilon, max_grad_norm=s.max_grad_norm).build(1)

        def examples(tokens, Batch):
            make = lambda t: LmExample.causal(t, ignore_id=s.ignore_id, eos_id=s.eos_id)  # noqa: E731
            return hax.vmap(make, Batch)(hax.named(tokens, (Batch, Pos)))

        def loss_fn(model, tokens):
            return compute_next_token_loss(model, examples(tokens, Batch), key=None).scalar()

        def one_step(carry, tokens):
            model, opt_state = carry
            loss, grads = eqx.filter_value_and_grad(loss_fn)(model, tokens)
            model, opt_state, _ = take_train_step(opt, model, opt_state, grads, loss=loss)
            return (model, opt_state), loss

        @eqx.filter_jit(donate="all-except-first")
        def run_chunk(n, model, opt_state, tokens):
            """Steps 0..n-1 of `tokens` [chunk, batch, seq]; the rest of the chunk is skipped."""
            TRACES["run_chunk"] += 1  # Python runs only while jax traces

            def body(carry, x):
                i, toks = x
                return jax.lax.cond(i < n, one_step, lambda c, _: (c, jnp.float32(jnp.nan)), carry, toks)

            (model, opt_state), losses = jax.lax.scan(body, (model, opt_state), (jnp.arange(s.chunk), tokens))
            return model, opt_state, losses

        @eqx.filter_jit
        def eval_sums(model, tokens, weights):
            """Summed token losses and token count of a validation batch (rows of weight 0 are padding)."""
            B = hax.Axis("batch", tokens.shape[0])
            ex = examples(tokens, B)
            losses = compute_next_token_loss(model, ex, key=None, reduction=None, reduction_axis=())
            mask = ex.loss_mask.array * weights[:, None]
            return jnp.sum(losses.array * mask), jnp.sum(mask)

        self.run_chunk = run_chunk
        self.eval_sums = eval_sums
        self.init_model = eqx.filter_jit(lambda key: self.config.build(self.Vocab, key=key))


def programs(static: Static, tokenizer_dir: str) -> Programs:
    key = (static, os.path.abspath(tokenizer_dir))
    if key not in _PROGRAMS:
        _PROGRAMS[key] = Programs(static, tokenizer_dir)
    return _PROGRAMS[key]


def chunk_ranges(start: int, steps: int, chunk: int, evals: set[int]) -> list[tuple[int, int]]:
    """[a, b) step ranges from `start`: cut at multiples of `chunk` and after each eval step, so the
    same run always makes the same calls, a resumed one included (checkpoints fall on cuts)."""
    cuts = sorted({b for b in range(chunk, steps, chunk)} | {e + 1 for e in evals if e + 1 < steps} | {steps})
    out, a = [], start
    for b in cuts:
        if b > a:
            out.append((a, b))
            a = b
    return out


def eval_steps(steps: int, evals_per_run: int) -> set[int]:
    """levanter's schedule: after step 0, every `steps_per_eval`, and the last step."""
    every = max(1, math.ceil(steps / evals_per_run))
    return {s for s in range(steps) if s % every == 0} | {steps - 1}


# A training set up to this size is read once per run, in levanter's order (one epoch: later epochs
# repeat it); levanter's dataset stack takes ~0.2 ms per row read (bench/train.py: 7 of a 17 ms step).
_READ_ONCE_BYTES = 1 << 30


class TrainingOrder:
    """levanter's training order, as train_lm builds it: the token cache's sequences, Feistel-shuffled
    with the data key, repeated for `epochs` epochs (EpochDataset: each epoch in the same order)."""

    def __init__(self, cache, seq_len: int, data_key, epochs: int):
        shuffled = TokenSeqDataset(cache, seq_len).shuffle(data_key, perm_type="feistel")
        self._levanter = EpochDataset(shuffled, max_epochs=epochs).as_sync_dataset()
        self.per_epoch = len(shuffled.as_sync_dataset())
        self.epochs = epochs
        self._epoch = None
        if self.per_epoch * seq_len * 4 <= _READ_ONCE_BYTES:
            self._epoch = np.stack(self._levanter.get_batch(list(range(self.per_epoch)))).astype(np.int32)

    def rows(self, a: int, b: int) -> np.ndarray:
        """Sequences a..b-1 of the run's order, [b - a, seq_len]."""
        if b > self.per_epoch * self.epochs:
            raise ValueError(f"sequence {b - 1} is past the last of {self.epochs} epochs of {self.per_epoch}")
        if self._epoch is None:
            return np.stack(self._levanter.get_batch(list(range(a, b)))).astype(np.int32)
        return self._epoch[np.arange(a, b) % self.per_epoch]


def _datasets(cache_dir: str, tokenizer_dir: str, seq_len: int, data_key, epochs: int):
    """The run's training order and its validation sequences."""
    cfg = UrlSingleDatasetLMConfig(cache_dir=cache_dir, tokenizer=tokenizer_dir, shuffle=True, permutation_type="feistel")
    train = TrainingOrder(cfg.build_or_load_cache("train", monitors=False), seq_len, data_key, epochs)
    val = TokenSeqDataset(cfg.build_or_load_cache("validation", monitors=False), seq_len).as_sync_dataset()
    validation = np.stack(val.get_batch(list(range(len(val))))) if len(val) else np.zeros((0, seq_len), np.int32)
    return train, validation.astype(np.int32)


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
    chunk: int = CHUNK,
    eval_batch_size: int = 32,
) -> dict:
    """Train `spec` (from the HF export at `init_from`, if given), export it to `out_dir`/hf and
    write spec.json and metrics.json beside it; resumes from the newest checkpoint of this spec."""
    check_init_from(spec, init_from)
    started, traces = time.time(), TRACES["run_chunk"]
    # The jax settings levanter's Trainer applies (jax_softmax_custom_jvp changes softmax's gradient):
    # applied for every run, so that a run does not depend on what ran before it in a warm worker
    # (a Trainer job sets them process-wide) and trains as the Trainer does.
    for name, value in DEFAULT_JAX_CONFIG.items():
        jax.config.update(name, value)
    tokenizer = load_tokenizer(tokenizer_dir)
    o = spec.optimizer
    static = Static(spec.model, len(tokenizer), spec.batch_size, chunk, o["beta1"], o["beta2"], o["epsilon"],
                    o["max_grad_norm"], tokenizer.eos_token_id, DEFAULT_IGNORE_INDEX)
    ckpt = state_dir(checkpoint_root, spec)
    ckpt_dir = os.path.join(ckpt, "checkpoints")
    os.makedirs(ckpt_dir, exist_ok=True)
    steps = spec.num_train_steps
    evals = eval_steps(steps, evals_per_run)
    tracker = Tracker(spec, wandb)

    with device_mesh():
        progs = programs(static, tokenizer_dir)
        # train_lm's keys: the model's from the run seed, the data order's from the data seed (= seed)
        _, _, model_key, _ = jrandom.split(jrandom.PRNGKey(spec.seed), 4)
        data_key = jrandom.PRNGKey(spec.seed)
        train_data, validation = _datasets(cache_dir, tokenizer_dir, spec.model.seq_len, data_key, spec.epochs)
        opt_config = adamw_config(spec)
        opt = opt_config.build(steps)
        if init_from:
            model = load_model(init_from, spec, tokenizer_dir)
        else:
            model = progs.init_model(model_key)
        state = {"model": model, "opt_state": init_optimizer_for_trainables(opt, model), "step": jnp.zeros((), jnp.int32)}
        start = 0
        latest = discover_latest_checkpoint(ckpt_dir)
        if latest is not None:
            state = load_checkpoint(state, latest, discover_latest=False)
            start = int(state["step"])
            logger.info(f"Resuming training from step {start}")
            print(f"Resuming training from step {start} ({latest})", flush=True)
        model, opt_state = state["model"], state["opt_state"]
        del state
        records = StepRecords(os.path.join(ckpt, "metrics.jsonl"))
        # records past the checkpoint are redone (a run killed after them logs them again)
        records.keep_before(start)

        def validation_loss(model) -> float:
            total = count = 0.0
            for a in range(0, len(validation), eval_batch_size):
                rows = validation[a : a + eval_batch_size]
                w = np.ones(eval_batch_size, np.float32)
                if len(rows) < eval_batch_size:  # one compiled shape: pad with zero-weight rows
                    w[len(rows):] = 0
                    rows = np.concatenate([rows, np.repeat(rows[-1:], eval_batch_size - len(rows), 0)])
                s, c = progs.eval_sums(model, rows, w)
                total += float(s)
                count += float(c)
            return total / count if count else float("nan")

        B, S = spec.batch_size, spec.model.seq_len
        last_save = time.time()
        for a, b in chunk_ranges(start, steps, chunk, evals):
            t0 = time.time()
            tokens = np.zeros((chunk, B, S), np.int32)
            tokens[: b - a] = train_data.rows(a * B, b * B).reshape(b - a, B, S)
            t1 = time.time()
            model, opt_state, losses = progs.run_chunk(np.int32(b - a), model, opt_state, tokens)
            losses = np.asarray(losses)[: b - a]
            t2 = time.time()
            # a fresh run's first call is step 0 alone (an eval follows it), and it compiles or loads
            # the program
            lrs = learning_rates(opt_config, steps, np.arange(a, b)) if tracker.active else None
            for i, loss in enumerate(losses):
                if lrs is not None:
                    tracker.log({"train/loss": float(loss), "optim/learning_rate": float(lrs[i]),
                                 "throughput/tokens_per_second": B * S * (b - a) / max(t2 - t0, 1e-9),
                                 "throughput/total_tokens": (a + i + 1) * B * S}, step=a + i)
                records.add(StepRecord(step=a + i, time=t2, train_loss=float(loss), step_seconds=(t2 - t1) / (b - a),
                                       loading_seconds=(t1 - t0) / (b - a)))
            if b - 1 in evals:
                loss = validation_loss(model)
                records.add(StepRecord(step=b - 1, time=time.time(), eval_loss=loss))
                tracker.log({"eval/loss": loss}, step=b - 1)
                print(f"step {b - 1}: train loss {losses[-1]:.4f}, eval loss {loss:.4f}", flush=True)
            records.flush()
            if b < steps and time.time() - last_save >= checkpoint_minutes * 60:
                path = os.path.join(ckpt_dir, f"step-{b}")
                save_checkpoint({"model": model, "opt_state": opt_state, "step": jnp.asarray(b, jnp.int32)}, b, path)
                for old in glob.glob(os.path.join(ckpt_dir, "step-*")):
                    if old != path:
                        shutil.rmtree(old, ignore_errors=True)
                last_save = time.time()
        records.close()
        n_params = parameter_count(model)
        export = os.path.join(ckpt, "hf")
        shutil.rmtree(export, ignore_errors=True)
        converter = progs.config.hf_checkpoint_converter().replaced(tokenizer=tokenizer)
        converter.save_pretrained(model, export)
    metrics = summarise(records.items, spec, time.time() - started, len(tokenizer), n_params, process_start())
    metrics["programs_traced"] = TRACES["run_chunk"] - traces  # 0: a warm worker had this shape's programs
    tracker.summary(tracker_summary(metrics))
    tracker.finish()
    publish(out_dir, spec, export, metrics, ckpt)
    return metrics
