"""One training on several hosts of a Ray cluster: one process per host, in a placement group, with
preemptions retried apart from failures (as levanter's TPU pod launcher does).

profiles/tpu/ray_job.py submits a training that asks for `hosts: M > 1` as a Ray job whose entrypoint
(this launcher, inside the job's Snakemake) needs no accelerator; the launcher then

1. on a TPU slice (`tpu_type`), takes the slice's head resource (`TPU-<type>-head`) in a placement group
   of its own, held for the whole training so that no other job takes the slice, and reads the slice's
   name there; every host of a slice carries its name as a resource, so
2. a placement group of M bundles, one per host (STRICT_SPREAD), each with the host's accelerators (and
   the slice's name), is the training's world;
3. rank 0's host gives the coordinator's address; each rank runs the training's command on its host,
   in the job's folder (a filesystem every host shares), killed with the Ray task that runs it.

When a host is lost (a preempted TPU VM, a stopped Ray node: the task dies with a system error), every
rank is stopped, the placement group released, and the training is started again: it resumes from
its last checkpoint. Up to IC_RAY_MAX_PREEMPTIONS (default 1000) times. A rank that fails on its own
(its command exits non-zero) fails the job at once, with a line that names it, and Snakemake's
`--retries` decide what follows. Before a rank starts, a TPU host's stale libtpu lock file (left by a
killed process; the next one cannot open the chips) is removed.

Imports ray inside its functions: the runtime layer is loaded by every job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from .launch import COORDINATOR, NUM_PROCESSES, PROCESS_ID, PROCESSES, die_with_parent, describe_exit, free_port

HOST_RESOURCES = "IC_RAY_HOST_RESOURCES"  # JSON: the resources of one rank's bundle, e.g. {"TPU": 4, "CPU": 8}
TPU_TYPE = "IC_RAY_TPU_TYPE"  # e.g. v4-64: the slice whose head resource the training holds
MAX_PREEMPTIONS = "IC_RAY_MAX_PREEMPTIONS"
WAIT_SECONDS = "IC_RAY_WAIT_SECONDS"  # how long to wait for the hosts (a placement group) before failing
SLICE_ENV = "IC_TPU_SLICE"  # a host's slice name where Ray's TPU detection has none (test clusters)
LIBTPU_LOCK = "/tmp/libtpu_lockfile"


class Preempted(Exception):
    """A host of the world was lost."""


def _system_errors():
    import ray.exceptions as rex

    return tuple(getattr(rex, n) for n in ("WorkerCrashedError", "NodeDiedError", "ActorDiedError",
                                           "LocalRayletDiedError", "ObjectLostError", "RaySystemError",
                                           "TaskCancelledError") if hasattr(rex, n))


def _rank_task():
    import ray

    @ray.remote(max_retries=0)
    def run_rank(argv: list[str], env: dict, cwd: str) -> int:
        if os.path.exists(LIBTPU_LOCK):
            try:
                os.remove(LIBTPU_LOCK)
            except OSError:
                pass
        # the host's own accelerator variables (Ray's TPU_VISIBLE_CHIPS, CUDA_VISIBLE_DEVICES) over the job's
        own = {k: v for k, v in os.environ.items() if k.startswith(("TPU_", "CUDA_", "NVIDIA_"))}
        return subprocess.run(argv, env={**env, **own}, cwd=cwd, preexec_fn=die_with_parent).returncode

    @ray.remote(max_retries=0)
    def where() -> tuple[str, int, str | None]:
        from ray.util import get_node_ip_address

        try:
            from ray.util.tpu import get_current_pod_name

            pod = get_current_pod_name()
        except Exception:  # noqa: BLE001 - not a TPU host
            pod = None
        return get_node_ip_address(), free_port(), pod or os.environ.get(SLICE_ENV)

    return run_rank, where


def _ready(pg, timeout: float, what: str) -> None:
    import ray

    try:
        ray.get(pg.ready(), timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise RuntimeError(f"no {what} became free within {timeout:.0f} s ({WAIT_SECONDS}): the cluster has no such "
                           f"hosts free, or none at all") from None


def run(argv: list[str], processes: int, env=None, log=sys.stderr) -> int:
    """Run `argv` as `processes` ranks, one per Ray host; the exit code of the training (0 on success)."""
    import ray

    env = dict(os.environ if env is None else env)
    ray.init(address=env.get("IC_RAY_ADDRESS") or "auto", log_to_driver=True)
    max_preemptions = int(env.get(MAX_PREEMPTIONS, "1000"))
    preemptions = 0
    while True:
        try:
            code = _attempt(argv, processes, env, log)
        except Preempted as e:
            preemptions += 1
            print(f"preemption {preemptions} of at most {max_preemptions}: {e}; restarting every rank, which "
                  "resume from the last checkpoint", file=log, flush=True)
            if preemptions > max_preemptions:
                print(f"the training failed: {preemptions} preemptions", file=log, flush=True)
                return 1
            continue
        print(f"ray launcher: {preemptions} preemption(s) retried", file=log, flush=True)
        return code


def _attempt(argv, processes, env, log) -> int:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    run_rank, where = _rank_task()
    host = {k: float(v) for k, v in json.loads(env.get(HOST_RESOURCES) or "{}").items()}
    wait = float(env.get(WAIT_SECONDS, "3600"))
    groups = []
    tasks: list = []
    try:
        slice_name = None
        if env.get(TPU_TYPE):
            head = placement_group([{"CPU": 0.01, f"TPU-{env[TPU_TYPE]}-head": 1}])
            groups.append(head)
            _ready(head, wait, f"slice of type {env[TPU_TYPE]} (resource TPU-{env[TPU_TYPE]}-head)")
            _, _, slice_name = ray.get(where.options(
                num_cpus=0.01, scheduling_strategy=PlacementGroupSchedulingStrategy(head, 0)).remote())
        bundle = {"CPU": host.pop("CPU", 1.0), **host, **({slice_name: 1.0} if slice_name else {})}
        pg = placement_group([dict(bundle) for _ in range(processes)], strategy="STRICT_SPREAD")
        groups.append(pg)
        _ready(pg, wait, f"{processes} hosts with {bundle}")
        on = [PlacementGroupSchedulingStrategy(pg, i) for i in range(processes)]
        ip, port, _ = ray.get(where.options(num_cpus=0, scheduling_strategy=on[0]).remote())
        coordinator = f"{ip}:{port}"
        rank_env = {k: v for k, v in env.items() if k not in (PROCESSES, "RAY_ADDRESS")}
        tasks = [run_rank.options(num_cpus=0, scheduling_strategy=on[r], **_custom(bundle)).remote(
            argv, {**rank_env, COORDINATOR: coordinator, NUM_PROCESSES: str(processes), PROCESS_ID: str(r)},
            os.getcwd())
                 for r in range(processes)]
        print(f"ray launcher: {processes} ranks on {processes} hosts, coordinator {coordinator}", file=log, flush=True)
        pending = list(tasks)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            rank = tasks.index(done[0])
            try:
                code = ray.get(done[0])
            except _system_errors() as e:
                raise Preempted(f"rank {rank}'s host was lost ({type(e).__name__})") from None
            if code != 0:
                print(f"the training failed: rank {rank} of {processes} {describe_exit(code)}", file=log, flush=True)
                return code if code > 0 else 1
        return 0
    finally:
        for t in tasks:
            ray.cancel(t, force=True)
        for g in groups:
            remove_placement_group(g)
        time.sleep(1)  # the cancelled ranks' workers go before the hosts are asked for again


def _custom(bundle: dict) -> dict:
    """A rank task's own resources inside its bundle: all but its CPUs, so that Ray sets the task's
    visible chips (TPU_VISIBLE_CHIPS, CUDA_VISIBLE_DEVICES) to its host's."""
    res = {k: v for k, v in bundle.items() if k not in ("CPU",) and not k.startswith("TPU-")}
    if "GPU" in res:
        return {"num_gpus": res.pop("GPU"), "resources": res}
    return {"resources": res} if res else {}
