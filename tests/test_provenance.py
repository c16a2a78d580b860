"""The provenance command's logic (outputs/provenance.py) on small tables built here: which runs a
selector's rows name, and the errors of a selector that names nothing. The smoke study's own tables
are checked in tests/test_workflow.py."""

import json

import pandas as pd
import pytest

from infinite_compute.outputs.figures import FIGURES
from infinite_compute.outputs.provenance import (
    FIGURE_READS,
    ProvenanceError,
    parse_selector,
    provenance,
    render,
)
from infinite_compute.science.analysis import ASYMPTOTE_LABELS
from infinite_compute.study.specs import ModelShape, RunSpec, spec_hash

PROV = {"config_hash": "cfg123", "code_version": "v1-2-gabc"}


def run(rid, searches=(), ensembles=(), loss=3.0, params=1000, budget=8192):
    spec = {"run_id": rid, "token_budget": budget}  # any dict: the column is its hash
    return {"run_id": rid, "spec_hash": spec_hash(spec), "role": "search" if searches else "member",
            "searches": list(searches), "ensembles": list(ensembles), "loss": loss,
            "non_embedding_params": params, "token_budget": budget, **PROV}


def small_tables():
    """Two sizes searched by a regularized cell each (one selected run and one other each), an
    ensemble of 3 members on the first, the params fit over the two selected runs, the L(K) fit and an
    efficiency row of the asymptote."""
    runs = pd.DataFrame([
        run("a-s0", ["reg-a"], ["ens-a"], 3.0, 1000), run("a-wd1-s0", ["reg-a"], loss=3.2, params=1000),
        run("b-s0", ["reg-b"], loss=2.8, params=2000), run("b-wd1-s0", ["reg-b"], loss=2.9, params=2000),
        run("a-s1", ensembles=["ens-a"]), run("a-s2", ensembles=["ens-a"]), run("base-d4k", budget=4096),
    ])
    tuning = pd.DataFrame([
        {"cell": "reg-a", "recipe": "regularized", "model": "a", "token_budget": 8192, "run_id": "a-s0", **PROV},
        {"cell": "reg-b", "recipe": "regularized", "model": "b", "token_budget": 8192, "run_id": "b-s0", **PROV},
    ])
    members = ["a-s0", "a-s1", "a-s2"]
    ensembles = pd.DataFrame([
        {"ensemble": "ens-a", "recipe": "reg-ens", "ensemble_size": k, "member_ids": members[:k],
         "token_budget": 8192, "loss": 3.0 - 0.1 * k, **PROV} for k in (1, 2, 3)])
    fit = dict(A=1.0, alpha=0.5, E=2.5, E_ci_low=2.4, E_ci_high=2.6, status="ok", **PROV)
    fits = pd.DataFrame([
        {"fit": "params", "recipe": "regularized", "group": "D=8192", "token_budget": 8192,
         "x_name": "non_embedding_params", "x": [1000.0, 2000.0], "y": [3.0, 2.8], "point_ids": ["a-s0", "b-s0"],
         **fit},
        {"fit": "ensemble", "recipe": "reg-ens", "group": "ens-a", "token_budget": 8192, "x_name": "ensemble_size",
         "x": [1.0, 2.0, 3.0], "y": [2.9, 2.8, 2.7], "point_ids": [f"ens-a:K={k}" for k in (1, 2, 3)], **fit},
        {"fit": "data", "recipe": "baseline", "group": "all", "token_budget": None, "x_name": "token_budget",
         "x": [4096.0], "y": [3.5], "point_ids": ["base-d4k"], **fit},
    ])
    efficiency = pd.DataFrame([
        {"recipe": "regularized", "label": ASYMPTOTE_LABELS["params"], "token_budget": 8192, "loss": 2.5,
         "data_efficiency": 3.0, **PROV}])
    claims = pd.DataFrame([
        {"claim": "C2", "verdict": "reproduced",
         "quantities": json.dumps({"budget": 8192, "E": 2.5}),
         **PROV}])
    benchmarks = pd.DataFrame([{"model_id": m, "kind": k, "task": "t", "acc": 0.5, **PROV}
                               for m, k in (("a-s0", "run"), ("ens-a:K=2", "ensemble"))])
    return {"runs": runs, "tuning": tuning, "ensembles": ensembles, "fits": fits, "efficiency": efficiency,
            "claims": claims, "benchmarks": benchmarks, "distillation": None, "cpt": None, "cpt_fits": None}


def test_a_model_id_that_holds_an_equals_sign_is_an_id_and_a_cpt_ensemble_lists_its_members():
    t = small_tables()
    assert ids(provenance("benchmarks ens-a:K=2 task=t", t)) == ["a-s0", "a-s1"]
    t["cpt"] = pd.DataFrame([
        {"recipe": "regularized", "model_id": "c-s0", "spec_hash": "h0", "member_ids": ["c-s0"], "loss": 1.0, **PROV},
        {"recipe": "ensemble", "model_id": "c-s0:K=2", "spec_hash": None, "member_ids": ["c-s0", "c-s1"], "loss": 0.9,
         **PROV}])
    a = provenance("cpt recipe=ensemble", t)
    assert [(r["run_id"], r["spec_hash"]) for r in a["runs"]] == [("c-s0", "h0"), ("c-s1", None)]


def ids(answer):
    return sorted(r["run_id"] for r in answer["runs"])


def test_a_fits_asymptote_lists_the_runs_its_points_name_with_their_hashes():
    t = small_tables()
    a = provenance("fits kind=params recipe=regularized", t)
    assert [r["row"] for r in a["rows"]] == ["params regularized D=8192"]
    assert ids(a) == ["a-s0", "b-s0"]  # the selected runs, not the others the searches trained
    by_id = t["runs"].set_index("run_id")
    for r in a["runs"]:
        assert r["spec_hash"] == by_id.loc[r["run_id"], "spec_hash"]
        assert (r["config_hash"], r["code_version"]) == (PROV["config_hash"], PROV["code_version"])
    # D and N in the paper's letters, token counts as the run ids write them
    assert ids(provenance(["fits", "kind=params", "D=8k"], t)) == ["a-s0", "b-s0"]


def test_an_ensemble_row_lists_its_first_k_members_and_a_fit_of_it_all():
    t = small_tables()
    assert ids(provenance("ensembles ens-a K=2", t)) == ["a-s0", "a-s1"]
    assert ids(provenance("fits kind=ensemble ens-a", t)) == ["a-s0", "a-s1", "a-s2"]


def test_a_search_cell_lists_its_selected_run_first_and_every_run_it_trained():
    a = provenance("tuning reg-b", small_tables())
    assert [r["run_id"] for r in a["runs"]] == ["b-s0", "b-wd1-s0"]
    assert a["runs"][0]["via"] == ["tuning reg-b > selected"]


def test_a_search_cell_and_a_claim_that_reads_it_list_the_cells_reseeds():
    """reg-a's reseeds (its selection's recipe at seeds 1 and 2, here also ens-a's members) are behind
    its loss_mean and seed noise: the cell lists them, and so does C1, which reads the cell's row."""
    t = small_tables()
    t["tuning"]["reseed_ids"] = [["a-s1", "a-s2"], []]
    a = provenance("tuning reg-a", t)
    assert [r["run_id"] for r in a["runs"]] == ["a-s0", "a-wd1-s0", "a-s1", "a-s2"]
    assert a["runs"][2]["via"] == ["tuning reg-a > reseed"]
    assert ids(provenance("tuning reg-b", t)) == ["b-s0", "b-wd1-s0"]  # none
    t["claims"] = pd.DataFrame([{"claim": "C1", "verdict": "not reproduced",
                                 "quantities": json.dumps({"budget": 8192}), **PROV}])
    c1 = {r["run_id"]: r["via"] for r in provenance("claims C1", t)["runs"]}
    assert "claims C1 > tuning reg-a > reseed" in c1["a-s2"] and set(c1) >= {"a-s0", "a-s1", "a-s2", "b-s0"}


def test_an_asymptotes_multiplier_reads_the_fit_and_the_baseline_law():
    a = provenance("efficiency recipe=regularized", small_tables())
    assert ids(a) == ["a-s0", "b-s0", "base-d4k"]
    assert any("baseline L(D)" in v for r in a["runs"] for v in r["via"])


def test_a_claim_follows_the_rows_its_verdict_reads():
    """C2: the regularized L(N) fit at its budget, down to the reseeds behind its points (the seed noise);
    not the ensembles, which C2 does not read."""
    t = small_tables()
    assert ids(provenance("claims C2", t)) == ["a-s0", "b-s0"]  # no reseeds: the selections are the points
    t["tuning"]["reseed_ids"] = [["a-s1", "a-s2"], []]
    a = provenance("claims C2", t)
    assert ids(a) == ["a-s0", "a-s1", "a-s2", "b-s0"]
    assert any(v.startswith("claims C2 > fits params regularized D=8192 point N=") for r in a["runs"] for v in r["via"])


def test_a_fits_point_that_is_a_reseed_mean_lists_its_reseeds_and_the_selection_apart():
    """A fit's point named by a search's selection is the mean of that selection's reseeds: the reseeds
    are listed as in the mean, the selected run as what chose the recipe."""
    t = small_tables()
    t["tuning"]["reseed_ids"] = [["a-s1", "a-s2"], []]
    via = {r["run_id"]: r["via"] for r in provenance("fits kind=params", t)["runs"]}
    assert set(via) == {"a-s0", "a-s1", "a-s2", "b-s0"}
    assert via["a-s1"] == ["fits params regularized D=8192 point N=1000 > reseed (in the mean)"]
    assert via["a-s0"] == ["fits params regularized D=8192 point N=1000 > selected (chose the recipe)"]
    assert via["b-s0"] == ["fits params regularized D=8192 point N=2000"]  # no reseeds: the run is the point


def test_a_figure_lists_the_runs_of_every_row_it_reads_each_once():
    t = small_tables()
    a = provenance("figure ensembles", t)
    assert ids(a) == ["a-s0", "a-s1", "a-s2"]
    assert len(a["rows"]) == 4  # three K rows and the L(K) fit
    assert "a-s0" in render(a) and "spec_hash" in render(a)


def test_every_figure_says_what_it_reads():
    assert set(FIGURE_READS) == set(FIGURES)
    for selectors in FIGURE_READS.values():
        for s in selectors:
            parse_selector(s)


@pytest.mark.parametrize("selector, words", [
    ("fits kind=params recipe=regularised", ["recipe is one of", "regularized"]),
    ("ensembles ens-b", ["ensemble is one of", "ens-a"]),
    ("ensembles ens-a K=4", ["K is one of: 1, 2, 3"]),
    ("fits colour=red", ["no column 'colour'", "recipe"]),
    ("tables runs", ["'tables' is not a table", "efficiency"]),
    ("figure nope", ["no figure 'nope'", "params"]),
    ("cpt recipe=ensemble", ["no cpt table", "results/cpt.parquet", "runs, tuning"]),
    ("runs a b", ["one id at most"]),
    ("ensembles K=", ["a filter is key=value"]),
])
def test_a_selector_that_names_nothing_says_what_exists(selector, words):
    with pytest.raises(ProvenanceError) as e:
        provenance(selector, small_tables())
    for w in words:
        assert w in str(e.value)


def test_a_specs_hash_survives_its_json_file():
    """The runs table hashes each run's spec.json; the checkpoints' folders hash the RunSpec: one value."""
    shape = ModelShape("t1", hidden_dim=32, intermediate_dim=96, num_layers=1, num_heads=2, num_kv_heads=2, seq_len=64)
    SPEC = RunSpec(run_id="t1-d8k-ep2-lr0.01-wd0.1-s0", model=shape, token_budget=8192, epochs=2, learning_rate=0.01,
                   weight_decay=0.1, seed=0, batch_size=8, optimizer={"beta1": 0.9}, data="d8192", num_train_steps=4,
                   tokens_per_epoch=1024)
    assert SPEC.spec_hash() == spec_hash(json.loads(SPEC.to_json())) == spec_hash(SPEC.to_dict())
    assert SPEC.spec_hash() != spec_hash({**SPEC.to_dict(), "seed": 1})
