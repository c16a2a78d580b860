"""The loop engine's schedule: which steps run in which compiled call, and where it evaluates.
(Its training is checked against levanter's Trainer in test_workflow.py.)"""

from infinite_compute.loop import _chunks, eval_steps


def test_eval_steps_are_levanters_schedule():
    # steps_per_eval = ceil(64 / 2) = 32: after steps 0 and 32, and the last one
    assert eval_steps(64, 2) == {0, 32, 63}
    assert eval_steps(10, 4) == {0, 3, 6, 9}
    assert eval_steps(1, 8) == {0}


def test_chunks_cut_at_the_chunk_size_and_after_each_eval():
    evals = eval_steps(64, 2)
    assert _chunks(0, 64, 16, evals) == [(0, 1), (1, 16), (16, 32), (32, 33), (33, 48), (48, 64)]
    assert _chunks(0, 5, 16, eval_steps(5, 1)) == [(0, 1), (1, 5)]
    assert _chunks(0, 1, 16, eval_steps(1, 1)) == [(0, 1)]


def test_a_resumed_run_makes_the_same_calls_as_an_uninterrupted_one():
    """Checkpoints are written at the end of a call; a run resumed from any of them makes the rest
    of the uninterrupted run's calls, so it computes exactly the same thing."""
    for steps, per_run, chunk in [(64, 2, 16), (100, 3, 16), (37, 8, 5)]:
        evals = eval_steps(steps, per_run)
        whole = _chunks(0, steps, chunk, evals)
        assert [a for a, _ in whole[1:]] == [b for _, b in whole[:-1]] and whole[-1][1] == steps
        assert all(0 < b - a <= chunk for a, b in whole)
        for i, (a, _) in enumerate(whole):
            assert _chunks(a, steps, chunk, evals) == whole[i:]
