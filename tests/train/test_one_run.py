"""A fine-tuning run's output directory holds one run: which failures keep the new run (resumable) and which
restore the previous one. No training: the block writes the files a run writes."""

from __future__ import annotations

import pytest

from netsurgeon.errors import TrainingInterrupted
from netsurgeon.train.outputs import CHECKPOINT, one_finetune_run


def _previous_run(out):
    out.mkdir()
    (out / CHECKPOINT).write_bytes(b"previous")
    (out / "metrics.csv").write_text("previous\n")


@pytest.mark.parametrize("stop", [SystemExit(-1), KeyboardInterrupt(), TrainingInterrupted("SIGTERM")],
                         ids=["SystemExit (submitit after requeue)", "Ctrl-C", "SIGTERM"])
def test_a_stop_after_a_checkpoint_keeps_the_new_resumable_run(tmp_path, stop):
    out = tmp_path / "o"
    _previous_run(out)
    with pytest.raises(type(stop)), one_finetune_run(out, resume=False):
        (out / CHECKPOINT).write_bytes(b"new")
        raise stop
    assert (out / CHECKPOINT).read_bytes() == b"new"  # the requeued job resumes from it
    assert not (out / "metrics.csv").exists()  # none of the previous run's files beside the new one


def test_a_failure_restores_the_previous_run(tmp_path):
    out = tmp_path / "o"
    _previous_run(out)
    with pytest.raises(ValueError), one_finetune_run(out, resume=False):
        (out / CHECKPOINT).write_bytes(b"new")
        raise ValueError("disk full")
    assert (out / CHECKPOINT).read_bytes() == b"previous" and (out / "metrics.csv").read_text() == "previous\n"


def test_a_stop_before_any_checkpoint_restores_the_previous_run(tmp_path):
    out = tmp_path / "o"
    _previous_run(out)
    with pytest.raises(SystemExit), one_finetune_run(out, resume=False):
        raise SystemExit(-1)
    assert (out / CHECKPOINT).read_bytes() == b"previous"
