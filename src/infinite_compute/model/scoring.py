"""Scoring exported models: loading a run's HF export into levanter's Llama, per-token log-probs of
the validation text, and the per-token log-likelihoods of lm-eval's benchmark requests."""

from __future__ import annotations

import contextlib
import functools
import os

import equinox as eqx
import haliax as hax
import jax
import jax.numpy as jnp
import numpy as np
from levanter.layers.attention import AttentionMask
from levanter.models.llama import LlamaLMHeadModel
from levanter.trainer import TrainerConfig

from ..data.benchmarks import read_requests
from ..data.tokenizer import document_start, load_tokenizer
from ..study.memory import SCORE_POSITIONS
from ..study.specs import RunSpec
from .shapes import llama_config


MIN_BUCKET = 128  # the shortest columns a benchmark request is scored at (the default study: all at 64)


@contextlib.contextmanager
def device_mesh():
    """levanter's device mesh over all of the job's devices (one data axis) and its compute mapping:
    a batch is split over the devices. load_model shards the parameters over them (FSDP's mapping), so
    a job's models take 1/devices of each device's memory."""
    trainer = TrainerConfig(require_accelerator=False)
    with trainer.use_device_mesh(), hax.axis_mapping(trainer.compute_axis_mapping):
        yield


def load_model(hf_dir: str, spec: RunSpec, tokenizer_dir: str):
    """The levanter Llama of a run, from its HF export (weights in f32), sharded over the devices of
    the current mesh (device_mesh) on the embedding axis."""
    config = llama_config(spec.model, tokenizer_dir, gradient_checkpointing=False)
    converter = config.hf_checkpoint_converter()
    return converter.load_pretrained(LlamaLMHeadModel, ref=hf_dir, config=config, dtype=jnp.float32,
                                     axis_mapping=parameter_mapping())


def parameter_mapping():
    """FSDP's mapping of levanter's default trainer: parameters split on the embedding axis."""
    return TrainerConfig(require_accelerator=False).parameter_axis_mapping


@functools.lru_cache(maxsize=None)
def _logprob_fn():

    @eqx.filter_jit
    def fn(model, tokens):
        B, T = tokens.shape
        Batch, Pos = hax.Axis("batch", B), model.Pos.resize(T)
        # the batch split over the mesh's data axis (the context's compute mapping): each device scores
        # its share of the sequences, the parameters gathered a layer at a time where they are sharded
        x = hax.shard(hax.named(tokens, (Batch, Pos)))
        h = model.activations(x, attn_mask=AttentionMask.causal()).array[:, :-1]  # [B, T-1, embed]
        w = model.get_lm_head().rearrange((model.config.Embed.name, model.Vocab.name)).array  # [embed, vocab]
        target = tokens[:, 1:]
        # the logits SCORE_POSITIONS positions at a time: [B, chunk, vocab] f32, never [B, T, vocab]
        n = T - 1
        chunk = min(SCORE_POSITIONS, n)
        pad = -n % chunk
        hp = jnp.pad(h, ((0, 0), (0, pad), (0, 0))).reshape(B, -1, chunk, h.shape[-1]).swapaxes(0, 1)
        tp = jnp.pad(target, ((0, 0), (0, pad))).reshape(B, -1, chunk).swapaxes(0, 1)

        def one(args):
            hh, tt = args
            logp = jax.nn.log_softmax((hh @ w).astype(jnp.float32), axis=-1)
            # is the target the argmax (lm-eval's is_greedy, per token)
            return jnp.take_along_axis(logp, tt[..., None], axis=-1)[..., 0], logp.argmax(-1) == tt

        lp, greedy = jax.lax.map(one, (hp, tp))
        return lp.swapaxes(0, 1).reshape(B, -1)[:, :n], greedy.swapaxes(0, 1).reshape(B, -1)[:, :n]

    return fn


def token_logprobs(model, sequences: np.ndarray, batch_size: int, greedy: bool = False):
    """log p(x_t | x_<t) for t = 1..T-1 of each sequence: shape [n, T-1], float32; with `greedy`
    also whether each x_t is the model's argmax."""
    fn = _logprob_fn()
    batch_size = -(-batch_size // jax.device_count()) * jax.device_count()  # a share for every device
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


def length_buckets(used: np.ndarray, seq_len: int) -> dict[int, np.ndarray]:
    """Requests grouped by the columns they need: the smallest power of two, at least MIN_BUCKET and
    at most seq_len, that holds a request's `used` tokens. {columns: the requests' indices}."""
    cols = np.minimum(seq_len, np.maximum(MIN_BUCKET, 2 ** np.ceil(np.log2(np.maximum(used, 1))).astype(int)))
    return {int(c): np.flatnonzero(cols == c) for c in np.unique(cols)}


def encoded_request_file(requests: str, tokenizer_dir: str, seq_len: int):
    """`encode_requests` of a requests file (data.benchmarks.read_requests) with the tokenizer at
    `tokenizer_dir`: (pairs, sequences, cont_mask). A warm worker keeps the last few, keyed by the
    files' identities, so the study's evaluations do not tokenize the same requests again."""
    def ident(path):
        st = os.stat(path)
        return os.path.realpath(path), st.st_mtime_ns, st.st_size

    tok_files = tuple(ident(os.path.join(tokenizer_dir, f)) for f in sorted(os.listdir(tokenizer_dir)))
    return _encoded(ident(requests), tok_files, tokenizer_dir, seq_len)


@functools.lru_cache(maxsize=4)
def _encoded(requests_id, tokenizer_id, tokenizer_dir: str, seq_len: int):
    tok = load_tokenizer(tokenizer_dir)
    pairs = read_requests(requests_id[0])
    return (pairs, *encode_requests(pairs, tok, seq_len, document_start(tok)))


def encode_requests(pairs, tokenizer, seq_len: int, start_id: int):
    """Log-likelihood requests (context, continuation) as lm-eval's HF model encodes them: trailing
    spaces of the context move to the continuation, and the continuation's tokens are those of
    context + continuation after the context's (BPE may merge across the seam). Each sequence is
    the document start `start_id` (tokenizer.document_start) + context + continuation, cut from the
    left to `seq_len`, and padded with `start_id`.

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
        ids = ([start_id] + whole)[-seq_len:]  # keep the continuation, drop context from the left
        n_cont = min(len(cont), seq_len - 1)
        seq = np.full(seq_len, start_id, np.int32)
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
    # right-padded: a request's log-probs depend on its own tokens only (causal), so each is scored at
    # the columns its bucket needs, not at seq_len (each bucket one compiled shape)
    n, T = sequences.shape
    used = np.where(cont_mask.any(1), T - 1 - np.argmax(cont_mask[:, ::-1], axis=1), 1) + 1
    lp, top = np.zeros((n, T - 1), np.float32), np.zeros((n, T - 1), bool)
    for cols, idx in length_buckets(used, T).items():
        lp[idx, : cols - 1], top[idx, : cols - 1] = token_logprobs(model, sequences[idx, :cols], batch_size, greedy=True)
    counts = cont_mask.sum(1)
    return {
        "bench_logprobs": lp[cont_mask],  # row-major: request by request, tokens in order
        "bench_offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "bench_greedy": np.array([bool(t[m].all()) for t, m in zip(top, cont_mask)]),
    }
