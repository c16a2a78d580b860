"""The run plan: a validated config in, the study's runs, ensembles and distillations out.

The plan is computed once, by pure Python, and is the only thing the Snakefile builds targets
from. A training job receives only its own `RunSpec` (as JSON params), so editing one run's
hyperparameters reruns that run and what depends on it, and nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .config import ConfigError, config_hash
from .specs import (
    CptSpec,
    DistillSpec,
    EnsembleSpec,
    ModelShape,
    RunSpec,
    cpt_run_id,
    format_tokens,
    parse_run_id,
    run_id,
    synthetic_tokens,
)
from .tasks import LOCAL_TASKS, known_task_names
from .tuning import AXES, Cell, cell_from_dict, extend_axis


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

    def point_run(self, cell: str | Cell, point) -> str:
        """Run id of a lattice point of a search cell."""
        c = self.cells[cell] if isinstance(cell, str) else cell
        lr, wd, ep = point
        return run_id(c.model, c.token_budget, ep, lr, wd, c.seed)

    def spec(self, rid: str) -> RunSpec:
        """The spec of a planned run, of any lattice point of a search cell, or of a run named by
        its hyperparameters (an ensemble member derived from a search) on a known model and budget."""
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


def build_plan(config: dict) -> Plan:
    """Turn a schema-validated config (defaults filled in) into the study's plan."""
    shapes = _shapes(config)
    budgets = tuple(sorted(config["data"]["token_budgets"]))
    train = config["training"]
    batch, seq_len = train["batch_size"], config["model"]["seq_len"]
    tokens_per_step = batch * seq_len
    optimizer = {
        k: train[k] for k in ("beta1", "beta2", "epsilon", "max_grad_norm", "warmup", "lr_schedule", "min_lr_ratio")
    }
    if train["engine"] == "loop" and train.get("levanter"):
        raise ConfigError("training.levanter", "levanter Trainer settings need `training.engine: trainer`; the "
                          "loop engine trains in f32 on one device")
    runs: dict[str, RunSpec] = {}

    def check_model(key: str, model: str) -> ModelShape:
        if model not in shapes:
            raise ConfigError(key, f"unknown model '{model}'; defined in `models`: {sorted(shapes)}")
        return shapes[model]

    def check_budget(key: str, budget: int) -> int:
        if budget not in budgets:
            raise ConfigError(key, f"token budget {budget} is not one of data.token_budgets {list(budgets)}")
        if budget < tokens_per_step:
            raise ConfigError(
                key, f"token budget {budget} is smaller than one batch ({batch} x {seq_len} = {tokens_per_step} tokens)"
            )
        return budget

    def add(spec: RunSpec, key: str) -> str:
        old = runs.get(spec.run_id)
        if old is not None and old != spec:
            raise ConfigError(key, f"run '{spec.run_id}' is defined twice with different settings")
        runs[spec.run_id] = spec
        return spec.run_id

    overrides = config.get("run_overrides", {})
    overridden: set[str] = set()

    def make_spec(model: str, budget: int, epochs: int, lr: float, wd: float, seed: int) -> RunSpec:
        return real_run_spec(shapes[model], budget, epochs, lr, wd, seed, batch, optimizer)

    def real_run(key: str, model: str, budget: int, epochs: int, lr: float, wd: float, seed: int) -> str:
        check_model(f"{key}.model", model)
        base_id = run_id(model, budget, epochs, lr, wd, seed)
        if base_id in overrides:
            o = overrides[base_id]
            overridden.add(base_id)
            epochs = o.get("epochs", epochs)
            lr = o.get("learning_rate", lr)
            wd = o.get("weight_decay", wd)
            seed = o.get("seed", seed)
        check_budget(f"{key}.token_budget", budget)
        return add(make_spec(model, budget, epochs, lr, wd, seed), key)

    sweeps: dict[str, tuple[str, ...]] = {}
    for i, sweep in enumerate(config["sweeps"]):
        key = f"sweeps[{i}]"
        if sweep["name"] in sweeps:
            raise ConfigError(f"{key}.name", f"duplicate sweep name '{sweep['name']}'")
        ids = []
        for model in sweep["models"]:
            for budget in sweep.get("token_budgets") or budgets:
                for epochs in sweep["epochs"]:
                    for lr in sweep["learning_rates"]:
                        for wd in sweep["weight_decays"]:
                            for seed in sweep["seeds"]:
                                ids.append(real_run(key, model, budget, epochs, lr, wd, seed))
        sweeps[sweep["name"]] = tuple(dict.fromkeys(ids))

    ensembles: dict[str, EnsembleSpec] = {}
    for i, ens in enumerate(config["ensembles"]):
        key = f"ensembles[{i}]"
        if ens["name"] in ensembles:
            raise ConfigError(f"{key}.name", f"duplicate ensemble name '{ens['name']}'")
        members = tuple(
            real_run(key, ens["model"], ens["token_budget"], ens["epochs"], ens["learning_rate"], ens["weight_decay"], k)
            for k in range(ens["members"])
        )
        ensembles[ens["name"]] = EnsembleSpec(ens["name"], members, ens["model"], ens["token_budget"], len(members))

    cells = _cells(config, budgets, check_model, check_budget)
    for name, ens in _search_ensembles(config, cells).items():
        if name in ensembles:
            raise ConfigError("ensemble_recipes", f"ensemble '{name}' is also defined in `ensembles`")
        ensembles[name] = ens

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
            c = _cell_of_search(cells, teacher, f"{key}.teacher")
            members, kind, tname, budget, tcell = (), "search", c.cell_id, c.token_budget, c.cell_id
        else:
            rid = real_run(
                f"{key}.teacher",
                teacher["model"],
                teacher["token_budget"],
                teacher["epochs"],
                teacher["learning_rate"],
                teacher["weight_decay"],
                teacher.get("seed", 0),
            )
            members, kind, tname, budget, tcell = (rid,), "single", rid, teacher["token_budget"], None
        st = dist["student"]
        shape = check_model(f"{key}.student.model", st["model"])
        share = dist["synthetic_share"]
        # The student sees its real tokens `epochs` times, as the baseline does; synthetic text
        # fills the rest, so total steps = real steps x epochs / (1 - share), as in the paper.
        steps_per_epoch = (budget + synthetic_tokens(budget, share)) // tokens_per_step
        student = RunSpec(
            run_id=run_id(st["model"], budget, st["epochs"], st["learning_rate"], st["weight_decay"], st["seed"])
            + f"-distill-{name}",
            model=shape,
            token_budget=budget,
            epochs=st["epochs"],
            learning_rate=float(st["learning_rate"]),
            weight_decay=float(st["weight_decay"]),
            seed=st["seed"],
            batch_size=batch,
            optimizer=optimizer,
            data=f"distill/{name}",
            num_train_steps=steps_per_epoch * st["epochs"],
            tokens_per_epoch=steps_per_epoch * tokens_per_step,
            synthetic_share=share,
            teacher=name,
        )
        add(student, key)
        distillations[name] = DistillSpec(
            name=name,
            teacher_members=tuple(members),
            teacher_kind=kind,
            teacher_name=tname,
            student=student.run_id,
            synthetic_share=share,
            teacher_tokens=dist["teacher_tokens"],
            temperature=dist["temperature"],
            token_budget=budget,
            seed=config["seed"],
            teacher_cell=tcell,
        )

    _check_benchmark_tasks(config["benchmark"]["tasks"])
    cpt, cpt_runs = _cpt(config, cells, shapes, optimizer)
    for rid in overrides:
        if rid not in overridden:
            raise ConfigError(f"run_overrides.{rid}", "no run of the plan has this id")
    if not runs and not cells:
        raise ConfigError("sweeps", "the study trains no model: add a search, a sweep, an ensemble or a distillation")
    return Plan(
        runs=runs,
        sweeps=sweeps,
        ensembles=ensembles,
        distillations=distillations,
        token_budgets=budgets,
        config_hash=config_hash(config),
        models=shapes,
        cells=cells,
        batch_size=batch,
        optimizer=optimizer,
        cpt=cpt,
        cpt_runs=cpt_runs,
    )


def _cpt(config: dict, cells: dict[str, Cell], shapes: dict[str, ModelShape], optimizer: dict):
    """The CPT stage's runs: the default recipe at each math budget, and at the recipes' budget a
    smaller batch, more epochs at each weight decay of a grid, and their ensembles."""
    c = config.get("cpt")
    if not c:
        return None, {}
    cell = _cell_of_search(cells, c["base"], "cpt.base")
    shape = shapes[cell.model]
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
            init_from=cell.cell_id,
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
        base_cell=cell.cell_id, model=shape.name, token_budget=D, scaling=scaling, small_batch=small,
        regularized=grid, members=members,
        problems={**p, "seed": config["seed"],
                  **({"files": c["files"], "data": {k: config["data"][k] for k in ("text_field", "max_document_chars")}}
                     if c.get("files") else {})}, answer_tokens=c["answer_tokens"], seed=config["seed"],
    )
    return cpt, runs


def _check_benchmark_tasks(tasks: list[str]) -> None:
    """Each benchmark task is a local one or a task of the installed lm-eval-harness."""
    other = [t for t in tasks if t not in LOCAL_TASKS]
    if len(set(tasks)) != len(tasks):
        raise ConfigError("benchmark.tasks", f"a task is named twice in {tasks}")
    if other:
        known = known_task_names()
        unknown = [t for t in other if t not in known]
        if unknown:
            raise ConfigError("benchmark.tasks", f"{unknown} are neither local tasks {list(LOCAL_TASKS)} nor "
                              f"tasks of the installed lm-eval-harness ({len(known)} known)")


def _cells(config: dict, budgets, check_model, check_budget) -> dict[str, Cell]:
    """One search cell per (search, model, token budget) of `tuning.searches`."""
    t = config["tuning"]
    cells: dict[str, Cell] = {}
    names = set()
    for i, s in enumerate(t["searches"]):
        key = f"tuning.searches[{i}]"
        if s["name"] in names:
            raise ConfigError(f"{key}.name", f"duplicate search name '{s['name']}'")
        names.add(s["name"])
        grid = tuple(tuple(sorted(set(s[f"{a}s" if a != "epochs" else a]))) for a in AXES)
        steps = t["max_extensions"] if t["extend_edges"] else 0
        axes = tuple(extend_axis(list(g), steps, integer=(a == "epochs"))[0] for a, g in zip(AXES, grid))
        start = s.get("start", {})
        point = []
        for a, g in zip(AXES, grid):
            v = start.get(a, g[(len(g) - 1) // 2])
            if v not in g:
                raise ConfigError(f"{key}.start.{a}", f"{v} is not one of the search's values {list(g)}")
            point.append(v)
        for model in s["models"]:
            check_model(f"{key}.models", model)
            for budget in s.get("token_budgets") or budgets:
                check_budget(f"{key}.token_budgets", budget)
                cid = f"{s['name']}-{model}-d{format_tokens(budget)}"
                cells[cid] = Cell(
                    cell_id=cid, search=s["name"], recipe=s["recipe"], model=model, token_budget=budget,
                    seed=s["seed"], axes=axes, grid=grid, start=tuple(point), mode=s["mode"],
                    max_rounds=t["max_rounds"],
                )
    return cells


def _cells_of_search(cells: dict[str, Cell], search: str, key: str) -> list[Cell]:
    """The cells of the search named `search`; a ConfigError at `key` if there is none."""
    of = [c for c in cells.values() if c.search == search]
    if not of:
        raise ConfigError(key, f"no search named '{search}'; tuning.searches has {sorted({c.search for c in cells.values()})}")
    return of


def _cell_of_search(cells: dict[str, Cell], ref: dict, key: str) -> Cell:
    """The cell `ref` ({search, model, token_budget}) names; a ConfigError at `key` if there is none."""
    found = _cells_of_search(cells, ref["search"], f"{key}.search")
    match = [c for c in found if c.model == ref["model"] and c.token_budget == ref["token_budget"]]
    if not match:
        have = sorted((c.model, c.token_budget) for c in found)
        raise ConfigError(key, f"search '{ref['search']}' has no cell for model {ref['model']} at "
                          f"{ref['token_budget']} tokens; its cells are {have}")
    return match[0]


def _search_ensembles(config: dict, cells: dict[str, Cell]) -> dict[str, EnsembleSpec]:
    """The ensembles of `ensemble_recipes`: one per (model, budget) cell of the named search."""
    out: dict[str, EnsembleSpec] = {}
    for i, er in enumerate(config["ensemble_recipes"]):
        key = f"ensemble_recipes[{i}]"
        of = _cells_of_search(cells, er["search"], f"{key}.search")
        for axis, attr in (("models", "model"), ("token_budgets", "token_budget")):
            known = sorted({getattr(c, attr) for c in of})
            extra = [v for v in er[axis] if v not in known]
            if extra:
                raise ConfigError(f"{key}.{axis}", f"{extra} not searched by '{er['search']}' (it has {known})")
        for c in sorted(of, key=lambda c: (c.token_budget, c.model)):
            if (er["models"] and c.model not in er["models"]) or (er["token_budgets"] and c.token_budget not in er["token_budgets"]):
                continue
            name = f"{er['name']}-{c.model}-d{format_tokens(c.token_budget)}"
            if name in out:
                raise ConfigError(f"{key}.name", f"ensemble '{name}' is defined twice")
            out[name] = EnsembleSpec(
                name=name, members=(), model=c.model, token_budget=c.token_budget, size=er["members"],
                recipe=er["name"], cell=c.cell_id, epochs_factor=er["epochs_factor"],
                weight_decay_factor=er["weight_decay_factor"],
            )
    return out


def plan_to_dict(plan: Plan) -> dict:
    """The plan as JSON-able data (results/plan.json), with each run's sweep and ensemble
    membership; `plan_from_dict` reads it back."""
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
