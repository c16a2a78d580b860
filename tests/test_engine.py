"""What the two training engines share (model/engine.py): step records that survive a kill and a
resume, and the metrics summary both engines write to metrics.json."""

import json
import math

import pytest

from infinite_compute.model.engine import (
    StepRecord,
    StepRecords,
    step_record_of_levanter,
    summarise,
)
from infinite_compute.study.specs import ModelShape, RunSpec

SHAPE = ModelShape("t1", hidden_dim=32, intermediate_dim=96, num_layers=1, num_heads=2, num_kv_heads=2, seq_len=64)
SPEC = RunSpec(run_id="t1-d8k-ep2-lr0.01-wd0.1-s0", model=SHAPE, token_budget=8192, epochs=2, learning_rate=0.01,
               weight_decay=0.1, seed=0, batch_size=8, optimizer={}, data="d8192", num_train_steps=4,
               tokens_per_epoch=1024)


def test_records_are_appended_read_back_and_a_cut_last_line_is_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    r = StepRecords(str(path))
    r.add(StepRecord(step=0, time=1.0, train_loss=6.0))
    r.add(StepRecord(step=0, time=1.5, eval_loss=5.9))
    r.close()
    with open(path, "a") as f:
        f.write('{"step": 1, "time": 2.0, "train_lo')  # a writer killed mid-line
    back = StepRecords(str(path))
    assert back.items == [StepRecord(step=0, time=1.0, train_loss=6.0), StepRecord(step=0, time=1.5, eval_loss=5.9)]
    back.add(StepRecord(step=1, time=3.0, train_loss=5.5))  # the next record is a whole line of its own
    back.close()
    assert StepRecords(str(path)).items[-1] == StepRecord(step=1, time=3.0, train_loss=5.5)


def test_a_resumed_run_keeps_the_records_before_its_checkpoint_only(tmp_path):
    r = StepRecords(str(tmp_path / "m.jsonl"))
    for s in range(4):
        r.add(StepRecord(step=s, time=float(s), train_loss=6.0 - s))
    r.keep_before(2)
    assert [x.step for x in r.items] == [0, 1]


def test_levanter_json_logger_records_become_step_records_and_old_record_files_still_read(tmp_path):
    rec = step_record_of_levanter(3, 9.0, {"train/loss": 5.0, "throughput/duration": 0.1, "optim/learning_rate": 1.0})
    assert rec == StepRecord(step=3, time=9.0, train_loss=5.0, step_seconds=0.1)
    assert step_record_of_levanter(3, 9.0, {"optim/learning_rate": 1.0}) is None
    path = tmp_path / "old.jsonl"  # a run's state from before StepRecord: levanter's records with _time
    path.write_text("\n".join(json.dumps(d) for d in [
        {"event": "log", "step": 0, "metrics": {"train/loss": 6.0}, "_time": 1.0},
        {"event": "log", "step": 0, "metrics": {"eval/loss": 5.9}, "_time": 1.2},
        {"event": "summary", "metrics": {"parameter_count": 10}}]) + "\n")
    assert StepRecords(str(path)).items == [StepRecord(step=0, time=1.0, train_loss=6.0),
                                           StepRecord(step=0, time=1.2, eval_loss=5.9)]


def test_the_summary_keeps_the_latest_record_of_each_step_and_times_from_this_process():
    records = [StepRecord(step=s, time=10.0 + s, train_loss=6.0 - s, step_seconds=0.1 * (s + 1), loading_seconds=0.01)
               for s in range(4)]
    records += [StepRecord(step=3, time=14.5, eval_loss=5.0), StepRecord(step=3, time=20.0, eval_loss=4.5)]  # redone
    m = summarise(records, SPEC, wall=8.0, vocab_size=512, parameter_count=1234, started=11.5)
    assert m["final_eval_loss"] == 4.5 and m["eval_loss"] == [{"step": 3, "loss": 4.5}]
    assert m["final_train_loss"] == 3.0 and m["parameter_count"] == 1234
    assert m["tokens_seen"] == 4 * 8 * 64 and m["tokens_per_second"] == pytest.approx(4 * 8 * 64 / 8.0)
    assert m["startup_seconds"] == pytest.approx(12.0 - 11.5)  # the first step at or after this process began
    assert m["step_seconds"] == pytest.approx(0.35)  # the median after the two compiling steps
    assert not m["diverged"] and m["non_embedding_params"] == SHAPE.non_embedding_params()
    nan = summarise([StepRecord(step=0, time=1.0, eval_loss=float("nan"))], SPEC, 1.0, 512, None)
    assert nan["diverged"] and math.isnan(nan["startup_seconds"])
