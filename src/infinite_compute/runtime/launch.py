"""One training on several processes (hosts): which world a process belongs to, and the launchers
that start one.

A training job's command (`python -m infinite_compute train ...`) is one process unless its world has
more. Where the processes come from:

- **SLURM.** A job step of several tasks (`srun --ntasks=M`) is a world of M processes; its rank,
  size and coordinator come from SLURM's environment. A batch job allocated M > 1 tasks whose command
  runs outside a step (profiles/slurm's `mpi` resource) starts that step itself: `srun` runs the same
  command once per task, with `--kill-on-bad-exit`, so a task that dies ends the others.
- **Ray** (`IC_LAUNCHER=ray`, which profiles/tpu/ray_job.py sets for a job that asks for more than one
  host): one process per host of a placement group (runtime/ray_launch.py), preemptions retried apart
  from failures.
- **This machine** (`IC_PROCESSES=M` alone): M processes here, joined over localhost; the stand-in of a
  multi-host world, and what the tests run.

The launchers hand each process its rank through IC_COORDINATOR, IC_NUM_PROCESSES and IC_PROCESS_ID;
model/distributed.py joins them with `jax.distributed` before jax computes anything. A single-task
SLURM job (SLURM_JOB_ID set, one task) joins no world, on purpose: levanter would otherwise call
`jax.distributed.initialize` there, and hand jax the raw CUDA_VISIBLE_DEVICES values as device ids.

Python's standard library only: the launcher process never imports jax.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import socket
import subprocess
import sys
import time

COORDINATOR = "IC_COORDINATOR"  # host:port of rank 0's coordination service
NUM_PROCESSES = "IC_NUM_PROCESSES"
PROCESS_ID = "IC_PROCESS_ID"
PROCESSES = "IC_PROCESSES"  # how many processes a training asks for (launcher side)
LAUNCHER = "IC_LAUNCHER"  # `local` (the default), `slurm` or `ray`
WORLD_VARS = (COORDINATOR, NUM_PROCESSES, PROCESS_ID)
# what rank 0 waits for a dead rank's peers before it stops them (they fail at their next collective)
GRACE_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class World:
    """The processes of one training, from one member's point of view."""

    coordinator: str  # host:port
    num_processes: int
    process_id: int
    local_device_ids: tuple[int, ...] | None = None  # None: every device this process sees
    source: str = "launcher"  # who made it: launcher (IC_* variables) or slurm

    @property
    def is_primary(self) -> bool:
        return self.process_id == 0


def _int(env, key: str) -> int:
    try:
        return int(env[key])
    except (KeyError, ValueError):
        raise ValueError(f"{key}={env.get(key)!r}: expected an integer") from None


def world_of_env(env=None) -> World | None:
    """The world this process is a member of, None when it trains alone."""
    env = os.environ if env is None else env
    if any(k in env for k in WORLD_VARS):
        missing = [k for k in WORLD_VARS if k not in env]
        if missing:
            raise ValueError(f"{', '.join(missing)} not set beside {', '.join(k for k in WORLD_VARS if k in env)}: "
                             "a member of a world needs all three")
        n, rank = _int(env, NUM_PROCESSES), _int(env, PROCESS_ID)
        if not 0 <= rank < n:
            raise ValueError(f"{PROCESS_ID}={rank} is not in 0..{n - 1} ({NUM_PROCESSES}={n})")
        return World(env[COORDINATOR], n, rank) if n > 1 else None
    if "SLURM_STEP_NUM_TASKS" in env and _int(env, "SLURM_STEP_NUM_TASKS") > 1:
        return slurm_world(env)
    return None


def slurm_world(env) -> World:
    """A task of a SLURM job step of several tasks. The coordinator is the step's first node, on a
    port derived from the job and step ids (as jax's own SLURM detection derives one from the job's);
    the devices are the task's GPUs."""
    n, rank = _int(env, "SLURM_STEP_NUM_TASKS"), _int(env, "SLURM_PROCID")
    nodes = slurm_hostnames(env.get("SLURM_STEP_NODELIST") or env["SLURM_JOB_NODELIST"])
    port = 10000 + (_int(env, "SLURM_JOB_ID") * 31 + int(env.get("SLURM_STEP_ID", "0"))) % 50000
    return World(f"{nodes[0]}:{port}", n, rank, slurm_local_device_ids(env), "slurm")


def slurm_local_device_ids(env) -> tuple[int, ...] | None:
    """The jax device ids of this task's GPUs, None on a node without GPUs.

    jax numbers the GPUs a process sees from 0, in CUDA_VISIBLE_DEVICES order, whatever ids that
    variable holds: SLURM writes the node's own ids (e.g. 4,5,6,7) on sites without device cgroups,
    and 0..k-1 where cgroups renumber them. Either way a task that sees only its own GPUs uses all of
    them, 0..k-1; a task that sees every GPU of its node, beside other tasks of the step there (no
    per-task binding), takes the one at its local rank."""
    visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if not visible:
        return None
    tasks_here = _tasks_on_this_node(env)
    if tasks_here > 1 and len(visible) == tasks_here:
        return (_int(env, "SLURM_LOCALID"),)
    return tuple(range(len(visible)))


def _tasks_on_this_node(env) -> int:
    """SLURM_STEP_TASKS_PER_NODE's count for this node, e.g. '4(x2)' or '2,1' (node SLURM_NODEID)."""
    counts: list[int] = []
    for part in (env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or "1").split(","):
        if "(x" in part:
            c, r = part.rstrip(")").split("(x")
            counts += [int(c)] * int(r)
        else:
            counts.append(int(part))
    node = int(env.get("SLURM_NODEID", "0"))
    return counts[node] if node < len(counts) else counts[-1]


def slurm_hostnames(nodelist: str) -> list[str]:
    """SLURM's compressed host list (`gpu[01-03,07],login1`), expanded as `scontrol show hostnames` does."""
    out, i, parts, depth, cur = [], 0, [], 0, ""
    for ch in nodelist:  # split on the commas outside brackets
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for part in filter(None, parts):
        if "[" not in part:
            out.append(part)
            continue
        prefix, rest = part.split("[", 1)
        ranges, suffix = rest.split("]", 1)
        for r in ranges.split(","):
            lo, _, hi = r.partition("-")
            for k in range(int(lo), int(hi or lo) + 1):
                out.append(f"{prefix}{k:0{len(lo)}d}{suffix}")
    return out


def requested_processes(env=None) -> int:
    """How many processes this (launcher) process is asked to start: IC_PROCESSES, else the tasks
    of the SLURM batch job it runs in, outside any step, else 1."""
    env = os.environ if env is None else env
    if PROCESSES in env:
        n = _int(env, PROCESSES)
        if n < 1:
            raise ValueError(f"{PROCESSES}={n}: expected at least 1")
        return n
    if "SLURM_JOB_ID" in env and "SLURM_STEP_NUM_TASKS" not in env:
        return slurm_job_tasks(env).tasks
    return 1


@dataclasses.dataclass(frozen=True)
class SlurmTasks:
    """The task layout of a SLURM job: what its step of one task per process asks for."""

    tasks: int
    nodes: int = 1
    tasks_per_node: int = 0  # 0: the job did not ask for a number per node
    cpus_per_task: int = 1


def slurm_job_tasks(env) -> SlurmTasks:
    """The task layout of the SLURM job this process runs in: from the batch job's environment, or,
    where Snakemake's SLURM jobstep has cleared it (it keeps only the job's id in the environment of
    an `mpi` job's command), from `scontrol show job`."""
    if "SLURM_NTASKS" in env:
        per_node = (env.get("SLURM_NTASKS_PER_NODE") or "0").split("(")[0]
        return SlurmTasks(_int(env, "SLURM_NTASKS"), int(env.get("SLURM_JOB_NUM_NODES") or 1), int(per_node or 0),
                          int(env.get("SLURM_CPUS_PER_TASK") or 1))
    fields = _scontrol_job(env["SLURM_JOB_ID"])
    per_node = fields.get("NtasksPerN:B:S:C", "0").split(":")[0]
    return SlurmTasks(int(fields["NumTasks"]), int(fields.get("NumNodes", "1").split("-")[0]),
                      int(per_node) if per_node.isdigit() else 0, int(fields.get("CPUs/Task", "1")))


@functools.lru_cache(maxsize=None)
def _scontrol_job(job: str) -> dict:
    """`scontrol show job`'s fields for `job`, read once per process (the launcher and run_slurm both
    need the job's layout, which does not change while it runs)."""
    try:
        p = subprocess.run(["scontrol", "show", "job", "--oneliner", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"SLURM job {job}: `scontrol show job` could not run ({e}): without it (or SLURM_NTASKS) "
                           "the number of tasks to train on is not known") from None
    fields = dict(kv.split("=", 1) for kv in p.stdout.split() if "=" in kv)
    if p.returncode != 0 or "NumTasks" not in fields:
        raise RuntimeError(f"SLURM job {job}: `scontrol show job` gave no NumTasks ({p.stderr.strip()[-500:]}): "
                           "the number of tasks to train on is not known")
    return fields


def launcher_of_env(env=None) -> str:
    env = os.environ if env is None else env
    kind = env.get(LAUNCHER) or ("slurm" if "SLURM_JOB_ID" in env else "local")
    if kind not in ("local", "slurm", "ray"):
        raise ValueError(f"{LAUNCHER}={kind!r}: expected local, slurm or ray")
    return kind


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """In a launched process: SIGKILL when the launcher dies (Linux), so no rank outlives its job."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def run_local(argv: list[str], processes: int, env=None, log=sys.stderr) -> int:
    """Run `argv` as `processes` ranks on this machine, joined over localhost. Returns 0 when every
    rank succeeds; when one fails, the others get GRACE_SECONDS to fail at their next collective and
    are then stopped, and the exit code is the first failed rank's (1 for a signal), with a line that
    names it."""
    env = dict(os.environ if env is None else env)
    coordinator = f"127.0.0.1:{free_port()}"
    procs = []
    for rank in range(processes):
        renv = {**env, COORDINATOR: coordinator, NUM_PROCESSES: str(processes), PROCESS_ID: str(rank)}
        renv.pop(PROCESSES, None)
        procs.append(subprocess.Popen(argv, env=renv, preexec_fn=die_with_parent))
    print(f"launched {processes} processes (pids {', '.join(str(p.pid) for p in procs)}), coordinator {coordinator}",
          file=log, flush=True)

    def stop_all(signum, _frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)
    old = {s: signal.signal(s, stop_all) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        failed = None
        while True:
            codes = [p.poll() for p in procs]
            if failed is None:
                failed = next((r for r, c in enumerate(codes) if c not in (None, 0)), None)
                if failed is not None:
                    print(f"rank {failed} (pid {procs[failed].pid}) {describe_exit(codes[failed])}: "
                          f"stopping the other ranks", file=log, flush=True)
                    deadline = time.time() + GRACE_SECONDS
            if all(c is not None for c in codes):
                break
            if failed is not None and time.time() > deadline:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            time.sleep(0.2)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if failed is None:
        return 0
    code = procs[failed].returncode
    print(f"the training failed: rank {failed} of {processes} {describe_exit(code)}", file=log, flush=True)
    return code if code > 0 else 1


def run_slurm(argv: list[str], processes: int, env=None) -> int:
    """The job step of `processes` tasks that runs `argv` once per task (inside a SLURM allocation),
    laid out as the job asked: its nodes, tasks per node and CPUs per task (a step asks for 1 CPU per
    task unless told). A task that dies ends the step; srun's error line names it."""
    env = dict(os.environ if env is None else env)
    layout = slurm_job_tasks(env)
    cmd = ["srun", f"--ntasks={processes}", f"--nodes={layout.nodes}", f"--cpus-per-task={layout.cpus_per_task}",
           *([f"--ntasks-per-node={layout.tasks_per_node}"] if layout.tasks_per_node else []),
           "--kill-on-bad-exit=1", "--label", *argv]
    return subprocess.run(cmd, env=env).returncode
