"""The report's figure captions (the registry's, outputs/figures.py, passed to report/figure.rst as the
draw_figure rule's `caption` param and rendered by Snakemake's report) state what the config does."""

import copy
import os
import types

import jinja2
import pytest
import yaml
from conftest import ROOT
from snakemake.utils import update_config, validate

from infinite_compute.outputs.figures import FIGURES, caption


def study_config(root: str, configfile: str | None = None) -> dict:
    """The config Snakemake builds: config.yaml, `--configfile` merged over it, the schema's defaults."""
    with open(os.path.join(root, "config.yaml")) as f:
        config = yaml.safe_load(f)
    if configfile:
        with open(os.path.join(root, configfile)) as f:
            update_config(config, yaml.safe_load(f))
    validate(config, os.path.join(root, "schemas", "config.schema.yaml"))
    return config


def render_caption(config: dict, figure: str, root: str = ROOT) -> str:
    """report/figure.rst as Snakemake's report renders it for figures/<figure>.png: with the rule's
    params, whose `caption` is the registry's caption under the config (rules/figures.smk)."""
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # snakemake.report's environment
    template = env.from_string(open(os.path.join(root, "report", "figure.rst")).read())
    params = types.SimpleNamespace(caption=caption(figure, config))
    snakemake = types.SimpleNamespace(config=config, params=params, wildcards=types.SimpleNamespace(figure=figure))
    return template.render(snakemake=snakemake)


def _factors(config, epochs, wd):
    config = copy.deepcopy(config)
    for r in config["ensemble_recipes"]:
        r.update(epochs_factor=epochs, weight_decay_factor=wd)
    return config


@pytest.mark.parametrize(
    "configfile, factors, rule",
    [
        (None, None, "its epochs, its weight decay, new seeds"),  # config.yaml: both factors 1
        (".test/config.yaml", None, "twice its epochs, half its weight decay, new seeds (the paper's rule)"),
        (".test/config.yaml", (3, 0.25), "3 x its epochs, 0.25 x its weight decay, new seeds"),
        ("config/paper.yaml", None, "twice its epochs, half its weight decay, new seeds (the paper's rule)"),
    ],
    ids=["default config", "smoke", "edited factors", "paper config"],
)
def test_the_ensembles_caption_states_the_configs_member_rule(configfile, factors, rule):
    config = study_config(ROOT, configfile)
    if factors:
        config = _factors(config, *factors)
    caption = " ".join(render_caption(config, "ensembles").split())
    recipes = config["ensemble_recipes"]
    assert recipes
    if all(r["epochs_factor"] != 2 and r["weight_decay_factor"] != 0.5 for r in recipes):
        # the paper's rule may be named as the paper's, never claimed for these members
        assert "twice its epochs" not in caption and "half its weight decay" not in caption, caption
        assert "(the paper's rule)" not in caption
        assert "the paper's rule is twice the epochs and half the weight decay" in caption
    for r in recipes:
        assert f"Members of the ensemble recipe {r['name']} (search {r['search']}) take the tuned single model's lr, {rule}" in caption


def test_every_figure_has_its_own_caption():
    config = study_config(ROOT, ".test/config.yaml")
    captions = [render_caption(config, name).strip() for name in FIGURES]
    assert all(captions) and len(set(captions)) == len(FIGURES)
