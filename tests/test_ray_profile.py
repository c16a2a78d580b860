"""profiles/tpu against a real Ray head on 127.0.0.1 that declares TPU resources: jobs go through
Ray, a stopped (preempted) training job is reported failed, resubmitted and resumes from its
checkpoint. The test starts its own head on free ports with its own temp dir and stops only it."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from clusters import LONG_RUN as RUN
from clusters import free_port, stop, wait_for_checkpoint, write_long_run_config
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
    stop([head], temp)


def _jobs(address):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address).list_jobs()


def test_the_tpu_profile_runs_jobs_on_ray_and_resumes_a_stopped_training(ray_head, tmp_path):
    wd = project_copy(tmp_path / "project")
    write_long_run_config(wd, "ray.yaml")
    env = {**os.environ, "RAY_ADDRESS": ray_head, "RAY_AUTH_MODE": "disabled", "PATH": f"{BIN}:{os.environ['PATH']}"}
    smk = subprocess.Popen(
        [os.path.join(BIN, "snakemake"), f"results/models/{RUN}/metrics.json", "results/plan.json", "--profile", "profiles/tpu",
         "--configfile", "ray.yaml", "--set-threads", "train_model=1", "--retries", "1"],
        cwd=wd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    # preempt the training once it has saved a checkpoint: stop its Ray job
    wait_for_checkpoint(os.path.join(wd, "results", "checkpoints"), smk, 600)
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
