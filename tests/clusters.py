"""Helpers for the tests that start a real cluster (a Ray head, a single-node SLURM) of their own:
free ports, and stopping only the processes the test started (never `ray stop` or a system service)."""

import glob
import os
import signal
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pids_using(marker: str) -> list[int]:
    """Processes whose command line mentions `marker` (the test's own temp dir)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        out.append(int(d))
            except OSError:
                pass
    return out


def stop(procs: list[subprocess.Popen], marker: str) -> None:
    """SIGTERM each process group the test started, then SIGKILL whatever still runs from its temp dir."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    for pid in pids_using(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# one training of 256 steps (16k tokens x 8 epochs, 8 x 64-token sequences a step) with a checkpoint
# every 3 s: long enough to preempt it after a checkpoint (2 processes on this machine train ~14 steps/s,
# ~18 s in all)
LONG_RUN = "t1-d16k-ep8-lr0.01-wd0.1-s0"
LONG_RUN_STEPS = 256


def write_long_run_config(workdir: str, name: str, engine: str = "trainer") -> str:
    """The smoke config with a single sweep: LONG_RUN, trained by `engine`. Returns the config file's
    name in `workdir`."""
    import yaml

    with open(os.path.join(workdir, ".test", "config.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg["training"]["checkpoint_minutes"] = 0.05
    cfg["training"]["engine"] = engine
    cfg["sweeps"] = [{"name": "long", "models": ["t1"], "token_budgets": [16384], "epochs": [8],
                      "learning_rates": [0.01], "weight_decays": [0.1], "seeds": [0]}]
    with open(os.path.join(workdir, name), "w") as f:
        yaml.safe_dump(cfg, f)
    return name


def wait_for_checkpoint(checkpoint_root: str, proc: subprocess.Popen, timeout: float, why=lambda: "") -> None:
    """Until a levanter checkpoint under `checkpoint_root` (a run's `<run>-<hash>` dirs) is complete,
    i.e. has its metadata.json (written last), while `proc` runs; `why()` explains a failure."""
    deadline = time.time() + timeout
    while not glob.glob(os.path.join(checkpoint_root, "*", "checkpoints", "step-*", "metadata.json")):
        assert proc.poll() is None and time.time() < deadline, f"no complete checkpoint appeared {why()}"
        time.sleep(0.2)


def start_pool(sock, owner: int, workers: int = 1, env: dict | None = None, log=subprocess.DEVNULL):
    """A warm-worker pool (infinite_compute.cli.pool) on `sock` owned by process `owner`, once its
    socket and workers are up; its psutil.Process."""
    import psutil

    p = subprocess.Popen([sys.executable, "-m", "infinite_compute.cli.pool", str(sock), str(workers), str(owner)],
                         env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pool = psutil.Process(p.pid)
    for _ in range(200):
        if os.path.exists(sock) and len(pool.children()) == workers:
            return pool
        time.sleep(0.05)
    raise AssertionError("the pool did not start")


def profile_resources(workdir: str, profile: str, **changes) -> list[str]:
    """The profile's own set-resources as command-line arguments, with `changes` ({rule: {key: value}})
    applied: a --set-resources on the command line replaces the profile's whole list, not one key."""
    import yaml

    with open(os.path.join(workdir, "profiles", profile, "config.yaml")) as f:
        rules = yaml.safe_load(f)["set-resources"]
    for rule, res in changes.items():
        rules[rule] = {**rules.get(rule, {}), **res}
    return ["--set-resources", *[f"{rule}:{k}={v}" for rule, res in rules.items() for k, v in res.items()]]
