"""profiles/slurm, unmodified, against a real single-node SLURM (Debian's slurm-wlm 22.05 and munge)
that the test starts on 127.0.0.1 with its own config, ports, state and munge socket, and stops by
pid. The node declares what the profile asks for (16 CPUs, 125 GiB, 4 GPUs as fake devices, partition
`gpu`), so each job is an sbatch job with its rule's resources. The training (levanter's Trainer) is
the profile's step of one task per GPU, on 2 GPUs: a world of 2 processes. Cancelled after a
checkpoint (scancel, as a preemption), it is reported failed, resubmitted by the profile's retries,
and resumes from its checkpoint.

Needs root (slurmd launches the jobs) and the slurm-wlm and munge packages; .ci/run installs them."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time

import pytest
from clusters import LONG_RUN as RUN
from clusters import LONG_RUN_STEPS, free_port, profile_resources, stop, wait_for_checkpoint, write_long_run_config
from test_workflow import project_copy

pytestmark = pytest.mark.workflow
BIN = os.path.dirname(sys.executable)
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "srun")


def _which(name):
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = [d for d in DAEMONS if not _which(d)]
    if missing:
        pytest.skip(f"no SLURM here ({', '.join(missing)} not found): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("slurmd must run as root to launch jobs")
    d = str(tmp_path_factory.mktemp("slurm"))
    for sub in ("munge", "state", "spool", "log", "bin"):
        os.makedirs(os.path.join(d, sub))
    os.chmod(os.path.join(d, "munge"), 0o700)
    with open(os.path.join(d, "munge", "munge.key"), "wb") as f:
        f.write(os.urandom(1024))
    os.chmod(os.path.join(d, "munge", "munge.key"), 0o600)
    sock = os.path.join(d, "munge", "munge.sock")
    # four fake GPU devices (character devices like /dev/null) for gres/gpu
    gpus = []
    for i in range(4):
        path = os.path.join(d, f"gpu{i}")
        try:
            os.mknod(path, 0o644 | stat.S_IFCHR, os.makedev(1, 3))
        except OSError:
            pytest.skip("cannot create the fake GPU devices gres/gpu needs (mknod)")
        gpus.append(path)
    conf = os.path.join(d, "slurm.conf")
    with open(conf, "w") as f:
        f.write(f"""ClusterName=ictest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
MpiDefault=none
GresTypes=gpu
ReturnToService=2
MinJobAge=900
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=16 RealMemory=128000 Gres=gpu:4 State=UNKNOWN
PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    with open(os.path.join(d, "gres.conf"), "w") as f:
        f.write(f"NodeName=localhost Name=gpu File={d}/gpu[0-3]\n")
    # A site finds its slurm.conf at /etc/slurm; this one is found through SLURM_CONF, which the
    # in-job executor (snakemake-executor-plugin-slurm-jobstep) strips before its srun and before an
    # `mpi` job's command (whose launcher runs scontrol and srun): put it back.
    for command in ("srun", "scontrol"):
        wrapper = os.path.join(d, "bin", command)
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\nSLURM_CONF={conf} exec {_which(command)} \"$@\"\n")
        os.chmod(wrapper, 0o755)
    env = {**os.environ, "SLURM_CONF": conf, "PATH": f"{d}/bin:{BIN}:{os.environ['PATH']}:/usr/sbin"}
    log = open(os.path.join(d, "log", "daemons.log"), "w")
    procs = [subprocess.Popen(
        [_which("munged"), "-F", "-f", "--num-threads=4", f"--socket={sock}",
         f"--key-file={d}/munge/munge.key", f"--log-file={d}/log/munged.log",
         f"--pid-file={d}/munge/munged.pid", f"--seed-file={d}/munge/seed"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)]
    deadline = time.time() + 30
    while not os.path.exists(sock):
        assert time.time() < deadline and procs[0].poll() is None, open(log.name).read()
        time.sleep(0.2)
    for daemon, extra in (("slurmctld", ["-i"]), ("slurmd", ["-N", "localhost"])):
        procs.append(subprocess.Popen([_which(daemon), "-D", "-f", conf, *extra], env=env, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True))
    try:
        deadline = time.time() + 60
        while True:
            p = subprocess.run(["sinfo", "-h", "-N", "-o", "%T %c %G"], env=env, capture_output=True, text=True)
            if p.returncode == 0 and p.stdout.split()[:1] == ["idle"]:
                break
            if time.time() > deadline or any(x.poll() is not None for x in procs):
                raise RuntimeError(f"SLURM did not come up: {p.stdout}{p.stderr}\n"
                                   + open(os.path.join(d, "log", "slurmctld.log")).read()[-3000:])
            time.sleep(0.5)
        yield env
    finally:
        stop(procs, d)


def _slurm_jobs(env) -> list[dict]:
    """Every job slurmctld still remembers (MinJobAge): id, state, comment (rule and wildcards), resources."""
    p = subprocess.run(["scontrol", "show", "job", "--oneliner"], env=env, capture_output=True, text=True, check=True)
    jobs = []
    for line in p.stdout.splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if "JobId" in fields:
            jobs.append(fields)
    return jobs


def test_the_slurm_profile_runs_jobs_with_their_resources_and_resumes_a_cancelled_training(slurm, tmp_path):
    wd = project_copy(tmp_path / "project")
    write_long_run_config(wd, "slurm.yaml")
    # no accounting database on this one-node cluster: status from squeue (sites with slurmdbd use sacct).
    # The training is the profile's one task per GPU, on 2 of the node's GPUs: a 2-task step, 2 processes.
    smk = subprocess.Popen(
        [os.path.join(BIN, "snakemake"), f"results/models/{RUN}/metrics.json", "results/plan.json",
         "--profile", "profiles/slurm", "--configfile", "slurm.yaml", "--slurm-status-command", "squeue",
         "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
         *profile_resources(wd, "slurm", train_model={"tasks_per_node": 2, "gres": "gpu:2"})],
        cwd=wd, env=slurm, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    wait_for_checkpoint(os.path.join(wd, "results", "checkpoints"), smk, 600)
    (cancelled,) = [j["JobId"] for j in _slurm_jobs(slurm) if j.get("Comment") == f"rule_train_model_wildcards_{RUN}"]
    subprocess.run(["scancel", cancelled], env=slurm, check=True, timeout=60)
    out, _ = smk.communicate(timeout=900)
    assert smk.returncode == 0, out[-5000:]

    jobs = _slurm_jobs(slurm)
    rules = {j["Comment"].split("_wildcards_")[0].removeprefix("rule_") for j in jobs}
    assert {"prepare_corpus", "train_tokenizer", "tokenize_corpus", "build_cache", "train_model"} <= rules
    assert "write_plan" not in rules and os.path.exists(os.path.join(wd, "results", "plan.json"))  # a localrule
    trains = [j for j in jobs if j["Comment"].startswith("rule_train_model")]
    assert sorted(j["JobState"] for j in trains) == ["CANCELLED", "COMPLETED"]
    # each job had its rule's resources from the profile: set-resources for training, defaults otherwise
    for j in trains:
        shown = {k: j.get(k) for k in ("JobState", "NumNodes", "NumTasks", "NtasksPerN:B:S:C", "NumCPUs", "TresPerNode")}
        assert j["NumTasks"] == "2" and j["NumCPUs"] == "8" and j["TresPerNode"] == "gres:gpu:2", shown
        assert "mem=62.50G" in j["TRES"], j
        assert j["Partition"] == "gpu" and j["TimeLimit"] == "2-00:00:00", j
    (prepare,) = [j for j in jobs if j["Comment"] == "rule_prepare_corpus"]
    assert prepare["NumCPUs"] == "2" and "gpu" not in prepare.get("TresPerNode", "") and prepare["TimeLimit"] == "01:00:00"
    # the resubmitted training resumed from the cancelled one's checkpoint
    log = open(os.path.join(wd, "logs", "train", f"{RUN}.log")).read()
    assert "Resuming" in log or "Loading checkpoint" in log, log[-3000:]
    # both tasks of the step joined one world: each its own GPU (no binding here: the local rank's)
    assert re.search(r"joined a world of 2 processes as rank 0 \(slurm\)", log), log[-3000:]
    assert re.search(r"joined a world of 2 processes as rank 1 \(slurm\)", log), log[-3000:]
    assert "2 devices in 2 processes" in log
    metrics = json.load(open(os.path.join(wd, "results", "models", RUN, "metrics.json")))
    assert metrics["steps"] == LONG_RUN_STEPS and not metrics["diverged"]
    steps = [r["step"] for r in metrics["train_loss"]]
    assert steps == sorted(set(steps))  # one record per step: rank 0's
    shutil.rmtree(os.path.join(wd, "results", "checkpoints"), ignore_errors=True)
