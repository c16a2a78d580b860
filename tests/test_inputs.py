"""What a study reads from the Hugging Face hub: each lm-eval task's dataset, found before the first
job (the jobs run offline) and named when missing; lm-eval's mathqa, whose dataset has a loading
script the pinned `datasets` refuses, replaced by the same task on a script-free copy."""

import os
import subprocess
import sys

import pytest
import yaml
from test_plan import _paper_config
from test_workflow import project_copy

from infinite_compute.study.config import ConfigError
from infinite_compute.study.plan import build_plan
from infinite_compute.study.tasks import cached_dataset, hub_datasets


def test_each_hub_task_names_its_dataset_and_local_tasks_none():
    found = hub_datasets(["arc_easy", "sciq", "mathqa_parquet", "heldout_next_line", "heldout_math_choice"])
    assert ("arc_easy", "allenai/ai2_arc", "ARC-Easy") in found
    assert ("mathqa_parquet", "regisss/math_qa", None) in found
    assert {t for t, _, _ in found} == {"arc_easy", "sciq", "mathqa_parquet"}
    assert hub_datasets(["heldout_next_line"]) == []


def test_mathqa_is_refused_naming_its_replacement_which_is_lm_evals_task_on_the_parquet_copy(tmp_path):
    config, _ = _paper_config()
    assert config["cpt"]["tasks"] == ["mathqa_parquet"]
    build_plan(config)
    config["cpt"]["tasks"] = ["mathqa"]
    with pytest.raises(ConfigError, match=r"cpt.tasks.*'mathqa' reads a dataset with a loading script.*mathqa_parquet"):
        build_plan(config)
    # the replacement, as lm-eval reads it: mathqa's prompts, choices and metrics, the copy's data
    script = """
import sys
from infinite_compute.outputs.lm_harness import write_replacement_tasks
from lm_eval import utils
from lm_eval.tasks import TaskManager
write_replacement_tasks(sys.argv[1])
manager = TaskManager(include_path=sys.argv[1])
cfg = utils.load_yaml_config(manager.task_index["mathqa_parquet"]["yaml_path"], mode="full")
print(cfg["task"], cfg["dataset_path"], repr(cfg["doc_to_text"]), callable(cfg["doc_to_choice"]),
      [m["metric"] for m in cfg["metric_list"]])
"""
    p = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.split("\n")[-2] == "mathqa_parquet regisss/math_qa 'Question: {{Problem}}\\nAnswer:' True ['acc', 'acc_norm']"


@pytest.mark.workflow
def test_a_hub_dataset_missing_from_the_cache_stops_the_study_before_any_job_naming_it(tmp_path):
    """benchmark.tasks with lm-eval's arc_easy and an empty cache: Snakemake stops before its first job,
    naming the task, its dataset and the command that fetches it. With the dataset in the cache (as
    `datasets` lays it out) the same command runs."""
    wd = project_copy(tmp_path / "project")
    with open(os.path.join(wd, "hub.yaml"), "w") as f:
        yaml.safe_dump({"benchmark": {"tasks": ["arc_easy", "heldout_next_line"]}}, f)
    hf = tmp_path / "hf"
    env = {**os.environ, "HF_HOME": str(hf)}
    cmd = [os.path.join(os.path.dirname(sys.executable), "snakemake"), "results/plan.json", "--configfile", "hub.yaml",
           "--cores", "1"]
    p = subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "arc_easy (allenai/ai2_arc, ARC-Easy)" in out, out[-3000:]
    assert "python -m infinite_compute fetch-inputs" in out and "heldout_next_line" not in out.split("missing")[1][:200]
    assert not os.path.exists(os.path.join(wd, "results", "plan.json"))
    info = hf / "datasets" / "allenai___ai2_arc" / "ARC-Easy" / "0.0.0" / "abc123" / "dataset_info.json"
    info.parent.mkdir(parents=True)
    info.write_text("{}")
    assert cached_dataset("allenai/ai2_arc", "ARC-Easy", str(hf))
    p = subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
