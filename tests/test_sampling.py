"""The teacher sampler with levanter's paged KV cache draws exactly what full forward passes draw."""

import os

import numpy as np


def tiny_llamas(n: int, seq_len: int = 24, vocab: int = 97):
    import haliax as hax
    import jax
    from levanter.models.llama import LlamaConfig, LlamaLMHeadModel

    config = LlamaConfig(seq_len=seq_len, hidden_dim=32, intermediate_dim=64, num_layers=2, num_heads=4,
                         num_kv_heads=2, gradient_checkpointing=False)
    Vocab = hax.Axis("vocab", vocab)
    return [LlamaLMHeadModel.init(Vocab, config, key=jax.random.PRNGKey(k)) for k in range(n)]


def test_kv_cache_sampling_matches_full_forward_passes():
    from infinite_compute.model import sampling, scoring

    with scoring.device_mesh():
        models = tiny_llamas(2)  # a two-member mixture
        kw = dict(n_sequences=6, seq_len=24, eot_id=0, temperature=1.0, seed=5, batch_size=3)
        cached = sampling.sample_sequences(models, **kw)
        full = sampling.sample_sequences(models, **kw, kv_cache=False)
        again = sampling.sample_sequences(models, **kw)
    assert cached.shape == (6, 24) and (cached[:, 0] == 0).all()
    np.testing.assert_array_equal(cached, full)
    np.testing.assert_array_equal(cached, again)  # a seed fixes the corpus
    assert len(np.unique(cached[:, 1:])) > 10  # random weights: a spread of tokens, not one repeated


def test_a_teacher_corpus_is_sampled_in_parts_resumes_after_a_lost_part_and_by_member_takes_turns(tmp_path, monkeypatch):
    """The sampling job's corpus (cli/distill.teacher_corpus), in parts of 2 batches: the token-level
    mixture is the corpus sampled at once; a rerun after losing a part samples that part alone and ends
    with the same corpus. `sampling: members`: sequence i is member (i mod K)'s own sample (seed + k),
    one member loaded at a time."""
    from infinite_compute.cli import distill
    from infinite_compute.model import sampling, scoring

    monkeypatch.setattr(distill, "PART_TOKENS", 2 * 3 * 24)  # 2 batches of 3 sequences of 24 tokens
    with scoring.device_mesh():
        models = tiny_llamas(2)
        kw = dict(seq_len=24, eot_id=0, temperature=1.0, batch_size=3)
        loads = []

        def load(k):
            loads.append(k)
            return models[k]

        params = {"seed": 5, "temperature": 1.0}
        mixed = distill.teacher_corpus(load, 2, 14, params=params, parts_dir=str(tmp_path / "mix"), **{
            k: kw[k] for k in ("seq_len", "eot_id", "batch_size")})
        np.testing.assert_array_equal(mixed, sampling.sample_sequences(models, 14, seed=5, **kw))
        parts = sorted(os.listdir(tmp_path / "mix"))
        assert parts == ["all-00000.npy", "all-00001.npy", "all-00002.npy"]  # 5 batches: 2 + 2 + 1
        os.remove(tmp_path / "mix" / parts[1])
        loads.clear()
        again = distill.teacher_corpus(load, 2, 14, params=params, parts_dir=str(tmp_path / "mix"), seq_len=24,
                                       eot_id=0, batch_size=3)
        np.testing.assert_array_equal(again, mixed)
        assert loads == [0, 1]  # the lost part needed the models again, the others were read back

        loads.clear()
        by = distill.teacher_corpus(load, 2, 6, params={**params, "sampling": "members"},
                                    parts_dir=str(tmp_path / "members"), seq_len=24, eot_id=0, batch_size=3)
        alone = [sampling.sample_sequences([models[k]], 3, seed=5 + k, **kw) for k in range(2)]
    assert loads == [0, 1]
    np.testing.assert_array_equal(by[0::2], alone[0])
    np.testing.assert_array_equal(by[1::2], alone[1])
    assert not np.array_equal(by, mixed[:6])


def test_lower_temperature_concentrates_the_samples():
    from infinite_compute.model import sampling, scoring

    with scoring.device_mesh():
        models = tiny_llamas(2)
        kw = dict(n_sequences=6, seq_len=24, eot_id=0, seed=1, batch_size=6)
        hot = sampling.sample_sequences(models, temperature=1.0, **kw)
        cold = sampling.sample_sequences(models, temperature=0.05, **kw)
    # near-greedy: the same context gives the same next token, so far fewer distinct tokens
    assert len(np.unique(cold[:, 1:])) < len(np.unique(hot[:, 1:]))


def test_greedy_completions_follow_full_forward_argmax_after_each_prompt():
    """Prompts of different lengths, one batch: each completion is the step-by-step argmax of the
    mixture computed by full forward passes, and the prompt's own tokens are never replaced; with and
    without the KV cache (the members in turn, as cpt_ensemble runs them)."""
    import haliax as hax
    import jax
    import jax.numpy as jnp
    from levanter.layers.attention import AttentionMask

    from infinite_compute.model import sampling, scoring

    with scoring.device_mesh():
        models = tiny_llamas(2)
        prompts = [[0, 5, 9, 13], [0, 7], [0, 3, 3, 3, 3, 8]]
        got = sampling.greedy_completions(models, prompts, n_new=5, eot_id=0, batch_size=2, seq_len=24)
        assert got == sampling.greedy_completions(models, prompts, n_new=5, eot_id=0, batch_size=2, seq_len=24,
                                                  kv_cache=False)
        for prompt, completion in zip(prompts, got):
            seq = list(prompt)
            for _ in range(5):
                x = hax.named(jnp.array([seq], jnp.int32), (hax.Axis("batch", 1), models[0].Pos.resize(len(seq))))
                logp = jnp.stack([jax.nn.log_softmax(m(x, attn_mask=AttentionMask.causal()).array[0, -1]) for m in models])
                seq.append(int((jax.nn.logsumexp(logp, axis=0)).argmax()))
            assert completion == seq[len(prompt):]


def test_scoring_a_few_positions_at_a_time_and_requests_at_their_bucket_length_give_the_full_logits_answer(monkeypatch):
    """token_logprobs computes the logits SCORE_POSITIONS positions at a time (here 5, which does not
    divide the 23 predicted positions) and score_requests scores each request at its length bucket:
    both give the log-probs and greedy flags of one full forward pass over the whole sequence."""
    import haliax as hax
    import jax
    import jax.numpy as jnp
    from levanter.layers.attention import AttentionMask

    from infinite_compute.model import scoring

    monkeypatch.setattr(scoring, "SCORE_POSITIONS", 5)
    monkeypatch.setattr(scoring, "MIN_BUCKET", 4)
    with scoring.device_mesh():
        (model,) = tiny_llamas(1)
        rng = np.random.default_rng(0)
        seqs = rng.integers(1, 97, (7, 24)).astype(np.int32)
        logits = model(hax.named(jnp.asarray(seqs), ("batch", model.Pos.resize(24))), attn_mask=AttentionMask.causal())
        logp = jax.nn.log_softmax(logits.array.astype(jnp.float32)[:, :-1], axis=-1)
        full = np.take_along_axis(np.asarray(logp), seqs[:, 1:, None], axis=-1)[..., 0]
        greedy = np.asarray(logp).argmax(-1) == seqs[:, 1:]
        lp, top = scoring.token_logprobs(model, seqs, 3, greedy=True)
        np.testing.assert_allclose(lp, full, atol=1e-5, rtol=0)
        assert (top == greedy).all()
        # requests of 3 to 24 tokens, right-padded with 0: their continuations, scored at 4, 8, 16, 24 columns
        used = np.array([3, 5, 8, 9, 16, 17, 24])
        mask = np.zeros((7, 23), bool)
        for i, u in enumerate(used):
            seqs[i, u:] = 0
            mask[i, u - 3 : u - 1] = True  # the last two tokens are the continuation
        assert sorted(scoring.length_buckets(used, 24)) == [4, 8, 16, 24]
        got = scoring.score_requests(model, seqs, mask, 3)
        ref = scoring.token_logprobs(model, seqs, 3)
    np.testing.assert_allclose(got["bench_logprobs"], ref[mask], atol=1e-5, rtol=0)
    assert list(got["bench_offsets"]) == list(range(0, 15, 2))
