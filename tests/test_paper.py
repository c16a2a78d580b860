"""outputs/paper.py renders paper/paper.md.j2 from the result tables: rendered here from small synthetic
tables of known values, the comparisons and tables it writes carry those values, and a fit that
determines no asymptote is written as "not determined", never as a number."""

import json
import os

import pytest
from conftest import ROOT

from infinite_compute.outputs.paper import format_num, format_sig, render
from infinite_compute.outputs.results import SCHEMAS, TABLES, read_tables, write_table
from infinite_compute.science.analysis import ASYMPTOTE_LABELS

PROV = {"config_hash": "cafe1234", "code_version": "v-synthetic", "package_versions": "{}"}


def _row(kind: str, /, **values) -> dict:
    """A row of table `kind` with every column: the given values, empty lists and nulls elsewhere."""
    import pyarrow as pa

    row = {f.name: [] if pa.types.is_list(f.type) else None for f in SCHEMAS[kind]}
    unknown = set(values) - set(row)
    assert not unknown, unknown
    return {**row, **PROV, **values}


def _fit(fit, recipe, budget, E, lo, hi, status="ok", n=3, group=None):
    return _row("fits", fit=fit, recipe=recipe, group=group or f"D={budget}", token_budget=budget,
                x_name="non_embedding_params", x=[1.0, 2.0, 3.0][:n], y=[4.0, 3.9, 3.8][:n], point_ids=["a", "b", "c"][:n],
                A=12.5, alpha=0.75, E=E, A_stderr=0.5, alpha_stderr=0.05, E_stderr=0.02, A_ci_low=10.0, A_ci_high=15.0,
                alpha_ci_low=0.6, alpha_ci_high=0.9, E_ci_low=lo, E_ci_high=hi, ci_level=0.95, n_points=n,
                status=status)


FLAT = "flat: the loss does not fall with non_embedding_params over these points (alpha or A at 0), so E is not determined"
NO_ASYMPTOTE = "no asymptote: E is at its bound 0, the loss does not level off over these non_embedding_params"

# (budget, regularized N -> inf fit, joint N, K -> inf fit): E, CI low, CI high, status
CASES = {
    4096: ((3.8, 3.7, 3.9, "ok"), (3.9, 3.85, 3.95, "ok")),  # the joint asymptote is not lower
    8192: ((3.5, 3.4, 3.6, "ok"), (3.1, 3.0, 3.2, "ok")),  # lower, by 0.4
    16384: ((3.2, 3.1, 3.3, "ok"), (2.7777, 2.5, 2.9, FLAT)),  # the joint fit is flat
    32768: ((0.0, 0.0, 0.1, NO_ASYMPTOTE), (2.5, 2.4, 2.6, "ok")),  # the regularized fit has no asymptote
}
# the efficiency rows of the asymptotes (fits "ok" only): baseline loss at D, multiplier and its CI
EFFICIENCY = {
    ("regularized", "params", 4096): (4.25, 1.75, 1.5, 2.0),
    ("regularized", "params", 8192): (4.0, 2.5, 2.0, 3.125),
    ("regularized", "params", 16384): (3.75, 2.25, 1.875, 2.75),
    ("reg-ens", "joint", 4096): (4.25, 1.5, 1.25, 1.75),
    ("reg-ens", "joint", 8192): (4.0, 3.75, 3.0, 4.5),
    ("reg-ens", "joint", 32768): (3.5, float("inf"), 8.0, float("inf")),
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    results, data = root / "results", root / "data"
    os.makedirs(results)
    os.makedirs(data / "corpus")
    json.dump({"source": "synthetic", "documents": {"train": 10, "validation": 2}, "characters": {"train": 1000},
               "python": "3.11.9 (main)"}, open(data / "corpus" / "manifest.json", "w"))
    runs = [_row("runs", run_id="t1-d8k-ep2-lr0.01-wd0.1-s0", role="search", searches=["base-t1-d8k"], model="t1",
                 token_budget=8192, epochs=2, learning_rate=0.01, weight_decay=0.1, loss=4.5, diverged=False,
                 wall_seconds=2.0, tokens_seen=16384),
            _row("runs", run_id="t1-d8k-ep2-lr10000-wd0.1-s0", role="search", searches=["base-t1-d8k"], model="t1",
                 token_budget=8192, epochs=2, learning_rate=1e4, weight_decay=0.1, loss=float("nan"), diverged=True,
                 wall_seconds=1.0, tokens_seen=16384)]
    tuning = [_row("tuning", cell="reg-t1-d8k", search="reg", recipe="regularized", model="t1", non_embedding_params=100,
                   token_budget=8192, run_id="t1-d8k-ep2-lr0.01-wd0.4-s0", loss=4.4, learning_rate=0.01,
                   weight_decay=0.4, epochs=2, status="certified", certified=True, edges=[], on_grid=True, rounds=2,
                   n_trained=5, neighbours="[]")]
    fits = []
    for budget, (reg, joint) in CASES.items():
        fits.append(_fit("params", "regularized", budget, *reg))
        fits.append(_fit("joint", "reg-ens", budget, *joint))
    eff = []
    for (recipe, fit, budget), (base, mult, lo, hi) in EFFICIENCY.items():
        E = CASES[budget][0 if fit == "params" else 1][0]
        eff.append(_row("efficiency", recipe=recipe, label=ASYMPTOTE_LABELS[fit], token_budget=budget, loss=E,
                        baseline_loss=base, effective_tokens=mult * budget, data_efficiency=mult,
                        data_efficiency_ci_low=lo, data_efficiency_ci_high=hi))
    bench = [_row("benchmarks", model_id="t1-d8k-ep2-lr0.01-wd0.1-s0", kind="run", family="baseline", task="t",
                  loss=4.5, acc=0.5, acc_norm=0.5, n_items=4, chance=0.25)]
    for kind, rows in (("runs", runs), ("tuning", tuning), ("fits", fits), ("efficiency", eff),
                       ("benchmarks", bench), ("ensembles", []), ("distillation", [])):
        write_table(kind, rows, str(results / f"{kind}.parquet"))
    paths = [str(results / f"{kind}.parquet") for kind in TABLES]  # the tables as the rule lists them
    manifest = json.load(open(data / "corpus" / "manifest.json"))
    return render(os.path.join(ROOT, "paper", "paper.md.j2"), read_tables(paths), manifest, 0.1)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _joint_sentence(paper: str, budget: int) -> str:
    """The paragraph on the joint asymptote at `budget`, on one line."""
    import re

    (par,) = [p for p in re.split(r"\n\s*\n", paper)
              if p.startswith(f"Joint asymptote of `reg-ens` at D={budget} (N, K -> inf):")]
    return _flat(par)


def test_the_joint_asymptote_is_compared_with_the_regularized_one(rendered):
    (E, lo, hi, _), (jE, jlo, jhi, _) = CASES[8192]
    assert _joint_sentence(rendered, 8192) == (
        f"Joint asymptote of `reg-ens` at D=8192 (N, K -> inf): **{format_num(jE)}** [{format_num(jlo)}, {format_num(jhi)}], "
        f"against the regularized single models' N -> inf asymptote {format_num(E)} [{format_num(lo)}, {format_num(hi)}]: "
        f"the ensembles' asymptote is lower by {format_num(E - jE)}."
    )
    assert format_num(E - jE) == "0.400"
    (E, lo, hi, _), (jE, jlo, jhi, _) = CASES[4096]
    assert _joint_sentence(rendered, 4096).endswith(
        f"asymptote {format_num(E)} [{format_num(lo)}, {format_num(hi)}]: the ensembles' asymptote is not lower.")


def test_an_asymptote_a_fit_does_not_determine_is_not_a_number(rendered):
    flat = _joint_sentence(rendered, 16384)
    assert flat == f"Joint asymptote of `reg-ens` at D=16384 (N, K -> inf): not determined ({FLAT})."
    assert format_num(CASES[16384][1][0]) not in flat
    (_, _, _, status), (jE, jlo, jhi, _) = CASES[32768]
    assert _joint_sentence(rendered, 32768) == (
        f"Joint asymptote of `reg-ens` at D=32768 (N, K -> inf): **{format_num(jE)}** [{format_num(jlo)}, {format_num(jhi)}]; "
        f"the regularized single models' N -> inf asymptote is not determined ({status})."
    )
    assert "lower by" not in _joint_sentence(rendered, 32768)


def test_the_token_scaling_table_has_each_determined_asymptote_and_its_multiplier(rendered):
    table = rendered[rendered.index("### Token scaling"):rendered.index("## Distillation")]
    rows = [r for r in table.splitlines() if r.startswith("| regularized |") or r.startswith("| reg-ens |")]
    expected = []
    for recipe, fit, limit in (("reg-ens", "joint", "N, K -> inf"), ("regularized", "params", "N -> inf")):
        for budget in sorted(CASES):
            E, lo, hi, status = CASES[budget][0 if fit == "params" else 1]
            if status != "ok":
                continue  # a fit that determines no asymptote has no row
            base, mult, mlo, mhi = EFFICIENCY[(recipe, fit, budget)]
            expected.append(f"| {recipe} | {limit} | {budget} | 3 | {format_num(E)} [{format_num(lo)}, {format_num(hi)}] | {format_num(base)} | "
                            f"{format_num(mult, 2)}x [{format_num(mlo, 2)}, {format_num(mhi, 2)}] |")
    assert rows == expected
    # below L(D)'s asymptote: an unbounded multiplier
    assert "| reg-ens | N, K -> inf | 32768 | 3 | 2.500 [2.400, 2.600] | 3.500 | infx [8.00, inf] |" in rows
    assert not any("| 16384 |" in r and r.startswith("| reg-ens |") for r in rows)  # the flat joint fit
    assert not any("| 32768 |" in r and r.startswith("| regularized |") for r in rows)  # no asymptote


def test_the_power_law_table_and_the_rest(rendered):
    E, lo, hi, _ = CASES[8192][0]
    assert (f"| params | regularized | D=8192 | 3 | {format_sig(12.5)} ± {format_sig(0.5)} [{format_sig(10.0)}, {format_sig(15.0)}] | "
            f"{format_num(0.75)} ± {format_num(0.05)} [{format_num(0.6)}, {format_num(0.9)}] | {format_num(E)} ± {format_num(0.02)} [{format_num(lo)}, {format_num(hi)}] | ok |"
            ) in rendered
    assert "config `cafe1234`, code `v-synthetic`" in rendered
    assert "Diverged runs (excluded from fits): `t1-d8k-ep2-lr10000-wd0.1-s0`" in rendered
    assert "t1 (D=8192) 0.4 = 4.0x." in rendered
