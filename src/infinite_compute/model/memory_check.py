"""XLA's own account of a training step's device memory: the study's step (levanter's Llama, next-token
loss and AdamW update, as both engines take it) compiled for given shapes, without running it, and
the compiled program's memory analysis. The memory plan (study/memory.py) is checked against it
(tests/test_memory.py, bench/memory.py)."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import haliax as hax
import jax
import jax.numpy as jnp
import optax
from levanter.models.lm_model import LmExample, compute_next_token_loss

from ..study.specs import ModelShape
from .shapes import llama_config


@dataclasses.dataclass(frozen=True)
class XlaMemory:
    """Bytes of the compiled step on one device: its arguments (parameters, optimizer state, batch),
    outputs, the outputs that reuse donated arguments' buffers, and the temporaries' peak."""

    argument: int
    output: int
    alias: int
    temp: int

    @property
    def peak(self) -> int:
        return self.argument + self.output - self.alias + self.temp


def training_step_memory(shape: ModelShape, vocab: int, batch: int, tokenizer_dir: str | None = None) -> XlaMemory:
    """The memory analysis of one f32 training step of `shape` on a batch of `batch` sequences, on
    jax's default device (the CPU here): value and gradient of the loss, then AdamW, parameters and
    optimizer state donated as a training loop donates them."""
    config = llama_config(shape, tokenizer_dir)
    Vocab, Batch, Pos = hax.Axis("vocab", vocab), hax.Axis("batch", batch), config.Pos
    opt = optax.adamw(1e-3, weight_decay=0.1)

    def loss_fn(model, tokens):
        ex = hax.vmap(lambda t: LmExample.causal(t), Batch)(hax.named(tokens, (Batch, Pos)))
        return compute_next_token_loss(model, ex, key=None).scalar()

    model = eqx.filter_eval_shape(lambda k: config.build(Vocab, key=k), jax.random.PRNGKey(0))
    params, static = eqx.partition(model, lambda x: isinstance(x, jax.ShapeDtypeStruct))

    def step(params, opt_state, tokens):
        model = eqx.combine(params, static)
        loss, grads = eqx.filter_value_and_grad(loss_fn)(model, tokens)
        grads = eqx.filter(grads, eqx.is_inexact_array)
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.filter(eqx.apply_updates(model, updates), eqx.is_inexact_array), opt_state, loss

    opt_state = jax.eval_shape(opt.init, params)
    tokens = jax.ShapeDtypeStruct((batch, shape.seq_len), jnp.int32)
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt_state, tokens).compile()
    m = compiled.memory_analysis()
    return XlaMemory(argument=m.argument_size_in_bytes, output=m.output_size_in_bytes,
                     alias=m.alias_size_in_bytes, temp=m.temp_size_in_bytes)

