"""The run plan: a validated config in, the study's runs, ensembles and distillations out.

The plan is computed once, by pure Python, and is the only thing the Snakefile builds targets
from. A training job receives only its own `RunSpec` (as JSON params), so editing one run's
hyperparameters reruns that run and what depends on it, and nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .config import ConfigError, config_hash
from .cpt import cpt_plan
from .searches import cell_of_search, search_cells, search_ensembles
from .specs import (
    CptSpec,
    DistillSpec,
    EnsembleSpec,
    ModelShape,
    RunSpec,
    parse_run_id,
    run_id,
    synthetic_tokens,
)
from .tasks import CPT_LOCAL_TASKS, LOCAL_TASKS, REPLACED, REPLACEMENTS, known_task_names
from .tuning import Cell, cell_from_dict


@dataclass(frozen=True)
class Plan:
    runs: dict[str, RunSpec]  # every run known before training (sweeps, ensembles, students)
    sweeps: dict[str, tuple[str, ...]]
    ensembles: dict[str, EnsembleSpec]
    distillations: dict[str, DistillSpec]
    token_budgets: tuple[int, ...]
    config_hash: str
    models: dict[str, ModelShape] = field(default_factory=dict)
    cells: dict[str, Cell] = field(default_factory=dict)  # hyperparameter searches (tuning.py)
    batch_size: int = 0  # of every run on real data (students' and CPT runs' specs say their own)
    optimizer: dict = field(default_factory=dict)  # AdamW's settings besides lr and weight decay
    cpt: CptSpec | None = None
    cpt_runs: dict[str, RunSpec] = field(default_factory=dict)  # every CPT run, ensembles' included

    @property
    def trained_runs(self) -> list[str]:
        return sorted(self.runs)

    def corpus_of(self, name: str) -> str:
        """The distillation whose teacher corpus distillation `name` trains on: the first one, in the
        config's order, with the same sampling params (teacher, tokens, temperature, seed, scheme).
        Students that differ only in their synthetic share (marin's 75% and 90%) share one corpus,
        sampled once."""
        want = self.distillations[name].sampling_params()
        return next(k for k, d in self.distillations.items() if d.sampling_params() == want)

    def point_run(self, cell: str | Cell, point) -> str:
        """Run id of a lattice point of a search cell."""
        c = self.cells[cell] if isinstance(cell, str) else cell
        lr, wd, ep = point
        return run_id(c.model, c.token_budget, ep, lr, wd, c.seed)

    def reseed_runs(self, cell: str | Cell, best: dict) -> list[str]:
        """Run ids of a search cell's reseeds, given its final record's `best` (known once the search
        has ended); `spec` gives their specs as it does an ensemble member's."""
        c = self.cells[cell] if isinstance(cell, str) else cell
        return c.reseed_ids(best)

    def spec(self, rid: str) -> RunSpec:
        """The spec of a planned run, of any lattice point of a search cell, or of a run named by
        its hyperparameters (an ensemble member or a reseed derived from a search) on a known model and budget."""
        if rid in self.runs:
            return self.runs[rid]
        if rid in self.cpt_runs:
            return self.cpt_runs[rid]
        lattice = _lattice_index(self)
        if rid in lattice:
            c, (lr, wd, ep) = lattice[rid]
            return self.make_spec(c.model, c.token_budget, ep, lr, wd, c.seed)
        parsed = parse_run_id(rid, self.token_budgets)
        if parsed is None or parsed[0] not in self.models:
            raise KeyError(f"'{rid}' is neither a planned run, a search point nor a run id of a known model and budget")
        return self.make_spec(*parsed)

    def make_spec(self, model: str, budget: int, epochs: int, lr: float, wd: float, seed: int) -> RunSpec:
        """The spec of a run on real data named by its hyperparameters (a search point, a member)."""
        return real_run_spec(self.models[model], budget, epochs, lr, wd, seed, self.batch_size, self.optimizer)

    def membership(self) -> dict[str, dict[str, list[str]]]:
        """Each planned run's sweeps and (fixed) ensembles."""
        membership = {r: {"sweeps": [], "ensembles": []} for r in self.runs}
        for name, ids in self.sweeps.items():
            for r in ids:
                membership[r]["sweeps"].append(name)
        for name, ens in self.ensembles.items():
            for r in ens.members:
                membership[r]["ensembles"].append(name)
        return membership

    def ensemble_info(self, name: str, members: list[str]) -> dict:
        """What the ensembles table reports beside an ensemble's losses: its recipe and its members'
        settings (`members`: its run ids, known for an ensemble of a search once the search ended)."""
        ens, first = self.ensembles[name], self.spec(members[0])
        return {"recipe": ens.recipe, "cell": ens.cell, "model": ens.model, "token_budget": ens.token_budget,
                "non_embedding_params": first.model.non_embedding_params(), "epochs": first.epochs,
                "learning_rate": first.learning_rate, "weight_decay": first.weight_decay}

    def runs_on_data(self, data: str) -> list[str]:
        return sorted(r for r, s in self.runs.items() if s.data == data)


_LATTICES: dict[int, dict] = {}


def _lattice_index(plan: Plan) -> dict:
    """run id -> (cell, point) over every cell's lattice, built once per plan on first use."""
    key = id(plan)
    if key not in _LATTICES:
        _LATTICES[key] = {plan.point_run(c, p): (c, p) for c in plan.cells.values() for p in c.lattice()}
    return _LATTICES[key]


def real_run_spec(shape: ModelShape, budget: int, epochs: int, lr: float, wd: float, seed: int, batch: int,
                  optimizer: dict) -> RunSpec:
    """A run on the real data of a token budget: whole batches of one epoch, `epochs` times."""
    tokens_per_step = batch * shape.seq_len
    steps_per_epoch = budget // tokens_per_step
    return RunSpec(
        run_id=run_id(shape.name, budget, epochs, lr, wd, seed),
        model=shape,
        token_budget=budget,
        epochs=epochs,
        learning_rate=float(lr),
        weight_decay=float(wd),
        seed=seed,
        batch_size=batch,
        optimizer=optimizer,
        data=f"d{budget}",
        num_train_steps=steps_per_epoch * epochs,
        tokens_per_epoch=steps_per_epoch * tokens_per_step,
    )


def _shapes(config: dict) -> dict[str, ModelShape]:
    seq_len = config["model"]["seq_len"]
    out = {}
    for name, s in config["models"].items():
        kv = s.get("num_kv_heads", s["num_heads"])
        if s["hidden_dim"] % s["num_heads"]:
            raise ConfigError(f"models.{name}.num_heads", "must divide hidden_dim")
        if s["num_heads"] % kv:
            raise ConfigError(f"models.{name}.num_kv_heads", "must divide num_heads")
        out[name] = ModelShape(
            name=name,
            hidden_dim=s["hidden_dim"],
            intermediate_dim=s["intermediate_dim"],
            num_layers=s["num_layers"],
            num_heads=s["num_heads"],
            num_kv_heads=kv,
            seq_len=seq_len,
            gradient_checkpointing=config["model"]["gradient_checkpointing"],
            attention_backend=config["model"]["attention_backend"],
            cross_entropy_block_size=config["model"]["cross_entropy_block_size"],
        )
    return out


class _Runs:
    """The plan's runs as they are added, with the checks every run of the config passes: its model
    and token budget exist, an id names one spec only, and `run_overrides` edit the runs they name."""

    def __init__(self, config: dict, shapes: dict[str, ModelShape], budgets: tuple[int, ...]):
        train = config["training"]
        self.shapes, self.budgets = shapes, budgets
        self.batch, self.seq_len = train["batch_size"], config["model"]["seq_len"]
        self.tokens_per_step = self.batch * self.seq_len
        self.optimizer = {
            k: train[k] for k in ("beta1", "beta2", "epsilon", "max_grad_norm", "warmup", "lr_schedule", "min_lr_ratio")
        }
        self.overrides = config.get("run_overrides", {})
        self.overridden: set[str] = set()
        self.runs: dict[str, RunSpec] = {}

    def model(self, key: str, model: str) -> ModelShape:
        if model not in self.shapes:
            raise ConfigError(key, f"unknown model '{model}'; defined in `models`: {sorted(self.shapes)}")
        return self.shapes[model]

    def budget(self, key: str, budget: int) -> int:
        if budget not in self.budgets:
            raise ConfigError(key, f"token budget {budget} is not one of data.token_budgets {list(self.budgets)}")
        if budget < self.tokens_per_step:
            raise ConfigError(key, f"token budget {budget} is smaller than one batch ({self.batch} x {self.seq_len} = "
                                   f"{self.tokens_per_step} tokens)")
        return budget

    def add(self, spec: RunSpec, key: str) -> str:
        old = self.runs.get(spec.run_id)
        if old is not None and old != spec:
            raise ConfigError(key, f"run '{spec.run_id}' is defined twice with different settings")
        self.runs[spec.run_id] = spec
        return spec.run_id

    def real(self, key: str, model: str, budget: int, epochs: int, lr: float, wd: float, seed: int) -> str:
        """A run on the real data of a budget, as `run_overrides` may have edited it."""
        self.model(f"{key}.model", model)
        base_id = run_id(model, budget, epochs, lr, wd, seed)
        if base_id in self.overrides:
            o = self.overrides[base_id]
            self.overridden.add(base_id)
            epochs = o.get("epochs", epochs)
            lr = o.get("learning_rate", lr)
            wd = o.get("weight_decay", wd)
            seed = o.get("seed", seed)
        self.budget(f"{key}.token_budget", budget)
        return self.add(real_run_spec(self.shapes[model], budget, epochs, lr, wd, seed, self.batch, self.optimizer), key)

    def check_overrides_used(self) -> None:
        for rid in self.overrides:
            if rid not in self.overridden:
                raise ConfigError(f"run_overrides.{rid}", "no run of the plan has this id")


def _sweeps(config: dict, runs: _Runs) -> dict[str, tuple[str, ...]]:
    sweeps: dict[str, tuple[str, ...]] = {}
    for i, sweep in enumerate(config["sweeps"]):
        key = f"sweeps[{i}]"
        if sweep["name"] in sweeps:
            raise ConfigError(f"{key}.name", f"duplicate sweep name '{sweep['name']}'")
        ids = []
        for model in sweep["models"]:
            for budget in sweep.get("token_budgets") or runs.budgets:
                for epochs in sweep["epochs"]:
                    for lr in sweep["learning_rates"]:
                        for wd in sweep["weight_decays"]:
                            for seed in sweep["seeds"]:
                                ids.append(runs.real(key, model, budget, epochs, lr, wd, seed))
        sweeps[sweep["name"]] = tuple(dict.fromkeys(ids))
    return sweeps


def _fixed_ensembles(config: dict, runs: _Runs) -> dict[str, EnsembleSpec]:
    ensembles: dict[str, EnsembleSpec] = {}
    for i, ens in enumerate(config["ensembles"]):
        key = f"ensembles[{i}]"
        if ens["name"] in ensembles:
            raise ConfigError(f"{key}.name", f"duplicate ensemble name '{ens['name']}'")
        members = tuple(
            runs.real(key, ens["model"], ens["token_budget"], ens["epochs"], ens["learning_rate"], ens["weight_decay"], k)
            for k in range(ens["members"])
        )
        ensembles[ens["name"]] = EnsembleSpec(ens["name"], members, ens["model"], ens["token_budget"], len(members))
    return ensembles


def _distillations(config: dict, runs: _Runs, ensembles: dict[str, EnsembleSpec],
                   cells: dict[str, Cell]) -> dict[str, DistillSpec]:
    """Each distillation and its student (a run of the plan); its teacher's runs are the plan's, or
    known only once a search has ended."""
    distillations: dict[str, DistillSpec] = {}
    for i, dist in enumerate(config["distillation"]):
        key = f"distillation[{i}]"
        name = dist["name"]
        if name in distillations:
            raise ConfigError(f"{key}.name", f"duplicate distillation name '{name}'")
        teacher = dist["teacher"]
        if "ensemble" in teacher:
            if teacher["ensemble"] not in ensembles:
                raise ConfigError(
                    f"{key}.teacher.ensemble", f"unknown ensemble '{teacher['ensemble']}'; defined: {sorted(ensembles)}"
                )
            ens = ensembles[teacher["ensemble"]]
            members, kind, tname, budget, tcell = ens.members, "ensemble", ens.name, ens.token_budget, ens.cell
        elif "search" in teacher:
            c = cell_of_search(cells, teacher, f"{key}.teacher")
            members, kind, tname, budget, tcell = (), "search", c.cell_id, c.token_budget, c.cell_id
        else:
            rid = runs.real(f"{key}.teacher", teacher["model"], teacher["token_budget"], teacher["epochs"],
                            teacher["learning_rate"], teacher["weight_decay"], teacher.get("seed", 0))
            members, kind, tname, budget, tcell = (rid,), "single", rid, teacher["token_budget"], None
        st = dist["student"]
        shape = runs.model(f"{key}.student.model", st["model"])
        share = dist["synthetic_share"]
        # The student sees its real tokens `epochs` times, as the baseline does; synthetic text
        # fills the rest, so total steps = real steps x epochs / (1 - share), as in the paper.
        steps_per_epoch = (budget + synthetic_tokens(budget, share)) // runs.tokens_per_step
        student = RunSpec(
            run_id=run_id(st["model"], budget, st["epochs"], st["learning_rate"], st["weight_decay"], st["seed"])
            + f"-distill-{name}",
            model=shape,
            token_budget=budget,
            epochs=st["epochs"],
            learning_rate=float(st["learning_rate"]),
            weight_decay=float(st["weight_decay"]),
            seed=st["seed"],
            batch_size=runs.batch,
            optimizer=runs.optimizer,
            data=f"distill/{name}",
            num_train_steps=steps_per_epoch * st["epochs"],
            tokens_per_epoch=steps_per_epoch * runs.tokens_per_step,
            synthetic_share=share,
            teacher=name,
        )
        runs.add(student, key)
        distillations[name] = DistillSpec(
            name=name,
            teacher_members=tuple(members),
            teacher_kind=kind,
            teacher_name=tname,
            student=student.run_id,
            synthetic_share=share,
            teacher_tokens=dist["teacher_tokens"],
            temperature=dist["temperature"],
            sampling=dist["sampling"],
            token_budget=budget,
            seed=config["seed"],
            teacher_cell=tcell,
        )
    return distillations


def _check_mesh(train: dict, shapes: dict) -> None:
    """Tensor parallelism splits each model's MLP width and key/value heads (model/distributed.py):
    `model_axis_size` must divide them in every shape, or the first training would fail."""
    if train["engine"] == "loop" and train.get("sharding", "fsdp") != "fsdp":
        raise ConfigError("training.sharding", "the loop engine keeps a copy of the model on each device; "
                          "`sharding` is the trainer engine's: set `training.engine: trainer`")
    tp = int((train.get("levanter") or {}).get("model_axis_size", 1))
    if tp > 1 and not (train.get("levanter") or {}).get("tensor_parallel_axes"):
        for name, shape in shapes.items():
            for dim, size in (("num_kv_heads", shape.num_kv_heads), ("intermediate_dim", shape.intermediate_dim)):
                if size % tp:
                    raise ConfigError("training.levanter.model_axis_size",
                                      f"{tp} does not divide model {name}'s {dim} ({size}): tensor parallelism "
                                      "splits it over that many devices")


def build_plan(config: dict) -> Plan:
    """Turn a schema-validated config (defaults filled in) into the study's plan. Every check fails
    with a ConfigError naming the key, in the order of the config's sections."""
    shapes = _shapes(config)
    budgets = tuple(sorted(config["data"]["token_budgets"]))
    train = config["training"]
    if train["engine"] == "loop" and train.get("levanter"):
        raise ConfigError("training.levanter", "levanter Trainer settings need `training.engine: trainer`; the "
                          "loop engine trains in f32 on one device")
    _check_mesh(train, shapes)
    runs = _Runs(config, shapes, budgets)
    sweeps = _sweeps(config, runs)
    ensembles = _fixed_ensembles(config, runs)
    cells = search_cells(config, budgets, runs.model, runs.budget)
    for name, ens in search_ensembles(config, cells).items():
        if name in ensembles:
            raise ConfigError("ensemble_recipes", f"ensemble '{name}' is also defined in `ensembles`")
        ensembles[name] = ens
    distillations = _distillations(config, runs, ensembles, cells)
    _check_benchmark_tasks(config["benchmark"]["tasks"])
    cpt, cpt_runs = cpt_plan(config, cells, shapes, runs.optimizer)
    if cpt is not None:
        _check_benchmark_tasks(config["cpt"]["tasks"], "cpt.tasks", CPT_LOCAL_TASKS)
    runs.check_overrides_used()
    if not runs.runs and not cells:
        raise ConfigError("sweeps", "the study trains no model: add a search, a sweep, an ensemble or a distillation")
    return Plan(
        runs=runs.runs,
        sweeps=sweeps,
        ensembles=ensembles,
        distillations=distillations,
        token_budgets=budgets,
        config_hash=config_hash(config),
        models=shapes,
        cells=cells,
        batch_size=runs.batch,
        optimizer=runs.optimizer,
        cpt=cpt,
        cpt_runs=cpt_runs,
    )


def _check_benchmark_tasks(tasks: list[str], key: str = "benchmark.tasks", local=LOCAL_TASKS) -> None:
    """Each benchmark task is a local one or a task of the installed lm-eval-harness."""
    other = [t for t in tasks if t not in local]
    if len(set(tasks)) != len(tasks):
        raise ConfigError(key, f"a task is named twice in {tasks}")
    for t in tasks:
        if t in REPLACED:
            raise ConfigError(key, f"lm-eval's '{t}' reads a dataset with a loading script, which the pinned "
                              f"`datasets` refuses; name '{REPLACED[t]}' instead: the same task on a script-free "
                              f"copy of its data ({REPLACEMENTS[REPLACED[t]][1]}; docs/paper-scale.md)")
    if other:
        known = known_task_names()
        unknown = [t for t in other if t not in known]
        if unknown:
            raise ConfigError(key, f"{unknown} are neither local tasks {list(local)} nor "
                              f"tasks of the installed lm-eval-harness ({len(known)} known)")


def plan_to_dict(plan: Plan) -> dict:
    """The plan as JSON-able data (results/plan.json), with each run's sweep and ensemble
    membership; `plan_from_dict` reads it back. The order of its sweeps, ensembles and
    distillations is the config's and is kept (a run's list of sweeps follows it): write it with
    json.dumps as it is, not with sorted keys."""
    return {
        "config_hash": plan.config_hash,
        "token_budgets": list(plan.token_budgets),
        "runs": {r: s.to_dict() for r, s in sorted(plan.runs.items())},
        "membership": plan.membership(),
        "sweeps": {k: list(v) for k, v in plan.sweeps.items()},
        "ensembles": {k: dataclasses.asdict(v) for k, v in plan.ensembles.items()},
        "distillations": {k: dataclasses.asdict(v) for k, v in plan.distillations.items()},
        "cells": {k: dataclasses.asdict(v) for k, v in sorted(plan.cells.items())},
        "cpt": None if plan.cpt is None else {**dataclasses.asdict(plan.cpt), "runs": plan.cpt.runs},
        "models": {k: dataclasses.asdict(v) for k, v in sorted(plan.models.items())},
        "batch_size": plan.batch_size,
        "optimizer": plan.optimizer,
        "cpt_runs": {r: s.to_dict() for r, s in sorted(plan.cpt_runs.items())},
    }


def plan_from_dict(d: dict) -> Plan:
    """The Plan that `plan_to_dict` wrote (JSON's lists back to tuples, its string keys to ints)."""
    cpt = None
    if d["cpt"] is not None:
        c = {k: v for k, v in d["cpt"].items() if k != "runs"}  # `runs` is a property, written for readers
        c["scaling"] = {int(b): r for b, r in c["scaling"].items()}
        c["regularized"] = tuple(c["regularized"])
        c["members"] = {r: tuple(m) for r, m in c["members"].items()}
        cpt = CptSpec(**c)
    return Plan(
        runs={r: RunSpec.from_dict(s) for r, s in d["runs"].items()},
        sweeps={k: tuple(v) for k, v in d["sweeps"].items()},
        ensembles={k: EnsembleSpec(**{**v, "members": tuple(v["members"])}) for k, v in d["ensembles"].items()},
        distillations={k: DistillSpec(**{**v, "teacher_members": tuple(v["teacher_members"])})
                       for k, v in d["distillations"].items()},
        token_budgets=tuple(d["token_budgets"]),
        config_hash=d["config_hash"],
        models={k: ModelShape(**v) for k, v in d["models"].items()},
        cells={k: cell_from_dict(v) for k, v in d["cells"].items()},
        batch_size=d["batch_size"],
        optimizer=d["optimizer"],
        cpt=cpt,
        cpt_runs={r: RunSpec.from_dict(s) for r, s in d["cpt_runs"].items()},
    )
