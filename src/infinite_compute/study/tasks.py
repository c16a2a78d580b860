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


def known_task_names() -> set[str]:
    """Task names of the installed lm-eval, read from its task YAMLs (fast: no lm-eval import)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        return set()
    root = os.path.join(list(spec.submodule_search_locations)[0], "tasks")
    names: set[str] = set()
    pattern = re.compile(r"^(?:task|group|tag):\s*['\"]?([A-Za-z0-9_.\-]+)", re.M)
    for path in glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True):
        with open(path, errors="replace") as f:
            names.update(pattern.findall(f.read()))
    return names
