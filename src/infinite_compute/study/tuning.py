"""Hyperparameter search with the paper's "locally optimal" certificate.

A search cell is one (search, model, token budget). Its lattice is the product of three axes
(learning rate, weight decay, epochs): the configured grid values plus, when `extend_edges` is
on, up to `max_extensions` geometric steps beyond each end. An axis with a single value is fixed.

The search is coordinate descent in rounds. Round 0 trains the start point and its neighbours
(one lattice step up and down on each free axis), or the whole configured grid (`mode: grid`).
After each round the best trained point is taken; if some of its neighbours are untrained they
form the next round. The search stops when

- `certified`: every neighbour of the best point exists and is trained, and none is lower
  (the paper's rule);
- `edge`: every existing neighbour is trained but the best point sits on an end of a free axis
  (the lattice has no neighbour there): locally optimal inside the grid, not certified;
- `round_limit`: `max_rounds` rounds were trained and neighbours are still untrained.

Everything here is pure: the Snakemake rules and the results read and write the round records.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .specs import run_id

AXES = ("learning_rate", "weight_decay", "epochs")
SHORT = {"learning_rate": "lr", "weight_decay": "wd", "epochs": "epochs"}

Point = tuple  # (learning_rate, weight_decay, epochs)


def _round_sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def _next_value(vals: list, up: bool) -> float:
    """The value one step beyond the end of `vals` (sorted): a 1-3-10 style grid continues its
    decade pattern (0.001, 0.003, 0.01 -> 0.03); otherwise the ratio of the two end values."""
    seq = vals if up else [1.0 / v for v in reversed(vals)]
    end = seq[-1]
    tenth = _round_sig(end / 10)
    rounded = [_round_sig(v) for v in seq]
    if tenth in rounded and rounded.index(tenth) + 1 < len(seq):
        nxt = seq[rounded.index(tenth) + 1] * 10
    elif seq[-2] > 0:
        nxt = end * end / seq[-2]
    else:
        return math.inf
    return nxt if up else 1.0 / nxt


def extend_axis(values: list, steps: int, integer: bool) -> tuple[tuple, int]:
    """`values` sorted, plus up to `steps` continuations beyond each end (see `_next_value`).
    Returns the axis and the index of the first configured value. A continuation that is not
    positive, not distinct, or (for epochs) not a whole number >= 1 ends that side."""
    vals = sorted(values)
    if len(vals) < 2 or steps == 0:
        return tuple(vals), 0
    ext = list(vals)
    n_low = 0
    for up in (False, True):
        if not up and vals[0] <= 0:  # nothing below a weight decay of 0
            continue
        for _ in range(steps):
            v = _next_value(ext, up)
            v = round(v) if integer else _round_sig(v)
            if v <= 0 or not math.isfinite(v) or (integer and v < 1) or v in ext:
                break
            if up:
                ext.append(v)
            else:
                ext.insert(0, v)
                n_low += 1
    return tuple(ext), n_low


@dataclass(frozen=True)
class Cell:
    cell_id: str
    search: str
    recipe: str  # "baseline" or "regularized"
    model: str
    token_budget: int
    seed: int
    axes: tuple[tuple, tuple, tuple]  # lattice values of lr, wd, epochs
    grid: tuple[tuple, tuple, tuple]  # the configured values (a subset of the lattice)
    start: Point
    mode: str  # "local" or "grid"
    max_rounds: int
    # seeds seed+1 .. seed+reseeds of the selected run's hyperparameters, trained once the search has
    # ended: unbiased draws of the selected recipe (the selection itself is the lowest of many runs)
    reseeds: int = 0

    def free(self, axis: int) -> bool:
        return len(self.axes[axis]) > 1

    def neighbours(self, p: Point) -> list[dict]:
        """One step down and up on each free axis; `point` is None off the lattice (an edge)."""
        out = []
        for a, name in enumerate(AXES):
            if not self.free(a):
                continue
            vals = self.axes[a]
            i = vals.index(p[a])
            for direction, j in (("down", i - 1), ("up", i + 1)):
                q = None
                if 0 <= j < len(vals):
                    q = tuple(vals[j] if k == a else p[k] for k in range(3))
                out.append({"axis": name, "direction": direction, "point": q})
        return out

    def first_round(self) -> list[Point]:
        if self.mode == "grid":
            return [(lr, wd, ep) for lr in self.grid[0] for wd in self.grid[1] for ep in self.grid[2]]
        return [self.start] + [n["point"] for n in self.neighbours(self.start) if n["point"] is not None]

    def lattice(self) -> list[Point]:
        return [(lr, wd, ep) for lr in self.axes[0] for wd in self.axes[1] for ep in self.axes[2]]

    def on_grid(self, p: Point) -> bool:
        return all(p[a] in self.grid[a] for a in range(3))

    def reseed_ids(self, best: dict) -> list[str]:
        """The run ids of the selected recipe's reseeds: `best` (the final record's `best`: learning_rate,
        weight_decay, epochs) with seeds seed+1 .. seed+reseeds, named as an ensemble's members are
        (specs.EnsembleSpec.member_ids), so a reseed that is also a member is one run, trained once."""
        wd = float(f"{best['weight_decay']:.6g}")
        epochs = max(1, round(best["epochs"]))
        return [run_id(self.model, self.token_budget, epochs, best["learning_rate"], wd, self.seed + k)
                for k in range(1, self.reseeds + 1)]

    def search_dict(self) -> dict:
        """The cell as its search's rounds read it: everything but `reseeds`, which only the runs after
        the search depend on (so a change of reseeds reruns no round)."""
        d = dataclasses.asdict(self)
        del d["reseeds"]
        return d


def _key(loss: float) -> float:
    return loss if loss is not None and math.isfinite(loss) else math.inf


def advance(cell: Cell, losses: dict[Point, float], round_index: int) -> dict:
    """The state after round `round_index`, given the loss of every point trained so far
    (NaN for a diverged run: trained, never best). Returns status, best point, the best point's
    neighbours with their losses, and the next round's points (empty unless status 'continue')."""
    if not losses:
        raise ValueError(f"{cell.cell_id}: no trained point")
    best = min(losses, key=lambda p: (_key(losses[p]), p))
    nbrs = cell.neighbours(best)
    untrained = [n["point"] for n in nbrs if n["point"] is not None and n["point"] not in losses]
    edges = [f"{n['axis']} {n['direction']}" for n in nbrs if n["point"] is None]
    if untrained:
        status = "continue" if round_index + 1 < cell.max_rounds else "round_limit"
    elif edges:
        status = "edge"
    else:
        status = "certified"
    lower = [n for n in nbrs if n["point"] in losses and _key(losses[n["point"]]) < _key(losses[best])]
    assert not lower, "the best point cannot have a lower neighbour"
    return {
        "status": status,
        "best": best,
        "best_loss": losses[best],
        "neighbours": [
            {**n, "loss": losses.get(n["point"]) if n["point"] is not None else None} for n in nbrs
        ],
        "edges": edges,
        "next": untrained if status == "continue" else [],
    }


def cell_from_dict(d: dict) -> Cell:
    """A Cell from `dataclasses.asdict` (or `Cell.search_dict`); a dict written before `reseeds`
    existed reads as a cell without reseeds."""
    d = dict(d)
    for k in ("axes", "grid"):
        d[k] = tuple(tuple(v) for v in d[k])
    d["start"] = tuple(d["start"])
    return Cell(**d)


def round_record(cell: Cell, round_index: int, previous: dict | None, new_losses: dict[str, float]) -> dict:
    """The record of round `round_index`: every point trained so far with its loss and round,
    and `advance`'s verdict. `new_losses` maps this round's run ids to their losses."""
    def rid(p: Point) -> str:
        return run_id(cell.model, cell.token_budget, p[2], p[0], p[1], cell.seed)

    by_id = {rid(p): p for p in cell.lattice()}
    points = {tuple(q["point"]): q for q in (previous or {}).get("points", [])}
    for r, loss in new_losses.items():
        if r not in by_id:
            raise ValueError(f"{cell.cell_id}: run '{r}' is not a point of this cell's lattice")
        p = by_id[r]
        points.setdefault(p, {"run_id": r, "point": list(p), "round": round_index, "loss": loss})
    losses = {p: (q["loss"] if q["loss"] is not None else math.nan) for p, q in points.items()}
    verdict = advance(cell, losses, round_index)

    def named(p):
        return dict(zip(AXES, p))

    return {
        "cell": cell.cell_id,
        "search": cell.search,
        "recipe": cell.recipe,
        "model": cell.model,
        "token_budget": cell.token_budget,
        "round": round_index,
        "status": verdict["status"],
        "certified": verdict["status"] == "certified",
        "best": {"run_id": rid(verdict["best"]), "loss": verdict["best_loss"], **named(verdict["best"]),
                 "on_grid": cell.on_grid(verdict["best"])},
        "neighbours": [
            {"axis": n["axis"], "direction": n["direction"],
             "run_id": rid(n["point"]) if n["point"] is not None else None, "loss": n["loss"]}
            for n in verdict["neighbours"]
        ],
        "edges": verdict["edges"],
        "points": sorted(points.values(), key=lambda q: (q["round"], q["run_id"])),
        "next_points": [list(p) for p in verdict["next"]],
        "next": [rid(p) for p in verdict["next"]],
    }


def final_record(record: dict, where: str) -> dict:
    """A search's outcome: the record of its last round (`where` names it in the error when the
    search has not ended), with its number of rounds."""
    if record["status"] == "continue":
        raise ValueError(f"{where}: the search of {record['cell']} has not ended")
    return {**record, "rounds": record["round"] + 1}
