"""A seeded text source whose entropy rate is known exactly: a random sparse Markov chain.

The source emits symbols 0..V-1. Each context of the last `order` symbols has `branching` possible
next symbols (drawn without replacement) with probabilities from a symmetric Dirichlet
(`concentration`). A model must learn one small distribution per context it sees, V**order of them,
so capacity pays (more contexts learnt, more precisely) and data pays (each context seen more
often); the floor is reached only with both. Its entropy rate is exact:

    H = sum over contexts c of pi(c) * H(P(. | c)),

with pi the stationary distribution of the chain over contexts (power iteration on the sparse
transition, to a tolerance far below any loss difference the study can see). In nats per symbol;
when each symbol is one token (data/tokenizer.py's word-level tokenizer for this source), that is
nats per token of the study's loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MarkovSource:
    vocab: int
    order: int
    successors: np.ndarray  # (contexts, branching) int: the possible next symbols of each context
    probs: np.ndarray  # (contexts, branching) float: their probabilities (rows sum to 1)

    @property
    def n_contexts(self) -> int:
        return self.vocab**self.order

    def next_context(self, context: np.ndarray | int, symbol: np.ndarray | int):
        """The context after `symbol` follows `context` (contexts are base-V numbers, oldest first)."""
        return (context * self.vocab + symbol) % self.n_contexts


def make_source(vocab: int, order: int, branching: int, concentration: float, seed: int) -> MarkovSource:
    """The seeded source; the same arguments give the same source on any machine (numpy's PCG64)."""
    if vocab < 2 or order < 1 or not 1 <= branching <= vocab or concentration <= 0:
        raise ValueError(f"config key 'data.synthetic': vocab {vocab} >= 2, order {order} >= 1, 1 <= branching {branching} "
                         f"<= vocab and concentration {concentration} > 0 are needed")
    rng = np.random.default_rng(seed)
    n = vocab**order
    keys = rng.random((n, vocab))
    successors = np.argsort(keys, axis=1)[:, :branching]  # distinct next symbols per context
    probs = rng.dirichlet(np.full(branching, float(concentration)), size=n)
    return MarkovSource(vocab, order, successors.astype(np.int64), probs)


def stationary(source: MarkovSource, tol: float = 1e-13, max_iter: int = 100_000) -> np.ndarray:
    """The chain's stationary distribution over contexts, by power iteration from uniform (lazy, so
    a periodic chain converges too: the lazy chain has the same stationary distribution)."""
    n = source.n_contexts
    nxt = source.next_context(np.arange(n)[:, None], source.successors)  # (n, branching)
    pi = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        moved = np.bincount(nxt.ravel(), weights=(pi[:, None] * source.probs).ravel(), minlength=n)
        new = 0.5 * (pi + moved)
        if np.abs(new - pi).sum() < tol:
            return new / new.sum()
        pi = new
    raise RuntimeError(f"synthetic source: the stationary distribution did not converge in {max_iter} steps")


def entropy_rate(source: MarkovSource) -> float:
    """The source's entropy rate in nats per symbol."""
    p = source.probs
    h = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
    return float(stationary(source) @ h)


def sample(source: MarkovSource, n_symbols: int, seed: int, burn_in: int = 1000) -> np.ndarray:
    """`n_symbols` symbols of the chain, after `burn_in` steps from a uniform context (so the sample
    starts near stationarity); reproducible bit for bit from the seed."""
    rng = np.random.default_rng(seed)
    ctx = int(rng.integers(source.n_contexts))
    u = rng.random(burn_in + n_symbols)
    cum = np.cumsum(source.probs, axis=1)
    out = np.empty(n_symbols, dtype=np.int64)
    for t in range(burn_in + n_symbols):
        j = min(int(np.searchsorted(cum[ctx], u[t], side="right")), cum.shape[1] - 1)
        sym = int(source.successors[ctx, j])
        if t >= burn_in:
            out[t - burn_in] = sym
        ctx = int(source.next_context(ctx, sym))
    return out


def empirical_entropy(source: MarkovSource, symbols: np.ndarray) -> tuple[float, float]:
    """The mean surprisal (nats) of `symbols` under the source, and its standard error: a Monte Carlo
    estimate of the entropy rate from a sample (blocks of 1000 for the error, the chain mixes fast)."""
    ctx = 0
    for s in symbols[: source.order]:
        ctx = int(source.next_context(ctx, s))
    nll = []
    for s in symbols[source.order:]:
        row = source.successors[ctx]
        j = int(np.flatnonzero(row == s)[0])
        nll.append(-np.log(source.probs[ctx, j]))
        ctx = int(source.next_context(ctx, s))
    nll = np.asarray(nll)
    blocks = nll[: len(nll) // 1000 * 1000].reshape(-1, 1000).mean(axis=1)
    return float(nll.mean()), float(blocks.std(ddof=1) / np.sqrt(len(blocks)))


def conditional_entropies(source: MarkovSource) -> list[float]:
    """H(next symbol | the j symbols before it) at stationarity, for j = 0..order (nats); the last is
    the entropy rate. A prediction with fewer than `order` symbols of context pays the larger H_j."""
    v, k = source.vocab, source.order
    joint = np.zeros((source.n_contexts, v))  # (context, next symbol) at stationarity
    np.add.at(joint, (np.arange(source.n_contexts)[:, None], source.successors), stationary(source)[:, None] * source.probs)
    joint = joint.reshape((v,) * (k + 1))

    def h(p: np.ndarray) -> float:
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    out = []
    for j in range(k + 1):
        last = joint.sum(axis=tuple(range(k - j)))  # the j context symbols nearest the next one, and it
        out.append(h(last) - h(last.sum(axis=-1)))
    return out


def loss_floor(cond: list[float], seq_len: int, document_symbols: int) -> float:
    """The lowest mean loss a model can reach on this corpus, in nats per token of its windows of
    `seq_len` tokens: what the source itself would score, seeing only a window.

    - A document is <|endoftext|>, `document_symbols` = L symbols, <|endoftext|>. Its first symbol pays
      H_0, its j-th H_(j-1) until the context is full, the rest H_order; the opening <|endoftext|> is
      certain (it follows the closing one); the closing one comes after exactly one of the L symbols,
      which a window cannot count: L * h(1/L) nats in all, h the binary entropy.
    - A window's i-th prediction (i = 1..seq_len-1) sees i tokens: the first order-1 of them pay
      H_i - H_order more than the rate.
    Both within 1e-4 nats per token: a window that sees a document's start knows its end is not near,
    which the first term leaves out, and the two terms overlap at a window that starts a document.
    """
    k, L = len(cond) - 1, document_symbols
    h_end = -(1 / L) * np.log(1 / L) - (1 - 1 / L) * np.log(1 - 1 / L) if L > 1 else 0.0
    per_doc = sum(cond[:k]) + (L - k) * cond[k] + L * h_end
    window = sum(cond[i] - cond[k] for i in range(1, min(k, seq_len))) / (seq_len - 1)
    return float(per_doc / (L + 2) + window)


SYMBOL = "s{}"  # a symbol's text: one word, so the word-level tokenizer makes it one token


def symbol_names(vocab: int) -> list[str]:
    return [SYMBOL.format(i) for i in range(vocab)]


def source_of(cfg: dict) -> MarkovSource:
    """The source config key `data.synthetic` describes."""
    return make_source(cfg["vocab"], cfg["order"], cfg["branching"], cfg["concentration"], cfg["seed"])


def documents(cfg: dict) -> list[tuple[str, str]]:
    """The corpus of config key `data.synthetic`: (id, text) of `documents` independent samples of
    `document_symbols` symbols each, as lines of `line_symbols` words."""
    src = source_of(cfg)
    names = np.asarray(symbol_names(src.vocab))
    out = []
    for i in range(cfg["documents"]):
        words = names[sample(src, cfg["document_symbols"], seed=cfg["seed"] * 1_000_003 + i + 1)]
        lines = [" ".join(words[j: j + cfg["line_symbols"]]) for j in range(0, len(words), cfg["line_symbols"])]
        out.append((f"synthetic/{i}", "\n".join(lines)))
    return out


def describe(cfg: dict) -> dict:
    """The corpus manifest's record of the source: its parameters and its exact entropies (nats/symbol)."""
    src = source_of(cfg)
    cond = conditional_entropies(src)
    return {**cfg, "entropy_rate": cond[-1], "conditional_entropies": cond, "symbols": symbol_names(src.vocab)}
