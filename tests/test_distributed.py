"""Which world a training process is in (runtime/launch.py): SLURM's environment read as jax needs it,
the launchers' own variables, and the checks that stop a bad layout or a missing secret before any
job. (The trainings themselves on several devices and processes: test_workflow.py; on SLURM and Ray:
test_slurm_profile.py, test_ray_profile.py.)"""

import importlib.util
import os

import pytest

from conftest import ROOT
from infinite_compute.runtime.env import check_secrets
from infinite_compute.runtime.launch import (
    SlurmTasks,
    World,
    requested_processes,
    slurm_hostnames,
    slurm_job_tasks,
    slurm_local_device_ids,
    world_of_env,
)
from infinite_compute.study.config import ConfigError


def test_slurm_host_lists_expand_as_scontrol_does():
    assert slurm_hostnames("gpu[01-03,07],login1") == ["gpu01", "gpu02", "gpu03", "gpu07", "login1"]
    assert slurm_hostnames("node7") == ["node7"]
    assert slurm_hostnames("a[8-10]b") == ["a8b", "a9b", "a10b"]


STEP = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_STEP_NODELIST": "gpu[03-04]",
        "SLURM_STEP_TASKS_PER_NODE": "4(x2)"}


def test_a_task_of_a_slurm_step_is_a_rank_of_its_world_with_jax_device_ids_from_0():
    # no device cgroups, one task per node owning its 4 GPUs: SLURM writes the node's ids (4-7), jax
    # numbers the visible GPUs 0-3
    env = dict(STEP, SLURM_STEP_NUM_TASKS="2", SLURM_PROCID="1", SLURM_LOCALID="0",
               SLURM_STEP_TASKS_PER_NODE="1(x2)", CUDA_VISIBLE_DEVICES="4,5,6,7")
    w = world_of_env(env)
    assert (w.num_processes, w.process_id, w.local_device_ids, w.source) == (2, 1, (0, 1, 2, 3), "slurm")
    assert w.coordinator.startswith("gpu03:")
    # one task per GPU, bound by SLURM (--gpus-per-task, --ntasks-per-gpu): each sees its own GPU only
    assert slurm_local_device_ids(dict(STEP, CUDA_VISIBLE_DEVICES="6")) == (0,)
    # one task per GPU without binding: every task sees the node's 4 GPUs and takes its local rank's
    assert slurm_local_device_ids(dict(STEP, CUDA_VISIBLE_DEVICES="4,5,6,7")) == (1,)
    # cgroups renumbering from 0 give the same answer
    assert slurm_local_device_ids(dict(STEP, CUDA_VISIBLE_DEVICES="0,1,2,3")) == (1,)
    # CPU nodes: every device of the process
    assert slurm_local_device_ids(STEP) is None
    # every rank of a step agrees on the coordinator
    assert len({world_of_env(dict(STEP, SLURM_PROCID=str(r))).coordinator for r in range(8)}) == 1


def test_a_single_task_slurm_job_joins_no_world_and_a_batch_job_of_several_tasks_launches_them():
    single = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1", "SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0",
              "CUDA_VISIBLE_DEVICES": "4,5,6,7"}
    assert world_of_env(single) is None and requested_processes(single) == 1
    batch = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_JOB_NODELIST": "n1"}
    assert world_of_env(batch) is None and requested_processes(batch) == 4
    batch = dict(batch, SLURM_JOB_NUM_NODES="2", SLURM_NTASKS_PER_NODE="2", SLURM_CPUS_PER_TASK="4")
    assert slurm_job_tasks(batch) == SlurmTasks(tasks=4, nodes=2, tasks_per_node=2, cpus_per_task=4)
    assert requested_processes({}) == 1 and requested_processes({"IC_PROCESSES": "3"}) == 3


def test_the_launchers_variables_make_a_world_and_half_of_them_is_an_error():
    env = {"IC_COORDINATOR": "10.0.0.1:1234", "IC_NUM_PROCESSES": "4", "IC_PROCESS_ID": "3"}
    assert world_of_env(env) == World("10.0.0.1:1234", 4, 3)
    with pytest.raises(ValueError, match="IC_PROCESS_ID not set"):
        world_of_env({k: v for k, v in env.items() if k != "IC_PROCESS_ID"})
    with pytest.raises(ValueError, match=r"IC_PROCESS_ID=4 is not in 0..3"):
        world_of_env(dict(env, IC_PROCESS_ID="4"))
    with pytest.raises(ValueError, match="IC_PROCESSES=0"):
        requested_processes({"IC_PROCESSES": "0"})


def test_a_tensor_parallel_degree_that_does_not_divide_a_model_fails_naming_the_key_and_model(smoke_config):
    from infinite_compute.study.plan import build_plan

    cfg = smoke_config
    cfg["training"].update(engine="trainer", levanter={"model_axis_size": 4})  # t1 has 2 key/value heads
    with pytest.raises(ConfigError, match=r"training.levanter.model_axis_size.*4 does not divide model t1's num_kv_heads"):
        build_plan(cfg)
    cfg["training"].update(engine="loop", levanter={}, sharding="data")
    with pytest.raises(ConfigError, match="training.sharding"):
        build_plan(cfg)


def test_wandb_online_without_a_key_fails_before_any_job(tmp_path):
    online = {"wandb": True, "wandb_mode": "online"}
    with pytest.raises(RuntimeError, match="logging.wandb_mode.*WANDB_API_KEY"):
        check_secrets(online, {"HOME": str(tmp_path)})
    check_secrets(online, {"HOME": str(tmp_path), "WANDB_API_KEY": "k"})
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password k\n")
    check_secrets(online, {"HOME": str(tmp_path)})
    check_secrets({"wandb": True, "wandb_mode": "offline"}, {"HOME": "/nonexistent"})


def _ray_job():
    spec = importlib.util.spec_from_file_location("ray_job", os.path.join(ROOT, "profiles", "tpu", "ray_job.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_ray_job_on_several_hosts_runs_its_launcher_without_accelerators_and_asks_per_host():
    ray_job = _ray_job()
    props = {"threads": 8, "resources": {"hosts": 8, "tpu_chips": 4, "tpu_type": "v4-64"}}
    cpus, custom = ray_job.ray_resources(props)
    assert (cpus, custom) == (8.0, {"TPU": 4.0, "TPU-v4-64-head": 1.0})
    cpus, custom, env = ray_job.multi_host(props, cpus, custom)
    assert (cpus, custom) == (0.0, {})
    assert env == {"IC_LAUNCHER": "ray", "IC_PROCESSES": "8", "IC_RAY_HOST_RESOURCES": '{"CPU": 8.0, "TPU": 4.0}',
                   "IC_RAY_TPU_TYPE": "v4-64"}
    one = {"threads": 8, "resources": {"tpu_chips": 4}}
    assert ray_job.multi_host(one, 8.0, {"TPU": 4.0}) == (8.0, {"TPU": 4.0}, {})
