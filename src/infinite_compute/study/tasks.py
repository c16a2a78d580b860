"""Which benchmark task names a config may use: the study's local tasks and the installed
lm-eval-harness's, read from its task YAML files without importing it (a plan check stays fast)."""

from __future__ import annotations

import glob
import importlib.util
import os
import re

NEXT_LINE, MINIMAL_PAIRS = "heldout_next_line", "heldout_minimal_pairs"
LOCAL_TASKS = (NEXT_LINE, MINIMAL_PAIRS)  # built by the study from its held-out text (data/benchmarks.py)
MATH_CHOICE = "heldout_math_choice"
CPT_LOCAL_TASKS = (MATH_CHOICE,)  # built from the CPT stage's held-out problems (data/math_data.py)

# lm-eval tasks whose dataset the pinned `datasets` cannot load (a loading script, lm-eval issue 3171),
# each replaced by the same task (prompts, choices, metrics: its YAML included) on a script-free copy of
# its data: {replacement: (lm-eval's task, the dataset it reads instead)}. regisss/math_qa is the one
# lm-eval itself moved to (its PR 3943 checked every split's rows against allenai/math_qa).
REPLACEMENTS = {"mathqa_parquet": ("mathqa", "regisss/math_qa")}
REPLACED = {task: name for name, (task, _) in REPLACEMENTS.items()}


def lm_eval_tasks_dir() -> str | None:
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "tasks")


def known_task_names() -> set[str]:
    """Task names of the installed lm-eval, read from its task YAMLs (fast: no lm-eval import)."""
    root = lm_eval_tasks_dir()
    if root is None:
        return set()
    names: set[str] = set(REPLACEMENTS)
    pattern = re.compile(r"^(?:task|group|tag):\s*['\"]?([A-Za-z0-9_.\-]+)", re.M)
    for path in glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True):
        with open(path, errors="replace") as f:
            names.update(pattern.findall(f.read()))
    return names


def task_yaml_paths(tasks: list[str]) -> dict[str, str]:
    """The installed lm-eval's YAML file of each of `tasks` that is a task of its own (not a group or
    tag), found by its `task:` line without importing lm-eval; a replacement task maps to its original's."""
    root = lm_eval_tasks_dir()
    wanted = {REPLACEMENTS.get(t, (t,))[0]: t for t in tasks}
    out: dict[str, str] = {}
    if root is None:
        return out
    pattern = re.compile(r"^task:\s*['\"]?([A-Za-z0-9_.\-]+)", re.M)
    for path in glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True):
        with open(path, errors="replace") as f:
            for name in pattern.findall(f.read()):
                if name in wanted:
                    out[wanted[name]] = path
    return out


def _task_config(path: str) -> dict:
    """A task YAML's settings with its `include`s merged under it (lm-eval's own rule), read with
    PyYAML alone: the `!function` values lm-eval resolves are left as None."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    with open(path) as f:
        cfg = yaml.load(f, Loader=Loader) or {}
    include = cfg.pop("include", None)
    for inc in [include] if isinstance(include, str) else include or []:
        base = _task_config(inc if os.path.isabs(inc) else os.path.join(os.path.dirname(path), inc))
        cfg = {**base, **cfg}
    return cfg


def hub_datasets(tasks: list[str]) -> list[tuple[str, str, str | None]]:
    """(task, dataset path, dataset config name) of each of `tasks` that lm-eval reads from the Hugging
    Face hub: not the local tasks (their items are the study's own). A replacement task reads its
    replacement dataset (REPLACEMENTS). Groups and tags are not expanded."""
    tasks = [t for t in tasks if t not in LOCAL_TASKS + CPT_LOCAL_TASKS]
    out: list[tuple[str, str, str | None]] = []
    for t, path in sorted(task_yaml_paths(tasks).items() if tasks else ()):
        cfg = _task_config(path)
        dataset = REPLACEMENTS[t][1] if t in REPLACEMENTS else cfg.get("dataset_path")
        if dataset not in (None, "json", "csv", "parquet", "text"):
            out.append((t, dataset, cfg.get("dataset_name")))
    return out


def cached_dataset(path: str, name: str | None, hf_home: str) -> bool:
    """Whether `datasets` has the hub dataset `path` (config `name`) in the cache under `hf_home`, as a
    job reads it offline: datasets/<org>___<name>/<config>/.../dataset_info.json."""
    root = os.path.join(hf_home, "datasets", path.replace("/", "___"), name or "default")
    return bool(glob.glob(os.path.join(root, "**", "dataset_info.json"), recursive=True))


def missing_hub_datasets(tasks: list[str], hf_home: str) -> list[str]:
    """'task (dataset, config)' for each hub dataset of `tasks` not in the cache under `hf_home`."""
    return [f"{t} ({path}{', ' + name if name else ''})" for t, path, name in hub_datasets(tasks)
            if not cached_dataset(path, name, hf_home)]
