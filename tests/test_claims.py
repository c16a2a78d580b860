"""The claims scorecard (science/claims.py) on synthetic tables whose verdicts are known by hand:
each claim can be reproduced, not reproduced and not determined."""

import json

import numpy as np
import pandas as pd

from infinite_compute.science import claims as C

SIZES = {"a": 1000, "b": 4000, "c": 16000, "d": 64000}


def tuning(base_losses, reg_losses, wd=(1.6, 1.6, 1.6, 1.6), budget=8192, status="certified"):
    rows = []
    for recipe, losses, wds in (("baseline", base_losses, (0.1,) * 4), ("regularized", reg_losses, wd)):
        for (m, n), loss, w in zip(SIZES.items(), losses, wds):
            rows.append({"cell": f"{recipe}-{m}", "recipe": recipe, "model": m, "non_embedding_params": n,
                         "token_budget": budget, "loss": loss, "weight_decay": w, "epochs": 4, "status": status,
                         "edges": []})
    return pd.DataFrame(rows)


def ensembles(sd=0.01, budget=8192, k_inf=None):
    rows = []
    for m in SIZES:
        for k in (1, 2):
            rows.append({"ensemble": f"reg-ens-{m}-{budget}", "recipe": "reg-ens", "model": m, "token_budget": budget,
                         "ensemble_size": k, "n_subsets": 2 if k == 1 else 1, "loss_std": sd if k == 1 else 0.0})
    return pd.DataFrame(rows)


def fit(kind, group, status="ok", E=4.0, lo=3.9, hi=4.1, alpha=0.3, alo=0.1, ahi=0.5, recipe="regularized"):
    return {"fit": kind, "recipe": recipe, "group": group, "status": status, "E": E, "E_ci_low": lo, "E_ci_high": hi,
            "alpha": alpha, "alpha_ci_low": alo, "alpha_ci_high": ahi}


def fits(reg=None, joint=None, k_inf=3.8, budget=8192):
    rows = [reg or fit("params", f"D={budget}"), joint or fit("joint", f"D={budget}", E=3.5, lo=3.4, hi=3.6,
                                                                 recipe="reg-ens")]
    rows += [fit("ensemble", f"reg-ens-{m}-{budget}", E=k_inf, lo=k_inf - 0.01, hi=k_inf + 0.01, recipe="reg-ens")
             for m in SIZES]
    return pd.DataFrame(rows).assign(token_budget=budget)


GOOD_REG = [4.6, 4.4, 4.25, 4.15]


def test_seed_noise_is_the_members_spread_and_the_main_budget_has_most_sizes():
    assert C.seed_sd(ensembles(sd=0.02)) == 0.02
    assert np.isnan(C.seed_sd(ensembles().assign(n_subsets=1)))  # single-member "ensembles": no seeds
    t = pd.concat([tuning([5.0] * 4, GOOD_REG), tuning([5.0] * 4, GOOD_REG, budget=16384).iloc[:6]])
    assert C.main_budget(t) == 8192


def test_claim1():
    ok = C.claim1(tuning([5.0, 5.0, 4.99, 5.01], GOOD_REG), 0.01, 8192, 0.1)
    assert ok["verdict"] == C.REPRODUCED, ok["reason"]
    assert json.loads(ok["quantities"])["wd_ratios"]["a"] == 16.0
    falls = C.claim1(tuning([5.0, 4.9, 4.8, 4.7], GOOD_REG), 0.01, 8192, 0.1)  # the baseline's L(N) falls by 0.3
    assert falls["verdict"] == C.NOT_REPRODUCED and "falls with N" in falls["reason"]
    low_wd = C.claim1(tuning([5.0] * 4, GOOD_REG, wd=(0.4, 1.6, 1.6, 1.6)), 0.01, 8192, 0.1)  # 4x < 10x
    assert low_wd["verdict"] == C.NOT_REPRODUCED and "weight decay" in low_wd["reason"]
    edge = tuning([5.0] * 4, GOOD_REG, status="edge")
    assert C.claim1(edge, 0.01, 8192, 0.1)["verdict"] == C.NOT_REPRODUCED
    assert C.claim1(tuning([5.0] * 4, GOOD_REG), float("nan"), 8192, 0.1)["verdict"] == C.NOT_DETERMINED


def test_claim2():
    t = tuning([5.0] * 4, GOOD_REG)
    assert C.claim2(fits(), t, 0.01, 8192)["verdict"] == C.REPRODUCED
    at_zero = fits(reg=fit("params", "D=8192", lo=2e-18))  # E's CI down to the bound: not bounded
    r = C.claim2(at_zero, t, 0.01, 8192)
    assert r["verdict"] == C.NOT_REPRODUCED and "bounded" in r["reason"]
    assert C.claim2(fits(reg=fit("params", "D=8192", alo=0.0)), t, 0.01, 8192)["verdict"] == C.NOT_REPRODUCED
    rising = tuning([5.0] * 4, [4.6, 4.4, 4.5, 4.3])  # a rise of 0.1 > 2 seed sd
    assert C.claim2(fits(), rising, 0.01, 8192)["verdict"] == C.NOT_REPRODUCED
    flat = fits(reg=fit("params", "D=8192", status="flat: the loss does not fall"))
    assert C.claim2(flat, t, 0.01, 8192)["verdict"] == C.NOT_REPRODUCED
    narrow = t[t["model"].isin(["a", "b", "c"])]  # 3 sizes over 16x
    assert C.claim2(fits(), narrow, 0.01, 8192)["verdict"] == C.NOT_DETERMINED


def test_claim3_and_claim4():
    t, e = tuning([5.0] * 4, GOOD_REG), ensembles()
    assert C.claim3(fits(k_inf=3.8), t, e, 8192)["verdict"] == C.REPRODUCED
    # the largest size's single model (4.15) is below a K -> inf asymptote of 4.2
    assert C.claim3(fits(k_inf=4.2), t, e, 8192)["verdict"] == C.NOT_REPRODUCED
    overlap = fits(joint=fit("joint", "D=8192", E=3.95, lo=3.85, hi=4.05, recipe="reg-ens"))
    assert C.claim3(overlap, t, e, 8192)["verdict"] == C.NOT_REPRODUCED
    no_joint = fits(joint=fit("joint", "D=8192", status="no asymptote: E is at its bound 0", recipe="reg-ens"))
    assert C.claim3(no_joint, t, e, 8192)["verdict"] == C.NOT_DETERMINED
    assert C.claim4(fits(), t, e, 0.01)["verdict"] == C.NOT_DETERMINED  # one budget
    budgets = {8192: (4.0, 3.5), 16384: (3.8, 3.3), 32768: (3.6, 3.1)}
    ts = pd.concat([tuning([5.0] * 4, [x - 0.2 * i for x in GOOD_REG], budget=b) for i, b in enumerate(budgets)])
    es = pd.concat([ensembles(budget=b) for b in budgets])

    def all_fits(order):
        return pd.concat([fits(reg=fit("params", f"D={b}", E=r, lo=r - 0.05, hi=r + 0.05),
                               joint=fit("joint", f"D={b}", E=j, lo=j - 0.05, hi=j + 0.05, recipe="reg-ens"),
                               k_inf=3.6 - 0.2 * i, budget=b) for i, (b, (r, j)) in enumerate(order)])

    assert C.claim4(all_fits(budgets.items()), ts, es, 0.01)["verdict"] == C.REPRODUCED
    swapped = list(zip(budgets, [(3.6, 3.1), (3.8, 3.3), (4.0, 3.5)]))  # asymptotes rising with D
    assert C.claim4(all_fits(swapped), ts, es, 0.01)["verdict"] == C.NOT_REPRODUCED


def distill(kept, self_gain):
    return pd.DataFrame([
        {"distillation": "ens", "teacher_kind": "ensemble", "fraction_of_gain_kept": kept, "student_loss": 4.5,
         "teacher_loss": 4.4},
        {"distillation": "self", "teacher_kind": "search", "fraction_of_gain_kept": float("nan"),
         "student_loss": 4.5 - self_gain, "teacher_loss": 4.5}])


def test_claim5():
    assert C.claim5(distill(0.8, 0.05), 0.01)["verdict"] == C.REPRODUCED
    assert C.claim5(distill(0.3, 0.05), 0.01)["verdict"] == C.NOT_REPRODUCED
    assert C.claim5(distill(0.8, 0.01), 0.01)["verdict"] == C.NOT_REPRODUCED  # 0.01 < 2 seed sd
    assert C.claim5(distill(0.8, 0.05).iloc[:1], 0.01)["verdict"] == C.NOT_DETERMINED


def bench(slope, acc0=0.6, se=0.02, n=12):
    loss = np.linspace(4.0, 5.0, n)
    return pd.DataFrame({"task": "t", "model_id": [f"m{i}" for i in range(n)], "family": ["x", "y"] * (n // 2),
                         "loss": loss, "acc": acc0 + slope * (loss - 4.0), "acc_stderr": se, "chance": 0.25})


def test_claim6():
    assert C.claim6(bench(-0.2), 0)["verdict"] == C.REPRODUCED
    assert C.claim6(bench(+0.2), 0)["verdict"] == C.NOT_REPRODUCED  # accuracy rises with loss
    assert C.claim6(bench(-0.01, acc0=0.26, se=0.05), 0)["verdict"] == C.NOT_REPRODUCED  # at chance
    assert C.claim6(bench(-0.2, n=2), 0)["verdict"] == C.NOT_DETERMINED
    assert C.claim6(bench(-0.2), 0) == C.claim6(bench(-0.2), 0)  # seeded bootstrap


def cpt(small=(2.0, 1.5), reg=(4.0, 3.0), ens=(6.0, 5.0)):
    rows = [{"recipe": "default", "selected": False, "ensemble_size": 1, "data_efficiency": 1.0,
             "data_efficiency_ci_low": 0.9, "data_efficiency_ci_high": 1.1}]
    for recipe, (m, lo), k, sel in (("small-batch", small, 1, False), ("regularized", reg, 1, True),
                                    ("ensemble", (reg[0], reg[1]), 1, True), ("ensemble", ens, 2, True)):
        rows.append({"recipe": recipe, "selected": sel, "ensemble_size": k, "data_efficiency": m,
                     "data_efficiency_ci_low": lo, "data_efficiency_ci_high": m + 1})
    return pd.DataFrame(rows)


def test_claim7():
    assert C.claim7(cpt())["verdict"] == C.REPRODUCED
    assert C.claim7(cpt(small=(1.2, 0.8)))["verdict"] == C.NOT_REPRODUCED  # a CI reaching 1
    assert C.claim7(cpt(ens=(3.0, 2.0)))["verdict"] == C.NOT_REPRODUCED  # the ensemble below the regularized run
    assert C.claim7(None)["verdict"] == C.NOT_DETERMINED
    assert C.claim7(cpt(reg=(float("nan"), float("nan"))))["verdict"] == C.NOT_DETERMINED


def test_the_scorecard_has_one_row_per_claim():
    t = tuning([5.0] * 4, GOOD_REG)
    rows = C.scorecard({"tuning": t, "fits": fits(), "ensembles": ensembles(), "distillation": distill(0.8, 0.05),
                        "benchmarks": bench(-0.2), "cpt": cpt()}, 0.1, 0)
    assert [r["claim"] for r in rows] == [f"C{i}" for i in range(1, 8)]  # no floor: no F rows
    assert [r["verdict"] for r in rows] == [C.REPRODUCED, C.REPRODUCED, C.REPRODUCED, C.NOT_DETERMINED,
                                            C.REPRODUCED, C.REPRODUCED, C.REPRODUCED]
    assert all(json.loads(r["quantities"]) is not None and r["criterion"] for r in rows)


def floor_fits(E_by_budget, sd=0.01):
    """Regularized N -> inf asymptotes per budget (CI +- 2 sd), and K -> inf ones at 8k."""
    rows = [{**fit("params", f"D={b}", E=e, lo=e - 2 * sd, hi=e + 2 * sd), "token_budget": b}
            for b, e in E_by_budget.items()]
    rows += [{**fit("ensemble", f"reg-ens-a-{b}", E=e - 0.05, lo=e - 0.06, hi=e - 0.04, recipe="reg-ens"),
              "token_budget": b} for b, e in E_by_budget.items()]
    return pd.DataFrame(rows)


def test_floor_f1_every_asymptote_at_or_above_the_floor():
    f = floor_fits({8192: 2.0, 16384: 1.6, 32768: 1.4})
    assert C.floor_f1(f, 1.0)["verdict"] == C.REPRODUCED
    # the 32k ensemble's asymptote, 1.35 [1.34, 1.36], lies below a floor of 1.37
    r = C.floor_f1(f, 1.37)
    assert r["verdict"] == C.NOT_REPRODUCED and json.loads(r["quantities"])["below"] == ["ensemble:reg-ens-a-32768"]
    assert C.floor_f1(f.assign(status="flat"), 1.0)["verdict"] == C.NOT_DETERMINED


def test_floor_f2_extrapolates_the_asymptotes_over_d_to_the_floor():
    # E(D) = 40 / D^0.5 + 1.0 exactly: E_inf is 1.0, its CI narrow with asymptotes known to +- 0.002
    budgets = [4096, 8192, 16384, 32768]
    exact = {b: 40 / b ** 0.5 + 1.0 for b in budgets}
    at = C.floor_f2(floor_fits(exact, sd=0.001), 1.0, seed=0)
    q = json.loads(at["quantities"])
    assert at["verdict"] == C.REPRODUCED, at["reason"]
    assert abs(q["E_inf"] - 1.0) < 1e-3 and q["E_inf_ci"][0] < 1.0 < q["E_inf_ci"][1]
    above = C.floor_f2(floor_fits(exact, sd=0.001), 0.8, seed=0)  # the fits level off 0.2 above the floor
    assert above["verdict"] == C.NOT_REPRODUCED and "above" in above["reason"]
    two = C.floor_f2(floor_fits({8192: 2.0, 16384: 1.6}), 1.0, seed=0)
    assert two["verdict"] == C.NOT_DETERMINED


def test_scorecard_adds_the_floor_rows_with_a_floor():
    t = tuning([5.0] * 4, GOOD_REG)
    rows = C.scorecard({"tuning": t, "fits": fits(), "ensembles": ensembles(), "distillation": distill(0.8, 0.05),
                        "benchmarks": bench(-0.2), "cpt": cpt()}, 0.1, 0, floor=3.0)
    assert [r["claim"] for r in rows] == list(C.CLAIMS) and list(C.CLAIMS)[-2:] == ["F1", "F2"]
    assert [r["verdict"] for r in rows[-2:]] == [C.REPRODUCED, C.NOT_DETERMINED]  # one budget: no E(D)
