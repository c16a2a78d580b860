"""Tests for infinite_compute.science.ensemble on hand-checkable and random log-probs."""

import math

import numpy as np
import pytest
from scipy.special import logsumexp

from infinite_compute.science.ensemble import (
    ensemble_logprobs,
    ensemble_loss,
    ensemble_loss_curve,
    mixture_next_token_logprobs,
)


def random_logprobs(k=4, shape=(3, 50), seed=0):
    rng = np.random.default_rng(seed)
    return np.log(rng.uniform(0.01, 1.0, size=(k, *shape)))


def test_two_members_average_probabilities():
    lp = np.log(np.array([[0.5], [0.25]]))
    out = ensemble_logprobs(lp)
    assert out.dtype == np.float64
    assert np.exp(out[0]) == pytest.approx(0.375, rel=1e-15)
    assert ensemble_loss(lp) == pytest.approx(-math.log(0.375), rel=1e-15)


def test_single_member_is_identity():
    lp = random_logprobs(k=1)
    np.testing.assert_allclose(ensemble_logprobs(lp), lp[0], rtol=0, atol=1e-15)
    assert ensemble_loss(lp) == pytest.approx(-lp.mean())


def test_float32_input_is_computed_in_float64():
    lp = random_logprobs().astype(np.float32)
    assert ensemble_logprobs(lp).dtype == np.float64


def test_ensemble_loss_at_most_mean_member_loss():
    # Jensen: -log(mean p) <= mean(-log p), strictly when members disagree.
    lp = random_logprobs(k=5)
    member_losses = [-m.mean() for m in lp]
    assert ensemble_loss(lp) < np.mean(member_losses)


def test_mask_selects_tokens_and_ignores_padding_values():
    lp = np.log(np.array([[[0.5, 0.1, 0.9]], [[0.25, 0.1, 0.9]]]))
    mask = np.array([[True, False, True]])
    padded = lp.copy()
    padded[:, 0, 1] = np.nan  # padding content must not leak into the loss
    expected = -(math.log(0.375) + math.log(0.9)) / 2
    assert ensemble_loss(padded, mask) == pytest.approx(expected)
    assert ensemble_loss(lp) == pytest.approx(-(math.log(0.375) + math.log(0.1) + math.log(0.9)) / 3)


def test_mask_errors():
    lp = random_logprobs(k=2, shape=(2, 3))
    with pytest.raises(ValueError, match="mask shape"):
        ensemble_loss(lp, np.ones((3, 2), dtype=bool))
    with pytest.raises(ValueError, match="no valid tokens"):
        ensemble_loss(lp, np.zeros((2, 3), dtype=bool))


def test_very_negative_logprobs_do_not_underflow():
    lp = np.array([[-1000.0, -1200.0], [-1000.0 - math.log(3.0), -1300.0]])
    out = ensemble_logprobs(lp)
    assert np.all(np.isfinite(out))
    # mean(p, p/3) = 2p/3 for p = e**-1000.
    assert out[0] == pytest.approx(-1000.0 + math.log(2.0 / 3.0), abs=1e-12)
    # The -1300 member is negligible: mean is e**-1200 / 2.
    assert out[1] == pytest.approx(-1200.0 - math.log(2.0), abs=1e-12)


def test_loss_curve_counts_and_full_ensemble():
    lp = random_logprobs(k=4)
    curve = ensemble_loss_curve(lp, max_subsets=20)
    assert [r["ensemble_size"] for r in curve] == [1, 2, 3, 4]
    assert [r["n_subsets"] for r in curve] == [math.comb(4, k) for k in range(1, 5)]
    assert all(len(r["subsets"]) == r["n_subsets"] for r in curve)
    full = curve[-1]
    assert full["subsets"] == [(0, 1, 2, 3)]
    assert full["loss_std"] == 0.0
    assert full["loss_first"] == pytest.approx(ensemble_loss(lp))
    assert full["loss_mean"] == pytest.approx(ensemble_loss(lp))


def test_loss_curve_k1_averages_members_and_first_is_member_zero():
    lp = random_logprobs(k=3)
    row = ensemble_loss_curve(lp)[0]
    member_losses = [-m.mean() for m in lp]
    assert row["loss_mean"] == pytest.approx(np.mean(member_losses))
    assert row["loss_std"] == pytest.approx(np.std(member_losses))
    assert row["loss_first"] == pytest.approx(member_losses[0])


def test_loss_curve_respects_mask():
    lp = random_logprobs(k=3, shape=(2, 5))
    mask = np.zeros((2, 5), dtype=bool)
    mask[0, :3] = True
    curve = ensemble_loss_curve(lp, mask)
    assert curve[-1]["loss_first"] == pytest.approx(ensemble_loss(lp[:, 0, :3]))


def test_loss_curve_samples_distinct_subsets_deterministically():
    lp = random_logprobs(k=8, shape=(20,))
    a = ensemble_loss_curve(lp, max_subsets=5, seed=3)
    b = ensemble_loss_curve(lp, max_subsets=5, seed=3)
    c = ensemble_loss_curve(lp, max_subsets=5, seed=4)
    assert a == b
    mid = a[3]  # K = 4: C(8, 4) = 70 > 5, so sampled
    assert mid["n_subsets"] == 5
    assert len(set(mid["subsets"])) == 5
    assert all(len(s) == 4 and list(s) == sorted(s) for s in mid["subsets"])
    assert mid["subsets"] != c[3]["subsets"]
    # K = 8 has a single subset, so it stays exhaustive.
    assert a[-1]["n_subsets"] == 1


def test_mixture_rows_normalise_and_match_hand_value():
    # Member 0: softmax([0, log 3]) = (1/4, 3/4); member 1: softmax([0, 0]) = (1/2, 1/2).
    logits = np.array([[[0.0, math.log(3.0)]], [[0.0, 0.0]]])
    out = mixture_next_token_logprobs(logits)
    assert out.shape == (1, 2)
    np.testing.assert_allclose(np.exp(out[0]), [0.375, 0.625], rtol=1e-14)
    rng = np.random.default_rng(0)
    big = rng.normal(0.0, 30.0, size=(3, 4, 5, 11))
    np.testing.assert_allclose(logsumexp(mixture_next_token_logprobs(big), axis=-1), 0.0, atol=1e-12)


def test_mixture_is_shift_invariant_per_member_and_keeps_float32():
    # Each member's softmax ignores a per-member constant added to its logits.
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 7))
    shifted = logits + np.array([1000.0, -500.0])[:, None, None]
    np.testing.assert_allclose(mixture_next_token_logprobs(shifted), mixture_next_token_logprobs(logits), atol=1e-9)
    assert mixture_next_token_logprobs(logits.astype(np.float32)).dtype == np.float32


def test_mixture_accepts_jax_arrays():
    import jax.numpy as jnp
    logits = np.random.default_rng(2).normal(size=(3, 4, 6)).astype(np.float32)
    out = mixture_next_token_logprobs(jnp.asarray(logits))
    assert type(out).__module__.startswith("jax")
    np.testing.assert_allclose(np.asarray(out), mixture_next_token_logprobs(logits), atol=1e-5)
