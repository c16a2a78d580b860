"""Commands of rules/train.smk (and the CPT runs of rules/cpt.smk): train one run with its engine, in
this process or, when the job asks for several (runtime/launch.py), as rank 0..M-1 of a world that
this command launches."""

from __future__ import annotations

import json
import sys

from ..runtime import launch, ray_launch
from ..study.specs import RunSpec


def cmd_train(a) -> None:
    spec = RunSpec.from_dict(json.loads(a.spec))
    settings = json.loads(a.settings)
    world = launch.world_of_env()
    processes = launch.requested_processes()
    if world is None and processes > 1:
        if settings["engine"] != "trainer":
            sys.exit(f"{spec.run_id}: {processes} processes asked for ({launch.PROCESSES} or the SLURM job's tasks), "
                     "but training.engine is `loop`, which trains in one process: set training.engine: trainer")
        sys.exit(_launch(a.argv, processes))
    if world is not None and settings["engine"] != "trainer":
        sys.exit(f"{spec.run_id}: rank {world.process_id} of {world.num_processes} processes, but training.engine is "
                 "`loop`, which trains in one process: set training.engine: trainer")
    from ..model import loop, trainer  # imported here: a launcher process never loads jax

    common = dict(cache_dir=a.cache, tokenizer_dir=a.tokenizer, out_dir=a.out, checkpoint_root=a.checkpoints,
                  evals_per_run=settings["evals_per_run"], checkpoint_minutes=settings["checkpoint_minutes"],
                  wandb=settings.get("wandb"), init_from=a.init_from)
    if settings["engine"] == "loop":
        metrics = loop.train(spec, **common)
    else:
        metrics = trainer.train(spec, **common, trainer=settings.get("trainer"),
                                sharding=settings.get("sharding", "fsdp"), world=world)
    if metrics is not None:  # rank 0's (or the only process's)
        print(json.dumps({k: metrics[k] for k in ("run_id", "final_eval_loss", "wall_seconds", "tokens_per_second")}))


def _launch(args: list[str], processes: int) -> int:
    """Run this very command (`args`, after `python -m infinite_compute`) as `processes` ranks, with the
    launcher the environment names."""
    argv = [sys.executable, "-m", "infinite_compute", *args]
    kind = launch.launcher_of_env()
    if kind == "slurm":
        return launch.run_slurm(argv, processes)
    if kind == "ray":
        return ray_launch.run(argv, processes)
    return launch.run_local(argv, processes)
