"""Ensemble losses from per-member log-probabilities.

An ensemble of K members predicts the mean of the members' next-token
distributions, so its log-prob of the true token is
log(mean_k p_k) = logsumexp_k(log p_k) - log K. Everything here works in log
space so that members with very small probabilities do not underflow.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.special import log_softmax, logsumexp

__all__ = [
    "ensemble_logprobs",
    "ensemble_loss",
    "ensemble_loss_curve",
    "mixture_next_token_logprobs",
]


def _as_members(member_logprobs) -> np.ndarray:
    lp = np.asarray(member_logprobs, dtype=np.float64)
    if lp.ndim < 1 or lp.shape[0] < 1:
        raise ValueError(f"member_logprobs must have a leading member axis of size >= 1, got shape {lp.shape}")
    return lp


def ensemble_logprobs(member_logprobs) -> np.ndarray:
    """Log of the mean member probability over axis 0 of a (K, ...) array, in float64."""
    lp = _as_members(member_logprobs)
    return logsumexp(lp, axis=0) - math.log(lp.shape[0])


def _valid_tokens(lp: np.ndarray, mask) -> np.ndarray:
    """Flatten to (K, n_valid), keeping only tokens where ``mask`` is true."""
    if mask is None:
        flat = lp.reshape(lp.shape[0], -1)
    else:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != lp.shape[1:]:
            raise ValueError(f"mask shape {mask.shape} must equal the token shape {lp.shape[1:]}")
        # Indexing (rather than multiplying by the mask) keeps padding
        # positions, which may hold nan or -inf, out of the arithmetic.
        flat = lp[:, mask]
    if flat.shape[1] == 0:
        raise ValueError("no valid tokens: the token axis is empty or the mask selects nothing")
    return flat


def ensemble_loss(member_logprobs, mask=None) -> float:
    """Mean negative ensemble log-prob over tokens where ``mask`` is true (all if None)."""
    flat = _valid_tokens(_as_members(member_logprobs), mask)
    return float(-np.mean(ensemble_logprobs(flat)))


def _subsets(k_max: int, k: int, max_subsets: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """All size-k subsets if there are at most ``max_subsets``, else that many distinct random ones."""
    if math.comb(k_max, k) <= max_subsets:
        return list(itertools.combinations(range(k_max), k))
    chosen: dict[tuple[int, ...], None] = {}
    # Terminates because there are more than max_subsets distinct subsets.
    while len(chosen) < max_subsets:
        subset = tuple(sorted(int(i) for i in rng.choice(k_max, size=k, replace=False)))
        chosen.setdefault(subset, None)
    return list(chosen)


def ensemble_loss_curve(member_logprobs, mask=None, *, max_subsets: int = 20, seed: int = 0) -> list[dict]:
    """Ensemble loss vs. ensemble size K = 1..K_max, averaged over member subsets of size K.

    Each row has ensemble_size, loss_mean, loss_std (population std over
    subsets), n_subsets, subsets (tuples of member indices) and loss_first
    (the loss of members 0..K-1). Subsets are exhaustive when there are at
    most ``max_subsets`` of them, otherwise distinct random draws seeded by
    ``seed``.
    """
    if max_subsets < 1:
        raise ValueError(f"max_subsets must be >= 1, got {max_subsets}")
    flat = _valid_tokens(_as_members(member_logprobs), mask)
    k_max = flat.shape[0]
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(1, k_max + 1):
        subsets = _subsets(k_max, k, max_subsets, rng)
        losses = np.array([ensemble_loss(flat[list(s)]) for s in subsets])
        rows.append(
            {
                "ensemble_size": k,
                "loss_mean": float(np.mean(losses)),
                "loss_std": float(np.std(losses)),
                "n_subsets": len(subsets),
                "subsets": subsets,
                "loss_first": ensemble_loss(flat[:k]),
            }
        )
    return rows


def mixture_next_token_logprobs(member_logits):
    """Log of the mean of the members' softmax distributions for (K, ..., vocab) logits.

    NumPy input gives a NumPy array (floating dtype kept, integers promoted to
    float64); JAX input is handled with jax.numpy so it can run under jit.
    """
    if type(member_logits).__module__.split(".")[0] in ("jax", "jaxlib"):
        # Imported lazily: jax is an optional, heavy dependency.
        import jax
        import jax.numpy as jnp

        k = member_logits.shape[0]
        return jax.nn.logsumexp(jax.nn.log_softmax(member_logits, axis=-1), axis=0) - jnp.log(k)
    logits = np.asarray(member_logits)
    if not np.issubdtype(logits.dtype, np.floating):
        logits = logits.astype(np.float64)
    if logits.ndim < 2 or logits.shape[0] < 1:
        raise ValueError(f"member_logits must have shape (K, ..., vocab) with K >= 1, got {logits.shape}")
    k = logits.shape[0]
    out = logsumexp(log_softmax(logits, axis=-1), axis=0) - np.log(k)
    return out.astype(logits.dtype, copy=False)
