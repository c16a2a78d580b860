"""levanter's AdamW with the paper's schedule, but with lr, weight decay and the schedule's length
held in the optimizer state as arrays instead of compile-time constants.

levanter's `AdamConfig` closes over the learning rate, the weight decay and the number of steps,
so every point of a sweep compiles its own train step (~7 s each here). Here those numbers are
state, so runs that differ only in lr, wd, epochs or seed share one compiled step and hit the
persistent compilation cache. The update is the same AdamW: clip the global gradient norm,
Adam's scaled moments, decoupled weight decay on levanter's default mask (no norms, no
embeddings), times -lr(step); lr(step) is a linear warmup from 0 then a cosine to
`min_lr_ratio` x peak, as in levanter's "cosine" schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from levanter.optim import AdamConfig, OptimizerConfig
from levanter.optim.config import _convert_frac_or_steps


class TracedAdamWState(NamedTuple):
    count: jax.Array
    hyperparams: dict[str, jax.Array]  # levanter logs these as optim/<name>
    schedule: dict[str, jax.Array]
    inner_state: Any


def schedule_value(count, peak, warmup_steps, decay_steps, min_lr_ratio):
    """lr at step `count`: linear 0 -> peak over `warmup_steps`, then cosine to min_lr_ratio*peak."""
    count = jnp.asarray(count, jnp.float32)
    warm = peak * count / jnp.maximum(warmup_steps, 1.0)
    t = jnp.clip((count - warmup_steps) / jnp.maximum(decay_steps, 1.0), 0.0, 1.0)
    cos = peak * ((1.0 - min_lr_ratio) * 0.5 * (1.0 + jnp.cos(jnp.pi * t)) + min_lr_ratio)
    return jnp.where(count < warmup_steps, warm, cos)


def learning_rates(config: "TracedAdamWConfig", num_train_steps: int, steps) -> np.ndarray:
    """The learning rate `config` trains with at each of `steps` (what a tracker logs as optim/learning_rate)."""
    return np.asarray(schedule_value(np.asarray(steps), **config.schedule(num_train_steps)))


@OptimizerConfig.register_subclass("traced_adamw")
@dataclass(frozen=True)
class TracedAdamWConfig(AdamConfig):
    """`AdamConfig` whose numbers are traced. Only the options the study uses are supported."""

    def schedule(self, num_train_steps: int) -> dict[str, float]:
        """schedule_value's numbers for a run of `num_train_steps`."""
        warmup_steps = _convert_frac_or_steps(self.warmup, num_train_steps)
        return {
            "peak": float(self.learning_rate),
            "warmup_steps": float(warmup_steps),
            "decay_steps": float(num_train_steps - warmup_steps),
            "min_lr_ratio": float(self.min_lr_ratio),
        }

    def build(self, num_train_steps: int):
        if self.lr_schedule != "cosine" or self.decay is not None or self.cycles or self.cycle_length:
            raise ValueError("TracedAdamWConfig supports one warmup + cosine cycle only")
        numbers = self.schedule(num_train_steps)
        weight_decay = float(self.weight_decay)
        parts = []
        if self.max_grad_norm:
            parts.append(optax.clip_by_global_norm(self.max_grad_norm))
        parts.append(optax.scale_by_adam(self.beta1, self.beta2, self.epsilon, nesterov=self.nesterov))
        inner = optax.chain(*parts)
        decay_mask = optax.add_decayed_weights(1.0, self.build_weight_decay_mask())

        def lr_at(count, schedule):
            return schedule_value(count, **schedule)

        def init(params):
            schedule = {k: jnp.asarray(v, jnp.float32) for k, v in numbers.items()}
            count = jnp.zeros([], jnp.int32)
            hyper = {"learning_rate": lr_at(count, schedule), "weight_decay": jnp.asarray(weight_decay, jnp.float32)}
            return TracedAdamWState(count, hyper, schedule, inner.init(params))

        def update(updates, state, params=None, **extra_args):  # levanter passes obj_fn, loss
            lr = lr_at(state.count, state.schedule)
            wd = state.hyperparams["weight_decay"]
            updates, inner_state = inner.update(updates, state.inner_state, params)
            zeros = jax.tree.map(jnp.zeros_like, updates)
            decayed, _ = decay_mask.update(zeros, decay_mask.init(params), params)  # masked params, else 0
            updates = jax.tree.map(lambda u, p: -lr * (u + wd * p), updates, decayed)
            count = optax.safe_increment(state.count)
            hyper = {"learning_rate": lr, "weight_decay": wd}  # as optax.inject_hyperparams: the values used
            return updates, TracedAdamWState(count, hyper, state.schedule, inner_state)

        return optax.GradientTransformationExtraArgs(init, update)
