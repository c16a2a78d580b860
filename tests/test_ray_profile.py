"""profiles/tpu against a real Ray head on 127.0.0.1 that declares TPU resources: jobs go through
Ray, a stopped (preempted) training job is reported failed, resubmitted and resumes from its
checkpoint. The test starts its own head on free ports with its own temp dir and stops only it."""

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from test_workflow import ROOT, project_copy

pytestmark = pytest.mark.workflow
BIN = os.path.dirname(sys.executable)
RUN = "t1-d16k-ep64-lr0.01-wd0.1-s0"  # ~2,000 steps: long enough to stop it after a checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_using(marker: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        out.append(int(d))
            except OSError:
                pass
    return out


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    temp = str(tmp_path_factory.mktemp("ray"))
    names = ["port", "dashboard-port", "node-manager-port", "object-manager-port", "ray-client-server-port",
             "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port"]
    ports = {k: _free_port() for k in names}
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(
        [os.path.join(BIN, "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         "--dashboard-host=127.0.0.1", "--num-cpus=2", '--resources={"TPU": 4, "TPU-v4-8-head": 1}',
         f"--temp-dir={temp}", *[f"--{k}={v}" for k, v in ports.items()]],
        stdout=open(os.path.join(temp, "head.log"), "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    address = f"http://127.0.0.1:{ports['dashboard-port']}"
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
    yield address
    # stop only this head: its process group, then anything still running from its temp dir
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
    for pid in _pids_using(temp):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _jobs(address):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address).list_jobs()


def test_the_tpu_profile_runs_jobs_on_ray_and_resumes_a_stopped_training(ray_head, tmp_path):
    wd = project_copy(tmp_path / "project")
    cfg = yaml.safe_load(open(os.path.join(ROOT, ".test", "config.yaml")))
    cfg["training"]["checkpoint_minutes"] = 0.05  # a checkpoint every 3 s
    cfg["sweeps"] = [{"name": "long", "models": ["t1"], "token_budgets": [16384], "epochs": [64],
                      "learning_rates": [0.01], "weight_decays": [0.1], "seeds": [0]}]
    with open(os.path.join(wd, "ray.yaml"), "w") as f:
        yaml.safe_dump(cfg, f)
    env = {**os.environ, "RAY_ADDRESS": ray_head, "RAY_AUTH_MODE": "disabled", "PATH": f"{BIN}:{os.environ['PATH']}"}
    smk = subprocess.Popen(
        [os.path.join(BIN, "snakemake"), f"results/models/{RUN}/metrics.json", "results/plan.json", "--profile", "profiles/tpu",
         "--configfile", "ray.yaml", "--set-threads", "train_model=1", "--retries", "1"],
        cwd=wd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    # preempt the training once it has saved a checkpoint: stop its Ray job
    deadline = time.time() + 600
    while not glob.glob(os.path.join(wd, "results", "checkpoints", f"{RUN}-*", "checkpoints", "step-*")):
        assert smk.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.5)
    (stopped,) = [j.submission_id for j in _jobs(ray_head)
                  if json.loads(j.metadata.get("wildcards", "{}")).get("run") == RUN]
    script = os.path.join(wd, "profiles", "tpu", "ray_job.py")
    subprocess.run([sys.executable, script, "cancel", stopped], env=env, check=True, timeout=60)
    out, _ = smk.communicate(timeout=900)
    assert smk.returncode == 0, out[-5000:]
    status = subprocess.run([sys.executable, script, "status", stopped], env=env, capture_output=True, text=True)
    assert status.stdout.strip() == "failed"
    jobs = _jobs(ray_head)
    rules = {j.metadata["rule"] for j in jobs}
    assert {"prepare_corpus", "train_tokenizer", "tokenize_corpus", "build_cache", "train_model"} <= rules
    # a light rule (localrules) ran on this machine, not on Ray
    assert os.path.exists(os.path.join(wd, "results", "plan.json")) and "write_plan" not in rules
    trains = [j for j in jobs if j.metadata["rule"] == "train_model"]
    assert sorted(str(getattr(j.status, "value", j.status)) for j in trains) == ["STOPPED", "SUCCEEDED"]
    # the resubmitted job resumed from the stopped one's checkpoint
    log = open(os.path.join(wd, "logs", "train", f"{RUN}.log")).read()
    assert "Resuming" in log or "Loading checkpoint" in log, log[-3000:]
    metrics = json.load(open(os.path.join(wd, "results", "models", RUN, "metrics.json")))
    assert metrics["steps"] == 2048 and not metrics["diverged"]
    shutil.rmtree(os.path.join(wd, "results", "checkpoints"), ignore_errors=True)


def test_the_slurm_profile_gives_each_rule_its_resources(tmp_path):
    """No SLURM here: a dry run through the slurm executor plugin, with the profile's per-rule resources."""
    wd = project_copy(tmp_path / "project")
    p = subprocess.run([os.path.join(BIN, "snakemake"), "-n", "figures/all", "--profile", "profiles/slurm",
                        "--configfile", ".test/config.yaml"], cwd=wd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    lines = p.stdout.splitlines()

    def resources(rule):  # the resources line of each job of `rule` in the dry run
        starts = [i for i, ln in enumerate(lines) if ln == f"rule {rule}:"]
        return [next(ln for ln in lines[i + 1:] if ln.strip().startswith("resources:")) for i in starts]

    train = resources("train_model")
    assert train and all("gres=gpu:4" in r and "runtime=2880" in r for r in train)
    prepare = resources("prepare_corpus")
    assert prepare and "slurm_partition=gpu" in prepare[0] and "gres" not in prepare[0]
