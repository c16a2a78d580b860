"""The memory plan of a config on a profile's devices, printed as a table (study/memory.py): what
the check before the first job refuses, seen before submitting. Light: no jax."""

from __future__ import annotations

import sys

from ..study.config import ConfigError, load_merged_config
from ..study.memory import check_fits, format_table, plan_memory, profile_resources
from ..study.plan import build_plan


def cmd_memory_plan(a) -> None:
    config = load_merged_config(["config.yaml", *a.configfile])
    estimates = plan_memory(build_plan(config), config, profile_resources(a.profile) if a.profile else {})
    print(format_table(estimates))
    try:
        check_fits(estimates)
    except ConfigError as e:
        sys.exit(str(e))
