"""Model-side computations on exported checkpoints: per-token log-probs, benchmark likelihoods,
and sampling from a single teacher or from the mixture of an ensemble's members."""

from __future__ import annotations

import contextlib
import functools
import math

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
        return jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]

    return fn


def token_logprobs(model, sequences: np.ndarray, batch_size: int) -> np.ndarray:
    """log p(x_t | x_<t) for t = 1..T-1 of each sequence: shape [n, T-1], float32."""
    fn = _logprob_fn()
    n, T = sequences.shape
    out = np.empty((n, T - 1), np.float32)
    for a in range(0, n, batch_size):
        chunk = sequences[a : a + batch_size]
        pad = batch_size - len(chunk)
        if pad:  # one compiled shape for every batch
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
        res = np.asarray(fn(model, chunk.astype(np.int32)))
        out[a : a + batch_size] = res[: batch_size - pad]
    return out


def encode_choices(items: list[dict], tokenizer, seq_len: int, eot_id: int):
    """lm-eval-harness style requests: [EOT] + context, scored on the continuation's tokens.

    Returns (sequences [n_req, seq_len], cont_mask [n_req, seq_len-1] marking the positions of
    continuation tokens among the predicted ones, req_item, req_choice, choice_bytes).
    """
    seqs, masks, req_item, req_choice, nbytes = [], [], [], [], []
    for i, item in enumerate(items):
        ctx_ids = tokenizer(item["context"], add_special_tokens=False)["input_ids"]
        for j, choice in enumerate(item["choices"]):
            whole = tokenizer(item["context"] + choice, add_special_tokens=False)["input_ids"]
            # the context's tokens as they appear in the whole (BPE may merge across the seam)
            k = len(ctx_ids)
            while k > 0 and whole[:k] != ctx_ids[:k]:
                k -= 1
            cont = whole[k:]
            ids = [eot_id] + whole[:k] + cont
            ids = ids[-seq_len:]  # keep the continuation, drop context from the left
            n_cont = min(len(cont), seq_len - 1)
            seq = np.full(seq_len, eot_id, np.int32)
            seq[: len(ids)] = ids
            mask = np.zeros(seq_len - 1, bool)
            mask[len(ids) - 1 - n_cont : len(ids) - 1] = True
            seqs.append(seq)
            masks.append(mask)
            req_item.append(i)
            req_choice.append(j)
            nbytes.append(len(choice.encode("utf-8")))
    return np.stack(seqs), np.stack(masks), np.array(req_item), np.array(req_choice), np.array(nbytes)


def score_choices(choice_loglik: np.ndarray, req_item, req_choice, choice_bytes, labels) -> dict:
    """acc (argmax of log-likelihood) and acc_norm (argmax of log-likelihood per byte), as lm-eval."""
    n_items = len(labels)
    n_choices = int(req_choice.max()) + 1
    ll = np.full((n_items, n_choices), -np.inf)
    llb = np.full((n_items, n_choices), -np.inf)
    ll[req_item, req_choice] = choice_loglik
    llb[req_item, req_choice] = choice_loglik / np.maximum(choice_bytes, 1)
    labels = np.asarray(labels)
    acc = (ll.argmax(1) == labels).astype(float)
    acc_norm = (llb.argmax(1) == labels).astype(float)
    return {
        "acc": float(acc.mean()),
        "acc_stderr": float(acc.std(ddof=1) / math.sqrt(n_items)) if n_items > 1 else float("nan"),
        "acc_norm": float(acc_norm.mean()),
        "acc_norm_stderr": float(acc_norm.std(ddof=1) / math.sqrt(n_items)) if n_items > 1 else float("nan"),
        "n_items": n_items,
        "chance": 1.0 / n_choices,
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
    def fn(models, start, key, temperature):
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
            nxt = jax.random.categorical(sub, mix / temperature, axis=-1)
            return tokens.at[:, t + 1].set(nxt.astype(tokens.dtype)), tuple(new_caches), key

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

    fn = (_decode_fn if kv_cache else _sample_fn)(len(models))
    key = jax.random.PRNGKey(seed)
    out = []
    for a in range(0, n_sequences, batch_size):
        key, sub = jax.random.split(key)
        start = np.full((batch_size, seq_len), eot_id, np.int32)
        out.append(np.asarray(fn(tuple(models), start, sub, float(temperature))))
    return np.concatenate(out)[:n_sequences]
