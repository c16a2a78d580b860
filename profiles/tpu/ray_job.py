#!/usr/bin/env python
"""Snakemake's cluster-generic executor on a Ray cluster: submit, status and cancel one job.

    ray_job.py submit <jobscript>     prints the Ray submission id
    ray_job.py status <id>            prints running / success / failed
    ray_job.py cancel <id> [<id>...]  stops the jobs (without waiting)

The cluster is $RAY_ADDRESS (the dashboard's http://host:port). A job asks Ray for the rule's
resources, read from the jobscript's properties: `threads` CPUs, `tpu_chips` (Ray resource "TPU")
and `tpu_type` (the "TPU-<type>-head" resource of a slice's head, as on marin's clusters), so a job
queues (PENDING) until a host that has them is free. A training with `hosts: M > 1` runs on M hosts,
one process each, `tpu_chips` and `threads` being per host (multi_host, below). WANDB_API_KEY and
HF_TOKEN, when set here, reach every job. The project directory is a shared filesystem
(or a bucket mounted at the same path): the job runs the jobscript from it. A job Ray no longer
knows (its node was preempted, the cluster restarted) is reported failed; Snakemake resubmits it
(--retries) and a training job resumes from its last checkpoint in results/checkpoints.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import uuid

STATES = {"PENDING": "running", "RUNNING": "running", "SUCCEEDED": "success", "FAILED": "failed",
          "STOPPED": "failed"}


def _client():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from ray.job_submission import JobSubmissionClient

    address = os.environ.get("RAY_ADDRESS")
    if not address:
        sys.exit("ray_job.py: set RAY_ADDRESS to the Ray dashboard of the cluster, e.g. http://127.0.0.1:8265")
    return JobSubmissionClient(address)


def job_properties(jobscript: str) -> dict:
    """The job's rule, threads and resources, as Snakemake writes them into the jobscript."""
    with open(jobscript) as f:
        for line in f:
            if line.startswith("# properties = "):
                return json.loads(line[len("# properties = "):])
    raise ValueError(f"{jobscript}: no '# properties = ' line (not a Snakemake jobscript?)")


def ray_resources(props: dict) -> tuple[float, dict]:
    """(CPUs, custom resources) a job asks Ray for."""
    res = props.get("resources", {})
    custom = {}
    if res.get("tpu_chips"):
        custom["TPU"] = float(res["tpu_chips"])
    if res.get("tpu_type"):
        custom[f"TPU-{res['tpu_type']}-head"] = 1.0
    return float(props.get("threads", 1)), custom


# what a job needs from the submit host's environment, when it is set there (W&B online, gated HF models)
SECRETS = ("WANDB_API_KEY", "HF_TOKEN")


def multi_host(props: dict, cpus: float, custom: dict) -> tuple[float, dict, dict]:
    """A job that asks for `hosts: M > 1` (one training on M hosts): its entrypoint runs the launcher
    (runtime/ray_launch.py) on the head node, with no resources, and the launcher asks Ray for M hosts,
    each with the job's per-host resources (`tpu_chips`, `threads`) and, for a `tpu_type`, one slice.
    Returns the entrypoint's (CPUs, resources) and the launcher's environment."""
    res = props.get("resources", {})
    hosts = int(res.get("hosts") or 1)
    if hosts <= 1:
        return cpus, custom, {}
    host = {"CPU": cpus, **({"TPU": float(res["tpu_chips"])} if res.get("tpu_chips") else {})}
    env = {"IC_LAUNCHER": "ray", "IC_PROCESSES": str(hosts), "IC_RAY_HOST_RESOURCES": json.dumps(host)}
    if res.get("tpu_type"):
        env["IC_RAY_TPU_TYPE"] = str(res["tpu_type"])
    # no entrypoint resources: Ray runs the entrypoint on its head node, which no preemption takes
    return 0.0, {}, env


def submit(jobscript: str) -> str:
    props = job_properties(jobscript)
    cpus, custom = ray_resources(props)
    accelerated = bool(custom)
    cpus, custom, launcher = multi_host(props, cpus, custom)
    name = props.get("rule", "job")
    entrypoint = f"cd {shlex.quote(os.getcwd())} && sh {shlex.quote(os.path.abspath(jobscript))}"
    # a job on an accelerator lets jax pick it (runtime/env.py: `auto`; the CLI pins the CPU otherwise)
    env = {"IC_ACCELERATOR": "auto"} if accelerated else {}
    env.update(launcher)
    env.update({k: os.environ[k] for k in SECRETS if os.environ.get(k)})
    return _client().submit_job(
        entrypoint=entrypoint,
        runtime_env={"env_vars": env} if env else None,
        submission_id=f"snakemake-{name}-{props.get('jobid', 0)}-{uuid.uuid4().hex[:8]}",
        entrypoint_num_cpus=cpus,
        entrypoint_resources=custom or None,
        metadata={"rule": name, "wildcards": json.dumps(props.get("wildcards", {}))},
    )


def status(job_id: str) -> str:
    try:
        state = _client().get_job_status(job_id)
    except Exception as e:  # noqa: BLE001 - a job Ray does not know is lost: failed, resubmitted by Snakemake
        print(f"ray_job.py: {job_id}: {e}", file=sys.stderr)
        return "failed"
    return STATES.get(str(getattr(state, "value", state)), "failed")


def cancel(job_ids: list[str]) -> None:
    client = _client()
    for job_id in job_ids:
        try:
            client.stop_job(job_id)
        except Exception as e:  # noqa: BLE001 - already gone
            print(f"ray_job.py: {job_id}: {e}", file=sys.stderr)


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] not in ("submit", "status", "cancel"):
        sys.exit(__doc__)
    if argv[0] == "submit":
        print(submit(argv[1]))
    elif argv[0] == "status":
        print(status(argv[1]))
    else:
        cancel(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
