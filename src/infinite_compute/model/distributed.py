"""Joining a training's world (runtime/launch.py) with `jax.distributed`, and the device mesh the config
asks for.

The study initializes jax.distributed itself, before levanter's Trainer, and tells levanter not to
(`DistributedConfig(initialize_jax_distributed=False)`): the device count must be known to lay out a
plain data-parallel mesh, and levanter's own SLURM detection would join a world in every SLURM job,
single-task ones included.

The mesh (levanter's replica x data x model axes, `training.sharding` and `training.levanter`):

- `fsdp` (the default): the batch is split over every device and so are the parameters and the
  optimizer state, on their `embed` axis (levanter's default: fully sharded data parallel).
- `data`: plain data parallelism. Every device holds the whole model; the batch is split over them,
  and gradients are averaged across them.
- `model_axis_size: M > 1` adds tensor parallelism to either: M devices split each layer's matmuls, on
  the Llama axes levanter shards (`mlp`, the MLP's width, and `kv_head`, attention's key/value heads);
  the batch is split over the rest.
"""

from __future__ import annotations

import logging
import os

import jax

from ..runtime.launch import World

logger = logging.getLogger(__name__)

# the Llama axes that tensor parallelism splits (levanter's own choice for Llama, main/inference_repl.py)
TENSOR_PARALLEL_AXES = ("mlp", "kv_head")
SHARDINGS = ("fsdp", "data")
# a rank whose peers stop sending heartbeats for this long exits with an error naming them
HEARTBEAT_SECONDS = 60


def join(world: World | None) -> None:
    """Join `world` (no-op for a process that trains alone); then jax sees every process's devices."""
    if world is None or jax.distributed.is_initialized():
        return
    if "cpu" in (os.environ.get("JAX_PLATFORMS") or "cpu").split(",")[0]:
        # CPU devices of several processes talk over gloo (TCP); XLA has no other CPU collectives here
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=world.coordinator,
        num_processes=world.num_processes,
        process_id=world.process_id,
        local_device_ids=list(world.local_device_ids) if world.local_device_ids is not None else None,
        initialization_timeout=int(os.environ.get("IC_INIT_TIMEOUT", "600")),
        heartbeat_timeout_seconds=HEARTBEAT_SECONDS,
    )
    logger.info("joined a world of %d processes as rank %d (%s): %d devices, %d here", world.num_processes,
                world.process_id, world.source, jax.device_count(), jax.local_device_count())


def mesh_settings(sharding: str, levanter: dict) -> dict:
    """levanter TrainerConfig settings of the mesh: `sharding` (fsdp or data) and the config's
    `training.levanter` keys (model_axis_size, replica_dcn_axis_size, tensor_parallel_axes, ...).
    Needs the device count: call after `join`."""
    if sharding not in SHARDINGS:
        raise ValueError(f"training.sharding: {sharding!r}: expected one of {', '.join(SHARDINGS)}")
    out = dict(levanter)
    model = int(out.get("model_axis_size", 1))
    dcn = int(out.get("replica_dcn_axis_size", 1))
    n = jax.device_count()
    if n % (model * dcn):
        raise ValueError(f"training.levanter: model_axis_size {model} x replica_dcn_axis_size {dcn} does not divide "
                         f"the {n} devices of this training")
    if model > 1:
        out.setdefault("tensor_parallel_axes", list(TENSOR_PARALLEL_AXES))
    if sharding == "data":
        # every device of a slice on the replica axis (the batch's), none on data (the parameters')
        out["replica_ici_axis_size"] = n // (model * dcn)
        out["fsdp_axis"] = None
    return out


def describe_mesh(trainer_config) -> str:
    """`replica R x data D x model M` of a levanter TrainerConfig's mesh."""
    shape = dict(trainer_config.device_mesh.shape)
    return " x ".join(f"{k} {v}" for k, v in shape.items())
