"""The searches of a config (`tuning.searches`) as cells of study.tuning, and the ensembles of a
search's selections (`ensemble_recipes`): what the plan needs of them before any run is trained."""

from __future__ import annotations

from typing import Callable

from .config import ConfigError
from .specs import EnsembleSpec, format_tokens
from .tuning import AXES, Cell, extend_axis


def search_cells(config: dict, budgets, check_model: Callable, check_budget: Callable) -> dict[str, Cell]:
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
                    max_rounds=t["max_rounds"], reseeds=s["reseeds"],
                )
    return cells


def cells_of_search(cells: dict[str, Cell], search: str, key: str) -> list[Cell]:
    """The cells of the search named `search`; a ConfigError at `key` if there is none."""
    of = [c for c in cells.values() if c.search == search]
    if not of:
        raise ConfigError(key, f"no search named '{search}'; tuning.searches has {sorted({c.search for c in cells.values()})}")
    return of


def cell_of_search(cells: dict[str, Cell], ref: dict, key: str) -> Cell:
    """The cell `ref` ({search, model, token_budget}) names; a ConfigError at `key` if there is none."""
    found = cells_of_search(cells, ref["search"], f"{key}.search")
    match = [c for c in found if c.model == ref["model"] and c.token_budget == ref["token_budget"]]
    if not match:
        have = sorted((c.model, c.token_budget) for c in found)
        raise ConfigError(key, f"search '{ref['search']}' has no cell for model {ref['model']} at "
                          f"{ref['token_budget']} tokens; its cells are {have}")
    return match[0]


def search_ensembles(config: dict, cells: dict[str, Cell]) -> dict[str, EnsembleSpec]:
    """The ensembles of `ensemble_recipes`: one per (model, budget) cell of the named search."""
    out: dict[str, EnsembleSpec] = {}
    for i, er in enumerate(config["ensemble_recipes"]):
        key = f"ensemble_recipes[{i}]"
        of = cells_of_search(cells, er["search"], f"{key}.search")
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
