import copy
import os

import pytest
from conftest import ROOT, raw_smoke_config
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from infinite_compute.study.config import ConfigError
from infinite_compute.study.plan import build_plan, plan_from_dict, plan_to_dict
from infinite_compute.study.specs import ModelShape, run_id

SCHEMA = os.path.join(ROOT, "schemas", "config.schema.yaml")


def validated(cfg):
    cfg = copy.deepcopy(cfg)
    validate(cfg, SCHEMA)
    return cfg


def test_run_ids_are_readable_and_stable(smoke_config):
    plan = build_plan(smoke_config)
    assert run_id("n4m", 1 << 20, 8, 0.003, 0.8, 0) == "n4m-d1m-ep8-lr0.003-wd0.8-s0"
    assert "t1-d8k-ep2-lr0.01-wd0.1-s0" in plan.runs
    assert build_plan(smoke_config).runs == plan.runs  # pure: same config, same plan


def test_runs_are_shared_not_duplicated(smoke_config):
    plan = build_plan(smoke_config)
    shared = "t1-d8k-ep2-lr0.01-wd0.1-s0"  # ensemble member 0, and a point of two search cells
    d = plan_to_dict(plan)
    assert d["membership"][shared] == {"sweeps": [], "ensembles": ["t1-ens"]}
    assert len(plan.runs) == 7  # 3 members, 3 students and the diverging sweep run; the searches' runs are found as they go
    for cell in ("base-t1-d8k", "reg-t1-d8k"):
        assert shared in [plan.point_run(cell, p) for p in plan.cells[cell].first_round()]
    assert plan.spec(shared) == plan.runs[shared]


def test_steps_follow_budget_epochs_and_synthetic_share(smoke_config):
    plan = build_plan(smoke_config)
    r = plan.runs["t1-d8k-ep2-lr0.01-wd0.1-s0"]
    assert r.num_train_steps == 8192 // (8 * 64) * 2
    student = plan.runs[plan.distillations["ens-distill"].student]
    # share 0.5: as many synthetic tokens as real ones, so twice the steps of the real data
    assert student.num_train_steps == 2 * r.num_train_steps
    assert plan.distillations["ens-distill"].teacher_members == plan.ensembles["t1-ens"].members


def test_teachers_known_only_from_a_search_are_named_not_listed(smoke_config):
    plan = build_plan(smoke_config)
    ens, self_ = plan.distillations["reg-ens-distill"], plan.distillations["self-distill"]
    assert (ens.teacher_kind, ens.teacher_name, ens.teacher_cell) == ("ensemble", "reg-ens-t1-d8k", "reg-t1-d8k")
    assert (self_.teacher_kind, self_.teacher_name, self_.teacher_cell) == ("search", "reg-t1-d8k", "reg-t1-d8k")
    assert ens.teacher_members == () and self_.teacher_members == ()
    assert self_.sampling_params()["teacher"] == ["search", "reg-t1-d8k"]
    # the student is planned like any run: the teacher's budget of real data, the rest synthetic
    assert plan.runs[self_.student].token_budget == 8192 and plan.runs[self_.student].teacher == "self-distill"


def test_non_embedding_params_of_a_known_shape():
    # hidden 4, 1 layer, 2 heads of 2, MLP 8: attention 4*4*4, MLP 3*4*8, two layer norms, final norm
    s = ModelShape("x", hidden_dim=4, intermediate_dim=8, num_layers=1, num_heads=2, num_kv_heads=2, seq_len=8)
    assert s.non_embedding_params() == 64 + 96 + 8 + 4


def test_run_override_changes_only_that_run(smoke_config):
    base = build_plan(smoke_config)
    cfg = copy.deepcopy(smoke_config)
    cfg["run_overrides"] = {"t1-d8k-ep2-lr0.01-wd0.1-s1": {"learning_rate": 0.02}}
    plan = build_plan(cfg)
    assert set(plan.runs) - set(base.runs) == {"t1-d8k-ep2-lr0.02-wd0.1-s1"}
    assert set(base.runs) - set(plan.runs) == {"t1-d8k-ep2-lr0.01-wd0.1-s1"}
    assert plan.ensembles["t1-ens"].members[1] == "t1-d8k-ep2-lr0.02-wd0.1-s1"


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["ensembles"][0].update(model="nope"), "ensembles[0].model"),
        (lambda c: c["tuning"]["searches"][0].update(token_budgets=[1234]), "tuning.searches[0].token_budgets"),
        (lambda c: c["tuning"]["searches"][1].update(models=["t9"]), "tuning.searches[1].models"),
        (lambda c: c["distillation"][0].update(teacher={"ensemble": "nope"}), "distillation[0].teacher.ensemble"),
        (lambda c: c.update(run_overrides={"no-such-run": {"epochs": 3}}), "run_overrides.no-such-run"),
        (lambda c: c["models"]["t1"].update(num_heads=3), "models.t1.num_heads"),
        (lambda c: c["ensemble_recipes"][0].update(search="nope"), "ensemble_recipes[0].search"),
        (lambda c: c["ensemble_recipes"][0].update(models=["t1", "t9"]), "ensemble_recipes[0].models"),
        (lambda c: c["ensemble_recipes"][0].update(token_budgets=[4096]), "ensemble_recipes[0].token_budgets"),
        (lambda c: c["distillation"][0].update(teacher={"search": "nope", "model": "t1", "token_budget": 8192}),
         "distillation[0].teacher.search"),
        (lambda c: c["distillation"][0].update(teacher={"search": "reg", "model": "t1", "token_budget": 4096}),
         "distillation[0].teacher"),
        (lambda c: c["benchmark"].update(tasks=["heldout_next_line", "arc_eazy"]), "benchmark.tasks"),
        (lambda c: c["cpt"].update(token_budget=3000), "cpt.token_budget"),
        (lambda c: c["cpt"]["base"].update(search="nope"), "cpt.base.search"),
        (lambda c: c["cpt"]["base"].update(token_budget=4096), "cpt.base"),
        (lambda c: c["cpt"].update(token_budgets=[256, 2048]), "cpt.token_budgets"),
        (lambda c: c.setdefault("training", {}).update(levanter={"mp": "p=f32,c=bfloat16"}), "training.levanter"),
    ],
)
def test_semantic_errors_name_the_key(edit, key):
    cfg = raw_smoke_config()
    edit(cfg)
    with pytest.raises(ConfigError) as e:
        build_plan(validated(cfg))
    assert e.value.key == key and key in str(e.value)


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda c: c["tuning"]["searches"][2].update(weight_decays=[-0.1]), ["weight_decays", "minimum"]),
        (lambda c: c["tuning"]["searches"][0].update(epochs=[0]), ["epochs", "minimum"]),
        (lambda c: c["tuning"]["searches"][0].update(recipe="fancy"), ["recipe", "fancy"]),
        (lambda c: c.update(learning_rat=0.1), ["learning_rat"]),
        (lambda c: c["training"].update(warmpu=0.1), ["warmpu"]),
        (lambda c: c["training"].update(engine="fast"), ["engine", "fast"]),
        (lambda c: c["model"].update(attention_backend="flash"), ["attention_backend", "flash"]),
    ],
)
def test_schema_errors_name_the_key(edit, words):
    cfg = raw_smoke_config()
    edit(cfg)
    with pytest.raises(WorkflowError) as e:
        validate(cfg, SCHEMA)
    for w in words:
        assert w in str(e.value)


def test_cpt_runs_start_from_the_base_cell_and_ensemble_each_weight_decay(smoke_config):
    plan = build_plan(smoke_config)
    c = plan.cpt
    assert c.base_cell == "reg-t1-d8k" and sorted(c.scaling) == [1024, 2048, 4096]
    assert all(plan.spec(r).init_from == "reg-t1-d8k" for r in c.runs)
    assert plan.spec(c.small_batch).batch_size == 2 and plan.spec(c.default).batch_size == 8
    for rid in c.regularized:
        members = c.members[rid]
        assert members[0] == rid and [plan.spec(m).seed for m in members] == [0, 1]
        assert {plan.spec(m).weight_decay for m in members} == {plan.spec(rid).weight_decay}
    # CPT runs are not pre-training runs: they never enter the main evaluation or results
    assert not set(plan.cpt_runs) & set(plan.runs)
    assert "init_from" not in plan.runs[sorted(plan.runs)[0]].to_dict()  # old specs are unchanged


def test_benchmark_tasks_may_be_lm_evals_own():
    cfg = raw_smoke_config()
    cfg["benchmark"]["tasks"] = ["arc_easy", "piqa", "sciq"]  # config/paper.yaml's
    build_plan(validated(cfg))


def test_schema_sets_defaults_in_list_items():
    cfg = validated(raw_smoke_config())
    assert cfg["tuning"]["searches"][0]["mode"] == "local" and cfg["tuning"]["searches"][0]["seed"] == 0
    assert cfg["tuning"]["extend_edges"] is True
    assert cfg["training"]["beta2"] == 0.95 and cfg["training"]["baseline_weight_decay"] == 0.1


def test_ensembles_of_a_search_follow_the_papers_member_rule(smoke_config):
    plan = build_plan(smoke_config)
    ens = {n: e for n, e in plan.ensembles.items() if e.recipe == "reg-ens"}
    # one per (model, budget) cell of the search, named after it
    assert sorted(ens) == ["reg-ens-t1-d8k", "reg-ens-t2-d8k", "reg-ens-t3-d8k"]
    e = ens["reg-ens-t2-d8k"]
    assert e.cell == "reg-t2-d8k" and e.members == () and e.size == 3
    with pytest.raises(ValueError, match="reg-t2-d8k"):
        e.member_ids()  # unknown until the search has selected its run
    best = {"learning_rate": 0.01, "weight_decay": 0.4, "epochs": 2}
    ids = e.member_ids(best)
    # double the epochs, half the weight decay, the same lr, a new seed per member
    assert ids == ["t2-d8k-ep4-lr0.01-wd0.2-s0", "t2-d8k-ep4-lr0.01-wd0.2-s1", "t2-d8k-ep4-lr0.01-wd0.2-s2"]
    spec = plan.spec(ids[1])
    assert (spec.epochs, spec.learning_rate, spec.weight_decay, spec.seed) == (4, 0.01, 0.2, 1)
    assert spec.model == plan.models["t2"] and spec.num_train_steps == 8192 // (8 * 64) * 4
    # raising Kmax keeps the first members: only new seeds are added
    cfg = copy.deepcopy(smoke_config)
    cfg["ensemble_recipes"][0].update(members=4)
    assert build_plan(cfg).ensembles["reg-ens-t2-d8k"].member_ids(best) == ids + ["t2-d8k-ep4-lr0.01-wd0.2-s3"]
    cfg["ensemble_recipes"][0].update(epochs_factor=1.5, weight_decay_factor=0.25)
    other = build_plan(cfg).ensembles["reg-ens-t2-d8k"].member_ids(best)
    assert other[1] == "t2-d8k-ep3-lr0.01-wd0.1-s1"
    with pytest.raises(KeyError):
        plan.spec("t9-d8k-ep4-lr0.01-wd0.2-s0")  # no such model
    with pytest.raises(KeyError):
        plan.spec("t2-d5k-ep4-lr0.01-wd0.2-s0")  # no such budget


def test_the_plan_round_trips_through_plan_json(smoke_config):
    """results/plan.json is the plan: read back, it is the same Plan, and it knows every run the
    original knows (search points and members of a search's ensemble, named by their hyperparameters)."""
    import json

    plan = build_plan(smoke_config)
    back = plan_from_dict(json.loads(json.dumps(plan_to_dict(plan))))  # as rules/results.smk writes it
    assert back == plan
    for part in ("sweeps", "ensembles", "distillations"):  # in the config's order (cells and runs: sorted)
        assert list(getattr(back, part)) == list(getattr(plan, part)), part
    cell = next(c for c in plan.cells.values() if c.recipe == "regularized")
    for point in list(cell.lattice())[:5]:
        rid = plan.point_run(cell.cell_id, point)
        assert back.spec(rid) == plan.spec(rid)
    ens = next(e for e in plan.ensembles.values() if e.cell is not None)
    best = {"learning_rate": cell.grid[0][0], "weight_decay": cell.grid[1][-1], "epochs": cell.grid[2][0]}
    assert [back.spec(r) for r in ens.member_ids(best)] == [plan.spec(r) for r in ens.member_ids(best)]
    assert back.cpt == plan.cpt and back.cpt_runs == plan.cpt_runs and back.membership() == plan.membership()
    edited = plan_to_dict(plan)
    edited["runs"][next(iter(edited["runs"]))]["learning_rate"] *= 2  # the comparison sees a changed spec
    assert plan_from_dict(edited) != plan


def _paper_config(name: str = "paper.yaml") -> tuple[dict, dict]:
    """config/<name> merged over config.yaml as `--configfile` does (snakemake.utils.update_config),
    validated with the schema's defaults; and that YAML itself."""
    import yaml
    from snakemake.utils import update_config

    with open(os.path.join(ROOT, "config.yaml")) as f:
        config = yaml.safe_load(f)
    with open(os.path.join(ROOT, "config", name)) as f:
        paper = yaml.safe_load(f)
    update_config(config, copy.deepcopy(paper))
    validate(config, SCHEMA)
    return config, paper


def test_the_mid_config_validates_and_plans_the_sizes_its_comments_give():
    """config/mid.yaml (one GPU): its models' parameter counts as its comments state them, its budgets,
    a cell per search, model and budget, and the GPU it asks for."""
    import re

    config, mid = _paper_config("mid.yaml")
    plan = build_plan(config)
    assert plan.token_budgets == tuple(sorted(mid["data"]["token_budgets"]))
    assert config["resources"]["accelerator"] == "gpu"
    text = open(os.path.join(ROOT, "config", "mid.yaml")).read()
    for name in mid["models"]:
        stated = re.search(rf"^  {name}: .*# \(([\d.]+)M\)$", text, re.M).group(1)
        n = plan.models[name].non_embedding_params()
        assert f"{n / 1e6:.{len(stated.partition('.')[2])}f}" == stated, name
        assert plan.models[name].seq_len == mid["model"]["seq_len"]
    assert re.search(r"batch_size: (\d+) +# ([\d,]+) tokens per step", text).group(2) == \
        f"{mid['training']['batch_size'] * mid['model']['seq_len']:,}"
    searches = mid["tuning"]["searches"]
    assert set(plan.cells) == {f"{s['name']}-{m}-d{_tokens(b)}" for s in searches for m in s["models"]
                               for b in s["token_budgets"]}
    # each student's teacher samples more tokens than its mix takes (the comment's number)
    for d in mid["distillation"]:
        student = plan.runs[plan.distillations[d["name"]].student]
        synthetic = round(student.token_budget * d["synthetic_share"] / (1 - d["synthetic_share"]))
        assert d["teacher_tokens"] > synthetic and f"the {synthetic:,} synthetic tokens" in text


def test_the_paper_config_validates_and_plans_what_it_says():
    """config/paper.yaml's plan, counted from the YAML before any training: its search cells, their
    first rounds, models, budgets, ensembles, students and CPT runs; and docs/paper-scale.md's count of
    the trainings its dry run lists (the first rounds, the students and the CPT runs known up front)."""
    import re

    config, paper = _paper_config()
    plan = build_plan(config)
    budgets = paper["data"]["token_budgets"]
    assert plan.token_budgets == tuple(sorted(budgets))
    assert set(paper["models"]) <= set(plan.models)  # (config.yaml's own shapes are merged in, unused)
    for name, m in paper["models"].items():
        shape = plan.models[name]
        assert (shape.hidden_dim, shape.num_layers, shape.seq_len) == (m["hidden_dim"], m["num_layers"],
                                                                      paper["model"]["seq_len"])

    # one cell per (search, model, budget); a search without token_budgets runs at every budget
    searches = paper["tuning"]["searches"]
    expected_cells = {f"{s['name']}-{m}-d{_tokens(b)}" for s in searches for m in s["models"]
                      for b in (s.get("token_budgets") or budgets)}
    assert set(plan.cells) == expected_cells and len(plan.cells) == 4 * 1 + 4 * 4 + 4 * 4
    assert paper["tuning"]["extend_edges"] is False
    first_round = set()
    for s in searches:
        grid = {"learning_rate": sorted(s["learning_rates"]), "weight_decay": sorted(s["weight_decays"]),
                "epochs": sorted(s["epochs"])}
        start = {a: s["start"].get(a, grid[a][(len(grid[a]) - 1) // 2]) for a in grid}
        points = [start]  # the start and its neighbours one grid step down and up on each free axis
        for a, values in grid.items():
            i = values.index(start[a])
            points += [{**start, a: values[j]} for j in (i - 1, i + 1) if len(values) > 1 and 0 <= j < len(values)]
        for m in s["models"]:
            for b in s.get("token_budgets") or budgets:
                cell = plan.cells[f"{s['name']}-{m}-d{_tokens(b)}"]
                assert cell.axes == tuple(tuple(grid[a]) for a in grid)  # the paper's grid is the lattice
                ids = {run_id(m, b, p["epochs"], p["learning_rate"], p["weight_decay"], s.get("seed", 0))
                       for p in points}
                assert {plan.point_run(cell, p) for p in cell.first_round()} == ids
                first_round |= ids
    # the data-scaling search's 200M cells are the baseline search's: their runs are shared
    assert len(first_round) == sum(len(plan.cells[c].first_round()) for c in plan.cells) - 4 * 5

    # ensembles: one per cell of the regularized search, the paper's member rule
    (recipe,) = paper["ensemble_recipes"]
    ens = plan.ensembles
    assert sorted(ens) == sorted(f"{recipe['name']}-{c.removeprefix(recipe['search'] + '-')}" for c in plan.cells
                                 if plan.cells[c].search == recipe["search"])
    assert all((e.size, e.epochs_factor, e.weight_decay_factor) == (recipe["members"], 2, 0.5) for e in ens.values())
    assert all(e.members == () for e in ens.values())  # known once their searches end

    # the students: the only runs planned up front (no sweeps, no fixed ensembles)
    assert paper["sweeps"] == [] and paper["ensembles"] == []
    assert sorted(plan.distillations) == sorted(d["name"] for d in paper["distillation"])
    for d in paper["distillation"]:
        student = plan.runs[plan.distillations[d["name"]].student]
        st = d["student"]
        assert (student.model.name, student.epochs, student.learning_rate, student.weight_decay) == (
            st["model"], st["epochs"], st["learning_rate"], st["weight_decay"])
        assert student.synthetic_share == d["synthetic_share"] and student.token_budget == budgets[0]
    assert set(plan.runs) == {d.student for d in plan.distillations.values()}

    # CPT: the default recipe at every math budget, the small batch, one run per weight decay
    c, cp = plan.cpt, paper["cpt"]
    # from Llama-3.2-3B's local directory, as the paper (config.yaml's base cell keys, merged in, unused)
    assert c.base_cell is None and c.base == f"hf:{os.path.normpath(cp['base']['hf'])}"
    assert c.model == cp["base"]["name"] and all(plan.spec(r).model.seq_len == cp["base"]["seq_len"] for r in c.runs)
    assert sorted(c.scaling) == sorted(cp["token_budgets"])
    assert plan.spec(c.small_batch).batch_size == cp["small_batch"]
    assert sorted(plan.spec(r).weight_decay for r in c.regularized) == sorted(cp["regularized"]["weight_decays"])
    assert all(len(m) == cp["members"] for m in c.members.values())
    cpt_up_front = set(c.scaling.values()) | {c.small_batch} | set(c.regularized)
    assert len(cpt_up_front) == len(cp["token_budgets"]) + 1 + len(cp["regularized"]["weight_decays"])
    assert cpt_up_front <= set(plan.cpt_runs)

    trainings = len(first_round) + len(plan.runs) + len(cpt_up_front)
    readme = open(os.path.join(ROOT, "docs", "paper-scale.md")).read()
    stated = int(re.search(r"The dry run lists (\d+) trainings", readme).group(1))
    assert trainings == stated


def _tokens(n: int) -> str:
    from infinite_compute.study.specs import format_tokens

    return format_tokens(n)


def _finished(cell, loss) -> dict:
    """A cell's search run to its end on `loss` (point -> loss), as the workflow's rounds run it."""
    from infinite_compute.study.tuning import final_record, round_record

    record, r, todo = None, 0, cell.first_round()
    while True:
        record = round_record(cell, r, record, {run_id(cell.model, cell.token_budget, p[2], p[0], p[1], cell.seed):
                                                loss(p) for p in todo})
        if record["status"] != "continue":
            return final_record(record, cell.cell_id)
        r, todo = r + 1, [tuple(p) for p in record["next_points"]]


def test_a_finished_search_lists_its_reseeds_with_their_specs(smoke_config):
    """Once a search has ended, its selected run's lr, wd and epochs train again at seeds seed+1 ..
    seed+reseeds, named as ensemble members are (so a reseed that is a member is one run)."""
    import dataclasses
    import json

    from infinite_compute.study.tuning import cell_from_dict

    plan = build_plan(smoke_config)
    assert {c.search: c.reseeds for c in plan.cells.values()} == {"base": 2, "data": 0, "reg": 2, "div": 0}
    cell = plan.cells["reg-t2-d8k"]
    final = _finished(cell, lambda p: abs(p[1] - 0.4) + p[2])  # selects wd 0.4 (the grid's lr and epochs)
    best = final["best"]
    assert (best["learning_rate"], best["weight_decay"], best["epochs"]) == (0.01, 0.4, 2)
    reseeds = plan.reseed_runs(cell.cell_id, best)
    assert reseeds == ["t2-d8k-ep2-lr0.01-wd0.4-s1", "t2-d8k-ep2-lr0.01-wd0.4-s2"]
    selected = plan.spec(best["run_id"])
    for seed, rid in enumerate(reseeds, start=1):
        s = plan.spec(rid)  # known to the plan as an ensemble member of a search is
        assert s == dataclasses.replace(selected, run_id=rid, seed=seed)
    assert plan.reseed_runs(plan.cells["data-t1-d4k"], best) == []
    # t1's baseline at 2 epochs: its reseeds are the fixed ensemble t1-ens's members 1 and 2
    base = plan.cells["base-t1-d8k"]
    assert plan.reseed_runs(base, {"learning_rate": 0.01, "weight_decay": 0.1, "epochs": 2}) == \
        list(plan.ensembles["t1-ens"].members[1:])
    # results/plan.json keeps them; a plan written before reseeds existed reads as none
    d = json.loads(json.dumps(plan_to_dict(plan)))
    back = plan_from_dict(d)
    assert back.reseed_runs(cell.cell_id, best) == reseeds and [back.spec(r) for r in reseeds] == \
        [plan.spec(r) for r in reseeds]
    for c in d["cells"].values():
        del c["reseeds"]
    assert plan_from_dict(d).cells[cell.cell_id].reseeds == 0
    # the rounds read the cell without its reseeds: changing them reruns no round (rules/tuning.smk)
    assert "reseeds" not in cell.search_dict()
    assert cell_from_dict(cell.search_dict()) == dataclasses.replace(cell, reseeds=0)


def test_the_default_configs_regularized_reseeds_are_its_ensemble_members():
    """config.yaml: members are the regularized selection's recipe at seeds 0-3, so that search's
    three reseeds are its members 1-3 (no extra training); the baseline's are new runs."""
    from infinite_compute.study.config import load_config

    plan = build_plan(load_config(os.path.join(ROOT, "config.yaml"), SCHEMA))
    assert {c.reseeds for c in plan.cells.values()} == {3}
    best = {"learning_rate": 0.03, "weight_decay": 12.8, "epochs": 32}
    for name, ens in plan.ensembles.items():
        assert plan.reseed_runs(ens.cell, best) == ens.member_ids(best)[1:], name
    base = next(c for c in plan.cells.values() if c.search == "baseline")
    assert plan.reseed_runs(base, {"learning_rate": 0.03, "weight_decay": 0.1, "epochs": 8}) == \
        [f"{base.model}-d8k-ep8-lr0.03-wd0.1-s{k}" for k in (1, 2, 3)]
