"""Sampling from a teacher, one model or the mixture of an ensemble's members, with levanter's
paged KV cache (one decode step per token), and greedy completions of prompts (CPT answers)."""

from __future__ import annotations

import functools

import equinox as eqx
import haliax as hax
import jax
import jax.numpy as jnp
import numpy as np
from levanter.inference.page_table import PageBatchInfo, PageTableSpec
from levanter.layers.attention import AttentionMask


def _sequence_mapping() -> dict:
    """The KV cache's page and the decode step's position axes (one per sequence here) mapped where
    the context's compute mapping puts the batch; {} outside a mesh."""
    batch = (hax.partitioning.current_thread_local_mapping() or {}).get("batch")
    return {} if batch is None else {"page": batch, "position": batch, "seq": batch}


@functools.lru_cache(maxsize=None)
def _decode_fn(n_members: int):
    """Sampling with levanter's paged KV cache: each step feeds one new token per sequence through
    every member (`LlamaLMHeadModel.decode`), attending to the cached keys and values of the tokens
    before it, so a sequence of T tokens costs T one-token steps instead of T full forward passes."""
    @eqx.filter_jit
    def fn(models, start, key, temperature, prompt_lens, greedy=False):
        B, T = start.shape
        # one page of T slots per sequence: sequence i owns page i
        spec = PageTableSpec(num_pages=B, page_size=T)
        # each sequence's page of the KV cache on the device that holds its row of the batch (the
        # context's data axis): the cache is split over the devices, not replicated on each
        split = _sequence_mapping()
        caches = hax.shard(tuple(m.initial_cache(spec, dtype=jnp.float32) for m in models), split)
        Seq, Position = hax.Axis("seq", B), hax.Axis("position", B)
        slot_ids = hax.arange(Seq, dtype=jnp.int32)
        page_indices = hax.named(jnp.arange(B, dtype=jnp.int32)[:, None], (Seq, hax.Axis("page", 1)))
        cu_q_lens = hax.named(jnp.arange(B + 1, dtype=jnp.int32), hax.Axis("seq", B + 1))

        def step(t, carry):
            tokens, caches, key = carry  # tokens[:, :t+1] are written; feed position t, predict t+1
            info = PageBatchInfo(
                slot_ids=slot_ids,
                page_indices=page_indices,
                seq_lens=hax.full(Seq, t + 1, dtype=jnp.int32),
                cu_q_lens=cu_q_lens,
                num_seqs=jnp.asarray(B, jnp.int32),
                new_token_dests=hax.named(jnp.arange(B, dtype=jnp.int32) * T + t, Position),
                page_size=T,
            )
            x = hax.named(tokens[:, t], Position)
            pos = hax.full(Position, t, dtype=jnp.int32)
            member_logp, new_caches = [], []
            for m, c in zip(models, caches):
                logits, c = m.decode(x, c, info, pos)
                member_logp.append(jax.nn.log_softmax(logits.array.astype(jnp.float32), axis=-1))
                new_caches.append(c)
            mix = jax.nn.logsumexp(jnp.stack(member_logp), axis=0) - jnp.log(n_members)
            key, sub = jax.random.split(key)
            nxt = mix.argmax(-1) if greedy else jax.random.categorical(sub, mix / temperature, axis=-1)
            # a prompt's own tokens are fed, not replaced: generation starts after each prompt
            nxt = jnp.where(t + 1 < prompt_lens, tokens[:, t + 1], nxt.astype(tokens.dtype))
            return tokens.at[:, t + 1].set(nxt), hax.shard(tuple(new_caches), split), key

        tokens, _, _ = jax.lax.fori_loop(0, T - 1, step, (start, caches, key))
        return tokens

    return fn


@functools.lru_cache(maxsize=None)
def _sample_fn(n_members: int):
    """The reference sampler: a full causal forward pass of every member for each new token
    (O(T) passes per sequence); `_decode_fn` must draw the same tokens."""
    @eqx.filter_jit
    def fn(models, start, key, temperature):
        B, T = start.shape
        Batch, Pos = hax.Axis("batch", B), models[0].Pos.resize(T)

        def step(t, carry):
            tokens, key = carry
            x = hax.named(tokens, (Batch, Pos))
            # causal attention: position t-1 sees only the tokens already written
            member_logp = jnp.stack(
                [
                    jax.nn.log_softmax(m(x, attn_mask=AttentionMask.causal()).array[:, t - 1, :].astype(jnp.float32))
                    for m in models
                ]
            )
            mix = jax.nn.logsumexp(member_logp, axis=0) - jnp.log(n_members)
            key, sub = jax.random.split(key)
            nxt = jax.random.categorical(sub, mix / temperature, axis=-1)
            return tokens.at[:, t].set(nxt.astype(tokens.dtype)), key

        tokens, _ = jax.lax.fori_loop(1, T, step, (start, key))
        return tokens

    return fn


def sample_sequences(models: list, n_sequences: int, seq_len: int, eot_id: int, temperature: float, seed: int,
                     batch_size: int, kv_cache: bool = True, batches: range | None = None) -> np.ndarray:
    """Sequences of `seq_len` tokens, each starting at <|endoftext|>, sampled from the mean of the
    members' next-token distributions (a single model is a one-member mixture). With `kv_cache`
    (the default) each token is one cached decode step; without, a full forward pass (reference).
    `batches`: only those batches of `batch_size` sequences (each with the key it has in the whole
    corpus, so that a corpus sampled in parts is the corpus sampled at once); their rows, unclipped."""
    if batch_size % jax.device_count():
        raise ValueError(f"a batch of {batch_size} sequences cannot be split over {jax.device_count()} devices "
                         "(evaluation.batch_size: expected a multiple of the job's devices)")
    n_batches = -(-n_sequences // batch_size)
    wanted = range(n_batches) if batches is None else batches
    key = jax.random.PRNGKey(seed)
    out = []
    for b in range(max(wanted, default=-1) + 1):
        key, sub = jax.random.split(key)
        if b not in wanted:
            continue
        start = np.full((batch_size, seq_len), eot_id, np.int32)
        if kv_cache:
            ones = np.ones(batch_size, np.int32)  # the prompt is the <|endoftext|> alone
            out.append(np.asarray(_decode_fn(len(models))(tuple(models), start, sub, float(temperature), ones)))
        else:
            out.append(np.asarray(_sample_fn(len(models))(tuple(models), start, sub, float(temperature))))
    seqs = np.concatenate(out) if out else np.zeros((0, seq_len), np.int32)
    return seqs[:n_sequences] if batches is None else seqs


@functools.lru_cache(maxsize=None)
def _next_logprob_fn():
    """log p(next token) at one position of each sequence, [B, vocab] f32, from a full causal forward
    pass of one model (the layers scanned as in training: no per-layer copies of the weights)."""
    @eqx.filter_jit
    def fn(model, tokens, positions):
        B, T = tokens.shape
        x = hax.shard(hax.named(tokens, (hax.Axis("batch", B), model.Pos.resize(T))))
        h = model.activations(x, attn_mask=AttentionMask.causal()).array  # [B, T, embed]
        h = jnp.take_along_axis(h, positions[:, None, None], axis=1)[:, 0]  # [B, embed]
        w = model.get_lm_head().rearrange((model.config.Embed.name, model.Vocab.name)).array
        return jax.nn.log_softmax((h @ w).astype(jnp.float32), axis=-1)

    return fn


def _greedy_forward(models, start, lens, n_new):
    """`n_new` greedy tokens after each row's prompt, one full forward pass of each member per token:
    only one member's activations exist at a time, beside the members' parameters."""
    fn = _next_logprob_fn()
    tokens = np.array(start)
    rows = np.arange(len(tokens))
    for step in range(n_new):
        pos = (lens + step - 1).astype(np.int32)  # the last written token of each row
        mix = None
        for m in models:
            lp = fn(m, tokens, pos)
            mix = lp if mix is None else jnp.logaddexp(mix, lp)
        # the mean of the members' distributions (a constant log K apart from the sum): its argmax
        tokens[rows, pos + 1] = np.asarray(mix.argmax(-1), np.int32)
    return tokens


def greedy_completions(models: list, prompts: list[list[int]], n_new: int, eot_id: int, batch_size: int,
                       seq_len: int, kv_cache: bool = True) -> list[list[int]]:
    """`n_new` greedy tokens after each prompt (token ids, <|endoftext|> first), from the mean of
    the members' next-token distributions, with the KV cache; without it (`kv_cache` False: an
    ensemble of large members, whose decode step would hold every member's cache and layer copies at
    once), a full forward pass of each member in turn per token. Prompts longer than seq_len - n_new
    are cut from the left."""
    room = seq_len - n_new
    if room < 2:
        raise ValueError(f"answer tokens {n_new} leave no room for a prompt in sequences of {seq_len}")
    prompts = [p[-room:] for p in prompts]
    batch_size = -(-batch_size // jax.device_count()) * jax.device_count()  # a share for every device
    T = max(len(p) for p in prompts) + n_new
    fn = _decode_fn(len(models))
    out: list[list[int]] = []
    for a in range(0, len(prompts), batch_size):
        chunk = prompts[a : a + batch_size]
        chunk = chunk + [chunk[-1]] * (batch_size - len(chunk))  # one compiled shape
        start = np.full((batch_size, T), eot_id, np.int32)
        lens = np.array([len(p) for p in chunk], np.int32)
        for i, p in enumerate(chunk):
            start[i, : len(p)] = p
        if kv_cache:
            tokens = np.asarray(fn(tuple(models), start, jax.random.PRNGKey(0), 1.0, lens, greedy=True))
        else:
            tokens = _greedy_forward(models, start, lens, n_new)
        out.extend(tokens[i, lens[i] : lens[i] + n_new].tolist() for i in range(len(prompts[a : a + batch_size])))
    return out
