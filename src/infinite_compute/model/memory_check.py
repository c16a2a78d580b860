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
from jax.sharding import NamedSharding
from levanter.models.lm_model import LmExample, compute_next_token_loss
from levanter.trainer import TrainerConfig

from ..study.specs import ModelShape
from . import sampling as sampling_mod
from . import scoring
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



def _sharded(params, mapping, mesh):
    """`params` (ShapeDtypeStructs) with the shardings levanter's `mapping` gives them on `mesh`."""
    shard = hax.partitioning.infer_resource_partitions(params, mapping, mesh=mesh)
    leaves, tree = jax.tree_util.tree_flatten(params)
    specs = jax.tree_util.tree_leaves(shard, is_leaf=lambda x: isinstance(x, NamedSharding))
    return tree.unflatten([jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s) for a, s in zip(leaves, specs)])


def _analysis(compiled) -> XlaMemory:
    m = compiled.memory_analysis()
    return XlaMemory(argument=m.argument_size_in_bytes, output=m.output_size_in_bytes,
                     alias=m.alias_size_in_bytes, temp=m.temp_size_in_bytes)


def inference_memory(shape: ModelShape, vocab: int, batch: int, members: int = 1, sampling: bool = False) -> XlaMemory:
    """The memory analysis, on one of jax's devices, of the study's scoring program (model/scoring.py:
    per-token log-probs of `batch` sequences) or, with `sampling`, of its decode program
    (model/sampling.py: `batch` sequences from a mixture of `members`), compiled as those modules run
    it: f32 parameters sharded over all devices as scoring.load_model places them, the batch split."""
    config = llama_config(shape, None, gradient_checkpointing=False)
    Vocab = hax.Axis("vocab", vocab)
    trainer = TrainerConfig(require_accelerator=False)
    T = shape.seq_len
    with trainer.use_device_mesh(), hax.axis_mapping(trainer.compute_axis_mapping):
        model = eqx.filter_eval_shape(lambda k: config.build(Vocab, key=k), jax.random.PRNGKey(0))
        params, static = eqx.partition(model, lambda x: isinstance(x, jax.ShapeDtypeStruct))
        ps = tuple(_sharded(params, trainer.parameter_axis_mapping, trainer.device_mesh) for _ in range(members))
        tokens = jax.ShapeDtypeStruct((batch, T), jnp.int32)
        if sampling:
            fn = sampling_mod._decode_fn(members)

            def run(ps, start, key, lens):
                return fn(tuple(eqx.combine(p, static) for p in ps), start, key, 1.0, lens)

            args = (ps, tokens, jax.ShapeDtypeStruct((2,), jnp.uint32), jax.ShapeDtypeStruct((batch,), jnp.int32))
        else:
            fn = scoring._logprob_fn()

            def run(ps, tokens):
                return fn(eqx.combine(ps[0], static), tokens)

            args = (ps, tokens)
        return _analysis(jax.jit(run).lower(*args).compile())
