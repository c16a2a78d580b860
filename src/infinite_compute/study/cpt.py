"""The CPT stage's runs (`cpt`): the default recipe at each math budget, and at the recipes' budget a
smaller batch, more epochs at each weight decay of a grid, and an ensemble of each of those."""

from __future__ import annotations

from .config import ConfigError
from .hf_base import base_shape
from .searches import cell_of_search
from .specs import HF_INIT, CptSpec, ModelShape, RunSpec, cpt_run_id
from .tuning import Cell


def cpt_plan(config: dict, cells: dict[str, Cell], shapes: dict[str, ModelShape],
             optimizer: dict) -> tuple[CptSpec | None, dict[str, RunSpec]]:
    """The CPT stage's runs: the default recipe at each math budget, and at the recipes' budget a
    smaller batch, more epochs at each weight decay of a grid, and their ensembles."""
    c = config.get("cpt")
    if not c or not c.get("enabled", True):
        return None, {}
    if "hf" in c["base"]:  # a Hugging Face model directory: its shape, at the study's context length
        shape = base_shape(c["base"], config["model"]["seq_len"], config["model"])
        cell_id, init_from = None, HF_INIT + shape.hf_base
    else:
        cell = cell_of_search(cells, c["base"], "cpt.base")
        shape = shapes[cell.model]
        cell_id = init_from = cell.cell_id
    budgets = sorted(set(c["token_budgets"]))
    if c["token_budget"] not in budgets:
        raise ConfigError("cpt.token_budget", f"{c['token_budget']} is not one of cpt.token_budgets {budgets}")
    runs: dict[str, RunSpec] = {}

    def spec(budget, epochs, lr, wd, batch, seed, key) -> str:
        per_step = batch * shape.seq_len
        if budget < per_step:
            raise ConfigError(key, f"math budget {budget} is smaller than one batch ({batch} x {shape.seq_len} tokens)")
        rid = cpt_run_id(shape.name, budget, epochs, lr, wd, batch, seed)
        runs[rid] = RunSpec(
            run_id=rid, model=shape, token_budget=budget, epochs=epochs, learning_rate=float(lr),
            weight_decay=float(wd), seed=seed, batch_size=batch, optimizer=optimizer, data=f"math/d{budget}",
            num_train_steps=budget // per_step * epochs, tokens_per_epoch=budget // per_step * per_step,
            init_from=init_from,
        )
        return rid

    d, D = c["default"], c["token_budget"]
    default = dict(epochs=d["epochs"], lr=d["learning_rate"], wd=d["weight_decay"], batch=d["batch_size"])
    scaling = {b: spec(b, **default, seed=0, key="cpt.token_budgets") for b in budgets}
    small = spec(D, **{**default, "batch": c["small_batch"]}, seed=0, key="cpt.small_batch")
    reg = c["regularized"]
    grid = tuple(spec(D, reg["epochs"], d["learning_rate"], wd, d["batch_size"], 0, "cpt.regularized")
                 for wd in sorted(set(reg["weight_decays"])))
    members = {
        rid: tuple(spec(D, reg["epochs"], d["learning_rate"], runs[rid].weight_decay, d["batch_size"], k, "cpt.members")
                   for k in range(c["members"]))
        for rid in grid
    }
    p = c["problems"]
    cpt = CptSpec(
        base_cell=cell_id, base_hf=shape.hf_base, model=shape.name, token_budget=D, scaling=scaling, small_batch=small,
        regularized=grid, members=members,
        problems={**p, "seed": config["seed"],
                  **({"files": c["files"], "data": {k: config["data"][k] for k in ("text_field", "max_document_chars")}}
                     if c.get("files") else {})}, answer_tokens=c["answer_tokens"], seed=config["seed"],
    )
    return cpt, runs
