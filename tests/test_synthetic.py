"""The known-entropy source (data/synthetic.py): its entropy rate on hand-computable chains, against
a Monte Carlo estimate from a long sample, and its reproducibility from the seed."""

import math

import numpy as np
import pytest

from infinite_compute.data import synthetic
from infinite_compute.data.synthetic import MarkovSource


def test_iid_source_has_the_entropy_of_its_one_distribution():
    p = [0.25, 0.75]
    iid = MarkovSource(2, 1, np.array([[0, 1], [0, 1]]), np.array([p, p]))
    assert synthetic.stationary(iid) == pytest.approx([0.25, 0.75])
    assert synthetic.entropy_rate(iid) == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))


def test_a_deterministic_cycle_has_entropy_zero_and_a_uniform_stationary_distribution():
    cycle = MarkovSource(3, 1, np.array([[1], [2], [0]]), np.ones((3, 1)))  # periodic: 0 -> 1 -> 2 -> 0
    assert synthetic.stationary(cycle) == pytest.approx([1 / 3] * 3)
    assert synthetic.entropy_rate(cycle) == 0.0
    assert list(synthetic.sample(cycle, 6, seed=0, burn_in=0)) in ([1, 2, 0, 1, 2, 0], [2, 0, 1, 2, 0, 1], [0, 1, 2, 0, 1, 2])


def test_order_two_chain_weights_each_context_by_its_stationary_share():
    # two symbols, order 2: context (a, b) is 2a + b. From (0,0) and (1,1) the next symbol is certain to
    # flip; from (0,1) and (1,0) it is a fair coin. By hand the stationary distribution is 1/6, 1/3, 1/3, 1/6.
    succ = np.array([[1, 0], [0, 1], [0, 1], [0, 1]])
    probs = np.array([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5], [1.0, 0.0]])
    chain = MarkovSource(2, 2, succ, probs)
    assert synthetic.stationary(chain) == pytest.approx([1 / 6, 1 / 3, 1 / 3, 1 / 6])
    assert synthetic.entropy_rate(chain) == pytest.approx(2 / 3 * math.log(2))


def test_entropy_rate_matches_a_monte_carlo_estimate():
    src = synthetic.make_source(vocab=16, order=2, branching=4, concentration=0.5, seed=3)
    h = synthetic.entropy_rate(src)
    est, se = synthetic.empirical_entropy(src, synthetic.sample(src, 100_000, seed=4))
    assert 0 < h < math.log(4)
    assert abs(est - h) < 4 * se and se < 0.01


def test_source_and_sample_are_reproducible_from_their_seeds():
    a, b = (synthetic.make_source(8, 2, 3, 1.0, seed=7) for _ in range(2))
    assert np.array_equal(a.successors, b.successors) and np.array_equal(a.probs, b.probs)
    assert np.array_equal(synthetic.sample(a, 500, seed=1), synthetic.sample(b, 500, seed=1))
    assert not np.array_equal(synthetic.sample(a, 500, seed=1), synthetic.sample(a, 500, seed=2))
    c = synthetic.make_source(8, 2, 3, 1.0, seed=8)
    assert not np.array_equal(a.probs, c.probs)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="branching"):
        synthetic.make_source(4, 1, 5, 1.0, seed=0)


def test_conditional_entropies_and_the_window_floor_by_hand():
    succ = np.array([[1, 0], [0, 1], [0, 1], [0, 1]])
    probs = np.array([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5], [1.0, 0.0]])
    chain = MarkovSource(2, 2, succ, probs)  # as above: contexts 1/6, 1/3, 1/3, 1/6 at stationarity
    pairs = -sum(p * math.log(p) for p in (1 / 6, 1 / 3, 1 / 3, 1 / 6))
    h0, h1, h2 = synthetic.conditional_entropies(chain)
    assert h0 == pytest.approx(math.log(2))  # each symbol is 0 half the time
    assert h1 == pytest.approx(pairs - math.log(2))  # (previous, next) is distributed as the contexts
    assert h2 == pytest.approx(2 / 3 * math.log(2))
    # a document of 3 symbols, B s1 s2 s3 E: B certain, s1 pays h0, s2 h1, s3 h2, and E comes after one
    # of the 3 symbols (3 x binary entropy of 1/3 = log 3 - 2/3 log 2/3 ... = 1.9095); a window of 4
    # tokens predicts 3, its first from 1 token of context: (h1 - h2) / 3 more
    h_end = 3 * -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    assert synthetic.loss_floor([h0, h1, h2], 4, 3) == pytest.approx((h0 + h1 + h2 + h_end) / 5 + (h1 - h2) / 3)
    # long documents: the floor tends to the rate plus the window's first-prediction term
    assert synthetic.loss_floor([h0, h1, h2], 64, 10**7) == pytest.approx(h2 + (h1 - h2) / 63, abs=1e-5)
    assert h0 >= h1 >= h2


def test_documents_are_lines_of_symbol_words():
    cfg = dict(vocab=8, order=2, branching=3, concentration=1.0, seed=5, documents=3, document_symbols=40,
               line_symbols=16)
    docs = synthetic.documents(cfg)
    assert docs == synthetic.documents(cfg) and [d[0] for d in docs] == ["synthetic/0", "synthetic/1", "synthetic/2"]
    lines = docs[0][1].split("\n")
    assert [len(ln.split(" ")) for ln in lines] == [16, 16, 8]
    assert set(docs[0][1].split()) <= set(synthetic.symbol_names(8))
    assert docs[0][1] != docs[1][1]
    d = synthetic.describe(cfg)
    assert d["entropy_rate"] == pytest.approx(synthetic.entropy_rate(synthetic.make_source(8, 2, 3, 1.0, 5)))
