"""The locally-optimal search: lattice, neighbours, rounds and certificate on known loss surfaces."""

import copy
import math

import pytest
from conftest import raw_smoke_config
from test_plan import validated

from infinite_compute.study.config import ConfigError
from infinite_compute.study.plan import build_plan
from infinite_compute.study.tuning import (
    Cell,
    advance,
    cell_from_dict,
    extend_axis,
    round_record,
)


@pytest.mark.parametrize(
    "values,steps,integer,expected",
    [
        ([0.001, 0.003, 0.01], 2, False, (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)),  # 1-3-10 pattern
        ([0.1, 0.2, 0.4, 0.8], 1, False, (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)),  # ratio of the end values
        ([2, 4, 8], 3, True, (1, 2, 4, 8, 16, 32, 64)),  # epochs stop at 1
        ([0, 0.1, 0.2], 2, False, (0, 0.1, 0.2, 0.4, 0.8)),  # nothing below a weight decay of 0
        ([0.1], 2, False, (0.1,)),  # one value: a fixed axis
        ([0.1, 0.4], 0, False, (0.1, 0.4)),  # extension off
    ],
)
def test_extend_axis(values, steps, integer, expected):
    assert extend_axis(values, steps, integer)[0] == expected


def make_cell(lrs=(0.001, 0.003, 0.01), wds=(0.1, 0.2, 0.4, 0.8), eps=(2, 4, 8), steps=1, start=None, mode="local",
              max_rounds=10):
    grid = (tuple(lrs), tuple(wds), tuple(eps))
    axes = tuple(extend_axis(list(g), steps, integer=(i == 2))[0] for i, g in enumerate(grid))
    start = start or tuple(g[(len(g) - 1) // 2] for g in grid)
    return Cell("c", "s", "regularized", "m", 1024, 0, axes, grid, start, mode, max_rounds)


def bowl(opt):
    """A separable convex loss on log-hyperparameters with its minimum at `opt`."""
    def loss(p):
        return 3.0 + sum((math.log(v) - math.log(o)) ** 2 for v, o in zip(p, opt))
    return loss


def search(cell, loss):
    """Run the search the way the workflow does, round by round."""
    losses, todo, r = {}, cell.first_round(), 0
    while True:
        losses.update({p: loss(p) for p in todo})
        v = advance(cell, losses, r)
        if v["status"] != "continue":
            return v, r + 1, losses
        todo, r = v["next"], r + 1


def test_descent_finds_and_certifies_an_interior_optimum():
    cell = make_cell(start=(0.001, 0.1, 2))
    v, rounds, losses = search(cell, bowl((0.003, 0.4, 4)))
    assert v["status"] == "certified" and v["best"] == (0.003, 0.4, 4)
    assert len(v["neighbours"]) == 6 and all(n["loss"] > v["best_loss"] for n in v["neighbours"])
    assert rounds > 1 and len(losses) < len(cell.lattice())  # a descent, not the whole lattice


def test_optimum_past_the_grid_is_reached_by_extension_or_flagged_as_edge():
    opt = (0.003, 3.0, 4)  # weight decay optimum far above the grid's 0.8
    v, _, _ = search(make_cell(steps=3), bowl(opt))
    assert v["best"][1] == 3.2 and v["status"] == "certified"  # extended to 1.6, 3.2 and 6.4 (trained, higher)
    assert v["best"][1] not in make_cell().grid[1]
    v, _, _ = search(make_cell(steps=1), bowl(opt))
    assert v["best"][1] == 1.6 and v["status"] == "edge" and v["edges"] == ["weight_decay up"]
    v, _, _ = search(make_cell(steps=0), bowl(opt))
    assert v["best"][1] == 0.8 and v["status"] == "edge"


def test_grid_mode_trains_the_grid_first():
    cell = make_cell(mode="grid", steps=0)
    assert len(cell.first_round()) == 3 * 4 * 3
    v, rounds, losses = search(cell, bowl((0.003, 0.2, 4)))
    assert v["status"] == "certified" and rounds == 1 and len(losses) == 36


def test_round_limit_and_fixed_axes():
    cell = make_cell(start=(0.001, 0.1, 2), max_rounds=1)
    v, rounds, _ = search(cell, bowl((0.01, 0.8, 8)))
    assert v["status"] == "round_limit" and rounds == 1
    fixed = make_cell(wds=(0.1,), steps=1)
    assert {n["axis"] for n in fixed.neighbours(fixed.start)} == {"learning_rate", "epochs"}
    assert len(fixed.first_round()) == 5


def test_a_diverged_run_is_trained_but_never_best():
    cell = make_cell(steps=0)
    loss = bowl(cell.start)
    v = advance(cell, {p: (math.nan if p == cell.start else loss(p)) for p in cell.first_round()}, 0)
    assert v["best"] != cell.start and v["status"] == "continue"


def test_round_records_accumulate_and_reject_foreign_runs():
    from infinite_compute.study.specs import run_id

    cell = make_cell(steps=0)
    loss = bowl((0.003, 0.4, 4))  # one step up in weight decay from the start

    def rid(p):
        return run_id("m", 1024, p[2], p[0], p[1], 0)

    rec0 = round_record(cell, 0, None, {rid(p): loss(p) for p in cell.first_round()})
    assert rec0["status"] == "continue" and len(rec0["points"]) == 7
    rec1 = round_record(cell, 1, rec0, {r: loss(tuple(p)) for r, p in zip(rec0["next"], rec0["next_points"])})
    assert len(rec1["points"]) == 7 + len(rec0["next"])
    assert {q["round"] for q in rec1["points"]} == {0, 1}
    with pytest.raises(ValueError, match="not a point"):
        round_record(cell, 0, None, {"other-d1k-ep1-lr1-wd1-s0": 1.0})
    assert cell_from_dict(__import__("dataclasses").asdict(cell)) == cell


def test_plan_builds_cells_and_specs_for_any_lattice_point():
    plan = build_plan(validated(raw_smoke_config()))
    assert sorted(plan.cells) == sorted(
        ["base-t1-d8k", "base-t2-d8k", "base-t3-d8k", "data-t1-d4k", "data-t1-d16k", "reg-t1-d8k", "reg-t2-d8k",
         "reg-t3-d8k", "div-t1-d4k"]
    )
    cell = plan.cells["reg-t2-d8k"]
    far = (0.01, cell.axes[1][-1], 2)  # an extension point, never in the config
    spec = plan.spec(plan.point_run(cell, far))
    assert spec.weight_decay == cell.axes[1][-1] and spec.model.name == "t2" and spec.token_budget == 8192
    # a run named by its hyperparameters (an ensemble member) has a spec; an unknown budget has none
    assert plan.spec("t2-d8k-ep3-lr0.01-wd0.1-s0").num_train_steps == 8192 // (8 * 64) * 3
    with pytest.raises(KeyError):
        plan.spec("t2-d3k-ep3-lr0.01-wd0.1-s0")


def test_a_start_off_the_grid_names_its_key():
    cfg = raw_smoke_config()
    cfg = copy.deepcopy(cfg)
    cfg["tuning"]["searches"][2]["start"] = {"weight_decay": 0.3}
    with pytest.raises(ConfigError) as e:
        build_plan(validated(cfg))
    assert e.value.key == "tuning.searches[2].start.weight_decay"
