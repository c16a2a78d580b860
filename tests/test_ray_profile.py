"""profiles/tpu against a real Ray cluster on 127.0.0.1: a head and two worker nodes that stand for the
two hosts of a TPU slice (each with one "TPU" chip and the slice's name as a resource, one of them its
head resource). The data jobs go through Ray; the training asks for 2 hosts and runs as one process
per host, joined into one jax world. A worker node stopped mid-training is a preemption: the launcher
restarts both ranks once the host is back, and they resume from the checkpoint, in the same Ray job.
The test starts its own nodes on free ports with their own temp dirs and stops only them."""

import json
import os
import shutil
import subprocess
import sys
import time
import types

import pytest
from clusters import LONG_RUN as RUN
from clusters import LONG_RUN_STEPS, free_port, pids_using, profile_resources, stop, wait_for_checkpoint, write_long_run_config
from test_workflow import project_copy

pytestmark = pytest.mark.workflow
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    temp = str(tmp_path_factory.mktemp("ray"))
    names = ["port", "dashboard-port", "node-manager-port", "object-manager-port", "ray-client-server-port",
             "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port"]
    ports = {k: free_port() for k in names}
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(
        [os.path.join(BIN, "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         "--dashboard-host=127.0.0.1", "--num-cpus=2", '--resources={}',
         f"--temp-dir={temp}", *[f"--{k}={v}" for k, v in ports.items()]],
        stdout=open(os.path.join(temp, "head.log"), "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    address = f"http://127.0.0.1:{ports['dashboard-port']}"
    head.gcs = f"127.0.0.1:{ports['port']}"
    from ray.job_submission import JobSubmissionClient

    deadline = time.time() + 120
    while True:
        try:
            JobSubmissionClient(address).list_jobs()
            break
        except Exception:
            if time.time() > deadline or head.poll() is not None:
                raise RuntimeError(f"the Ray head did not come up: {open(os.path.join(temp, 'head.log')).read()[-3000:]}")
            time.sleep(1)
    workers = types.SimpleNamespace(temp=temp, gcs=head.gcs, procs={})
    for name, extra in (("a", {"TPU-v4-8-head": 1}), ("b", {})):
        workers.procs[name] = start_worker(workers, name, extra)
    wait_for_nodes(address, 3, head)
    yield address, workers
    stop([head, *workers.procs.values()], temp)


SLICE = "ictest-slice"


def start_worker(workers, name, extra):
    """A worker node: one host of the slice (1 chip, the slice's name), its own ports and temp dir."""
    temp = os.path.join(workers.temp, f"worker-{name}")
    os.makedirs(temp, exist_ok=True)
    names = ["node-manager-port", "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
             "runtime-env-agent-port", "metrics-export-port"]
    ports = {k: free_port() for k in names}
    lo = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "IC_TPU_SLICE": SLICE}
    return subprocess.Popen(
        [os.path.join(BIN, "ray"), "start", "--block", f"--address={workers.gcs}", "--node-ip-address=127.0.0.1",
         "--num-cpus=2", f"--resources={json.dumps({'TPU': 1, SLICE: 1, **extra})}", f"--temp-dir={temp}",
         f"--min-worker-port={lo}", f"--max-worker-port={lo + 40}", *[f"--{k}={v}" for k, v in ports.items()]],
        stdout=open(os.path.join(temp, "node.log"), "a"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_for_nodes(address, n, head, timeout=120):
    deadline = time.time() + timeout
    while True:
        p = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address={head.gcs!r}); "
                            "print(sum(n['Alive'] for n in ray.nodes()))"], capture_output=True, text=True,
                           env={**os.environ, "RAY_AUTH_MODE": "disabled"})
        if p.returncode == 0 and p.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        assert time.time() < deadline, f"the Ray nodes did not come up: {p.stdout[-2000:]}{p.stderr[-2000:]}"
        time.sleep(2)


def preempt(workers, name):
    """Stop a worker node as a preempted host goes: SIGKILL its raylet, every process under it (its Ray
    workers and the training they run) and the rest of its processes."""
    import psutil

    marker = os.path.join(workers.temp, f"worker-{name}")
    victims = []
    for pid in pids_using(marker) + [workers.procs[name].pid]:
        try:
            p = psutil.Process(pid)
            victims += [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    for p in victims:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    workers.procs[name].wait(30)


def _jobs(address):
    from ray.job_submission import JobSubmissionClient

    # the submitted jobs; ray.init() connections (the launcher's, this test's) are listed as drivers
    return [j for j in JobSubmissionClient(address).list_jobs() if j.submission_id]


def test_the_tpu_profile_trains_on_two_hosts_and_retries_a_stopped_host_as_a_preemption(ray_head, tmp_path):
    address, workers = ray_head
    wd = project_copy(tmp_path / "project")
    write_long_run_config(wd, "ray.yaml")
    env = {**os.environ, "RAY_ADDRESS": address, "RAY_AUTH_MODE": "disabled", "PATH": f"{BIN}:{os.environ['PATH']}"}
    smk = subprocess.Popen(
        [os.path.join(BIN, "snakemake"), f"results/models/{RUN}/metrics.json", "results/plan.json", "--profile", "profiles/tpu",
         "--configfile", "ray.yaml", "--set-threads", "train_model=1",
         *profile_resources(wd, "tpu", train_model={"hosts": 2, "tpu_chips": 1}), "--retries", "0"],
        cwd=wd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    # preempt host b once the training has saved a checkpoint, then bring it back (a new VM)
    wait_for_checkpoint(os.path.join(wd, "results", "checkpoints"), smk, 600)
    preempt(workers, "b")
    workers.procs["b"] = start_worker(workers, "b", {})
    out, _ = smk.communicate(timeout=900)
    assert smk.returncode == 0, out[-5000:]
    jobs = _jobs(address)
    rules = {j.metadata["rule"] for j in jobs}
    assert {"prepare_corpus", "train_tokenizer", "tokenize_corpus", "build_cache", "train_model"} <= rules
    # a light rule (localrules) ran on this machine, not on Ray
    assert os.path.exists(os.path.join(wd, "results", "plan.json")) and "write_plan" not in rules
    # one Ray job trained: the launcher retried the preemption itself (Snakemake's --retries 0)
    trains = [j for j in jobs if j.metadata["rule"] == "train_model"]
    assert [str(getattr(j.status, "value", j.status)) for j in trains] == ["SUCCEEDED"]
    log = open(os.path.join(wd, "logs", "train", f"{RUN}.log")).read()
    assert "ray launcher: 2 ranks on 2 hosts" in log and "preemption 1 of at most" in log, log[-5000:]
    assert "ray launcher: 1 preemption(s) retried" in log, log[-5000:]
    for rank in (0, 1):
        assert f"joined a world of 2 processes as rank {rank} (launcher)" in log, log[-5000:]
    assert "Resuming training from step" in log, log[-5000:]
    metrics = json.load(open(os.path.join(wd, "results", "models", RUN, "metrics.json")))
    assert metrics["steps"] == LONG_RUN_STEPS and not metrics["diverged"]
    steps = [r["step"] for r in metrics["train_loss"]]
    assert steps == sorted(set(steps))
    shutil.rmtree(os.path.join(wd, "results", "checkpoints"), ignore_errors=True)
