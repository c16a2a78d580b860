"""fetch-inputs: download once what a study reads from the Hugging Face hub, so that its jobs (which
run offline) find it: the lm-eval tasks' datasets (into the HF cache the jobs use), the tokenizer
(`tokenizer.hub` into `tokenizer.path`) and a CPT base (`cpt.base.hub` into `cpt.base.hf`). The check
before the first job (rules/common.smk) names whatever is still missing. Needs the network (and
HF_TOKEN for gated repositories such as Meta's Llama)."""

from __future__ import annotations

import os

from ..outputs.lm_harness import fetch_hub_datasets
from ..study import paths
from ..study.config import load_merged_config
from ..study.plan import build_plan

TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model"]
MODEL_FILES = ["*.json", "*.safetensors", "tokenizer.model"]


def cmd_fetch_inputs(a) -> None:
    config = load_merged_config(["config.yaml", *a.configfile])
    plan = build_plan(config)
    # the jobs' cache (rules/common.smk: HF_HOME inside results/ unless one is set), online for this command
    os.environ.setdefault("HF_HOME", os.path.abspath(os.path.join(paths.RESULTS, "hf")))
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.pop(k, None)
    from huggingface_hub import snapshot_download  # after the environment above: it reads it at import

    tok = config["tokenizer"]
    if tok.get("hub") and tok.get("path"):
        snapshot_download(tok["hub"], local_dir=tok["path"], allow_patterns=TOKENIZER_FILES)
        print(f"tokenizer {tok['hub']} -> {tok['path']}")
    base = config["cpt"].get("base") or {}
    if plan.cpt and base.get("hub") and base.get("hf"):
        snapshot_download(base["hub"], local_dir=base["hf"], allow_patterns=MODEL_FILES)
        print(f"CPT base {base['hub']} -> {base['hf']}")
    tasks = list(config["benchmark"]["tasks"]) + (list(config["cpt"]["tasks"]) if plan.cpt else [])
    for what in fetch_hub_datasets(tasks):
        print(f"dataset of {what} -> {os.environ['HF_HOME']}")
