"""Config loading and the error every config check raises: a key named, and what was expected.

Pure Python (yaml and snakemake's schema validator): nothing here imports jax.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any


class ConfigError(ValueError):
    """A config value that is valid by the schema but makes no sense for the study."""

    def __init__(self, key: str, message: str):
        super().__init__(f"config key '{key}': {message}")
        self.key = key


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def load_config(path: str, schema_path: str | None = None) -> dict[str, Any]:
    """Read a YAML config, validate it against the schema and fill in defaults."""
    # imported here, not at the top: every job imports ConfigError, and only the config's readers
    # (the Snakefile, tests, bench/) need yaml and snakemake's validator
    import yaml
    from snakemake.utils import validate

    with open(path) as f:
        config = yaml.safe_load(f) or {}
    validate(config, schema_path or default_schema_path())
    return config


def default_schema_path() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "..", "..", "schemas", "config.schema.yaml")


def load_merged_config(paths: list[str], schema_path: str | None = None) -> dict[str, Any]:
    """The config Snakemake makes of `configfile: paths[0]` and `--configfile paths[1:]`: each file's
    mappings merged into the ones before (snakemake.utils.update_config), then validated."""
    import yaml
    from snakemake.utils import update_config, validate

    config: dict[str, Any] = {}
    for path in paths:
        with open(path) as f:
            update_config(config, yaml.safe_load(f) or {})
    validate(config, schema_path or default_schema_path())
    return config
