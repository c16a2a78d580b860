"""Model-side computations on exported checkpoints: per-token log-probs, benchmark likelihoods,
and sampling from a single teacher or from the mixture of an ensemble's members."""

from __future__ import annotations

import contextlib
import functools
import numpy as np

from .plan import RunSpec


@contextlib.contextmanager
def device_mesh():
    """levanter's device mesh and axis mapping (one data-parallel axis on CPU), for loading and compute."""
    import haliax as hax
    from levanter.trainer import TrainerConfig

    trainer = TrainerConfig(require_accelerator=False)
    with trainer.use_device_mesh(), hax.axis_mapping(trainer.compute_axis_mapping):
        yield


def load_model(hf_dir: str, spec: RunSpec, tokenizer_dir: str):
    """The levanter Llama of a run, from its HF export (weights in f32)."""
    import jax.numpy as jnp
    from levanter.models.llama import LlamaLMHeadModel

    from .train import llama_config

    config = llama_config(spec.model, tokenizer_dir, gradient_checkpointing=False)
    converter = config.hf_checkpoint_converter()
    return converter.load_pretrained(LlamaLMHeadModel, ref=hf_dir, config=config, dtype=jnp.float32)


@functools.lru_cache(maxsize=None)
def _logprob_fn():
    import equinox as eqx
    import haliax as hax
    import jax
    import jax.numpy as jnp
    from levanter.layers.attention import AttentionMask

    @eqx.filter_jit
    def fn(model, tokens):
        B, T = tokens.shape
        Batch, Pos = hax.Axis("batch", B), model.Pos.resize(T)
        x = hax.named(tokens, (Batch, Pos))
        logits = model(x, attn_mask=AttentionMask.causal()).array.astype(jnp.float32)
        logp = jax.nn.log_softmax(logits[:, :-1, :], axis=-1)
        target = tokens[:, 1:]
        # is the target the argmax (lm-eval's is_greedy, per token)
        return jnp.take_along_axis(logp, target[..., None], axis=-1)[..., 0], logp.argmax(-1) == target

    return fn


def token_logprobs(model, sequences: np.ndarray, batch_size: int, greedy: bool = False):
    """log p(x_t | x_<t) for t = 1..T-1 of each sequence: shape [n, T-1], float32; with `greedy`
    also whether each x_t is the model's argmax."""
    fn = _logprob_fn()
    n, T = sequences.shape
    out = np.empty((n, T - 1), np.float32)
    top = np.empty((n, T - 1), bool)
    for a in range(0, n, batch_size):
        chunk = sequences[a : a + batch_size]
        pad = batch_size - len(chunk)
        if pad:  # one compiled shape for every batch
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
        lp, g = fn(model, chunk.astype(np.int32))
        out[a : a + batch_size] = np.asarray(lp)[: batch_size - pad]
        top[a : a + batch_size] = np.asarray(g)[: batch_size - pad]
    return (out, top) if greedy else out


def encoded_request_file(requests: str, tokenizer_dir: str, seq_len: int):
    """`encode_requests` of a requests file (lm_harness.read_requests) with the tokenizer at
    `tokenizer_dir`: (pairs, sequences, cont_mask). A warm worker keeps the last few, keyed by the
    files' identities, so the study's evaluations do not tokenize the same requests again."""
    import os

    def ident(path):
        st = os.stat(path)
        return os.path.realpath(path), st.st_mtime_ns, st.st_size

    tok_files = tuple(ident(os.path.join(tokenizer_dir, f)) for f in sorted(os.listdir(tokenizer_dir)))
    return _encoded(ident(requests), tok_files, tokenizer_dir, seq_len)


@functools.lru_cache(maxsize=4)
def _encoded(requests_id, tokenizer_id, tokenizer_dir: str, seq_len: int):
    from .data import load_tokenizer
    from .lm_harness import read_requests

    tok = load_tokenizer(tokenizer_dir)
    pairs = read_requests(requests_id[0])
    return (pairs, *encode_requests(pairs, tok, seq_len, tok.eos_token_id))


def encode_requests(pairs, tokenizer, seq_len: int, eot_id: int):
    """Log-likelihood requests (context, continuation) as lm-eval's HF model encodes them: trailing
    spaces of the context move to the continuation, and the continuation's tokens are those of
    context + continuation after the context's (BPE may merge across the seam). Each sequence is
    <|endoftext|> + context + continuation, cut from the left to `seq_len`.

    Returns (sequences [n, seq_len], cont_mask [n, seq_len-1] marking the predicted positions
    that are continuation tokens).
    """
    seqs, masks = [], []
    for context, continuation in pairs:
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        ctx_ids = tokenizer(context, add_special_tokens=False)["input_ids"] if context else []
        whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        k = len(ctx_ids)
        while k > 0 and whole[:k] != ctx_ids[:k]:
            k -= 1
        cont = whole[k:]
        ids = ([eot_id] + whole)[-seq_len:]  # keep the continuation, drop context from the left
        n_cont = min(len(cont), seq_len - 1)
        seq = np.full(seq_len, eot_id, np.int32)
        seq[: len(ids)] = ids
        mask = np.zeros(seq_len - 1, bool)
        mask[len(ids) - 1 - n_cont : len(ids) - 1] = True
        seqs.append(seq)
        masks.append(mask)
    if not seqs:
        return np.zeros((0, seq_len), np.int32), np.zeros((0, seq_len - 1), bool)
    return np.stack(seqs), np.stack(masks)


def score_requests(model, sequences: np.ndarray, cont_mask: np.ndarray, batch_size: int) -> dict:
    """Per-token log-probs of every request's continuation, flat, with offsets (request i owns
    [offsets[i], offsets[i+1])), and whether each continuation is the model's greedy choice."""
    if len(sequences) == 0:
        return {"bench_logprobs": np.zeros(0, np.float32), "bench_offsets": np.zeros(1, np.int64),
                "bench_greedy": np.zeros(0, bool)}
    lp, top = token_logprobs(model, sequences, batch_size, greedy=True)
    counts = cont_mask.sum(1)
    return {
        "bench_logprobs": lp[cont_mask],  # row-major: request by request, tokens in order
        "bench_offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "bench_greedy": np.array([bool(t[m].all()) for t, m in zip(top, cont_mask)]),
    }


@functools.lru_cache(maxsize=None)
def _decode_fn(n_members: int):
    """Sampling with levanter's paged KV cache: each step feeds one new token per sequence through
    every member (`LlamaLMHeadModel.decode`), attending to the cached keys and values of the tokens
    before it, so a sequence of T tokens costs T one-token steps instead of T full forward passes."""
    import equinox as eqx
    import haliax as hax
    import jax
    import jax.numpy as jnp
    from levanter.inference.page_table import PageBatchInfo, PageTableSpec

    @eqx.filter_jit
    def fn(models, start, key, temperature, prompt_lens, greedy=False):
        B, T = start.shape
        # one page of T slots per sequence: sequence i owns page i
        spec = PageTableSpec(num_pages=B, page_size=T)
        caches = tuple(m.initial_cache(spec, dtype=jnp.float32) for m in models)
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
            return tokens.at[:, t + 1].set(nxt), tuple(new_caches), key

        tokens, _, _ = jax.lax.fori_loop(0, T - 1, step, (start, caches, key))
        return tokens

    return fn


@functools.lru_cache(maxsize=None)
def _sample_fn(n_members: int):
    """The reference sampler: a full causal forward pass of every member for each new token
    (O(T) passes per sequence); `_decode_fn` must draw the same tokens."""
    import equinox as eqx
    import haliax as hax
    import jax
    import jax.numpy as jnp
    from levanter.layers.attention import AttentionMask

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
                     batch_size: int, kv_cache: bool = True) -> np.ndarray:
    """Sequences of `seq_len` tokens, each starting at <|endoftext|>, sampled from the mean of the
    members' next-token distributions (a single model is a one-member mixture). With `kv_cache`
    (the default) each token is one cached decode step; without, a full forward pass (reference)."""
    import jax

    key = jax.random.PRNGKey(seed)
    out = []
    for a in range(0, n_sequences, batch_size):
        key, sub = jax.random.split(key)
        start = np.full((batch_size, seq_len), eot_id, np.int32)
        if kv_cache:
            ones = np.ones(batch_size, np.int32)  # the prompt is the <|endoftext|> alone
            out.append(np.asarray(_decode_fn(len(models))(tuple(models), start, sub, float(temperature), ones)))
        else:
            out.append(np.asarray(_sample_fn(len(models))(tuple(models), start, sub, float(temperature))))
    return np.concatenate(out)[:n_sequences]


def greedy_completions(models: list, prompts: list[list[int]], n_new: int, eot_id: int, batch_size: int,
                       seq_len: int) -> list[list[int]]:
    """`n_new` greedy tokens after each prompt (token ids, <|endoftext|> first), from the mean of
    the members' next-token distributions, with the KV cache. Prompts longer than seq_len - n_new
    are cut from the left."""
    import jax

    room = seq_len - n_new
    if room < 2:
        raise ValueError(f"answer tokens {n_new} leave no room for a prompt in sequences of {seq_len}")
    prompts = [p[-room:] for p in prompts]
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
        tokens = np.asarray(fn(tuple(models), start, jax.random.PRNGKey(0), 1.0, lens, greedy=True))
        out.extend(tokens[i, lens[i] : lens[i] + n_new].tolist() for i in range(len(prompts[a : a + batch_size])))
    return out
