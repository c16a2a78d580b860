import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def smoke_config():
    """The smoke config with the schema's defaults filled in."""
    from infinite_compute.plan import load_config

    return load_config(os.path.join(ROOT, ".test", "config.yaml"), os.path.join(ROOT, "schemas", "config.schema.yaml"))


def raw_smoke_config() -> dict:
    with open(os.path.join(ROOT, ".test", "config.yaml")) as f:
        return yaml.safe_load(f)
