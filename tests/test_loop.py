"""The loop engine's schedule: which steps run in which compiled call, and where it evaluates.
(Its training is checked against levanter's Trainer in test_workflow.py.)"""

import os

import numpy as np
import pytest

from infinite_compute.data import tokenizer
from infinite_compute.model import loop
from infinite_compute.model.loop import chunk_ranges, eval_steps


def test_eval_steps_are_levanters_schedule():
    # steps_per_eval = ceil(64 / 2) = 32: after steps 0 and 32, and the last one
    assert eval_steps(64, 2) == {0, 32, 63}
    assert eval_steps(10, 4) == {0, 3, 6, 9}
    assert eval_steps(1, 8) == {0}


def test_chunks_cut_at_the_chunk_size_and_after_each_eval():
    evals = eval_steps(64, 2)
    assert chunk_ranges(0, 64, 16, evals) == [(0, 1), (1, 16), (16, 32), (32, 33), (33, 48), (48, 64)]
    assert chunk_ranges(0, 5, 16, eval_steps(5, 1)) == [(0, 1), (1, 5)]
    assert chunk_ranges(0, 1, 16, eval_steps(1, 1)) == [(0, 1)]


def test_a_resumed_run_makes_the_same_calls_as_an_uninterrupted_one():
    """Checkpoints are written at the end of a call; a run resumed from any of them makes the rest
    of the uninterrupted run's calls, so it computes exactly the same thing."""
    for steps, per_run, chunk in [(64, 2, 16), (100, 3, 16), (37, 8, 5)]:
        evals = eval_steps(steps, per_run)
        whole = chunk_ranges(0, steps, chunk, evals)
        assert [a for a, _ in whole[1:]] == [b for _, b in whole[:-1]] and whole[-1][1] == steps
        assert all(0 < b - a <= chunk for a, b in whole)
        for i, (a, _) in enumerate(whole):
            assert chunk_ranges(a, steps, chunk, evals) == whole[i:]


@pytest.fixture(scope="module")
def budget_cache(small_budget_cache):
    """The train split of a levanter cache of 3,000 tokens of the small corpus."""
    from levanter.data.text import TextLmDatasetFormat, load_lm_dataset_cache

    cache, tok_dir = small_budget_cache
    return load_lm_dataset_cache(os.path.join(cache, "train"), TextLmDatasetFormat(), tokenizer.load_tokenizer(tok_dir))


@pytest.mark.parametrize("read_once", [True, False])
def test_the_training_order_is_levanters_epochs_of_its_shuffled_sequences(budget_cache, monkeypatch, read_once):
    """TrainingOrder gives the sequences train_lm's EpochDataset gives, in its order, whether it read
    the epoch once (small data) or asks levanter for each range (data over _READ_ONCE_BYTES)."""
    import jax.random as jrandom
    from levanter.data.dataset import EpochDataset
    from levanter.data.text import TokenSeqDataset

    if not read_once:
        monkeypatch.setattr(loop, "_READ_ONCE_BYTES", 0)
    seq_len, epochs, key = 16, 3, jrandom.PRNGKey(5)
    order = loop.TrainingOrder(budget_cache, seq_len, key, epochs)
    assert (order._epoch is not None) == read_once
    ref = TokenSeqDataset(budget_cache, seq_len).shuffle(key, perm_type="feistel")
    ref = EpochDataset(ref, max_epochs=epochs).as_sync_dataset()
    n = order.per_epoch
    assert n == 3000 // seq_len
    for a, b in [(0, 7), (n - 3, n + 5), (2 * n + 1, 3 * n), (0, 3 * n)]:
        np.testing.assert_array_equal(order.rows(a, b), np.stack(ref.get_batch(list(range(a, b)))))
    assert not np.array_equal(order.rows(0, n), np.stack(TokenSeqDataset(budget_cache, seq_len).as_sync_dataset()
                                                         .get_batch(list(range(n)))))  # shuffled
    with pytest.raises(ValueError, match="past the last of 3 epochs"):
        order.rows(3 * n - 1, 3 * n + 1)
