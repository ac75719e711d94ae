"""The demo claims its --out before any training (hardening issue 23, item 6): a second demo into the same
directory and an --out that cannot be written are refused at once, with nothing trained."""

from __future__ import annotations

import pytest

import netsurgeon.demo as demo
from netsurgeon.atomic import claim_output_dir
from netsurgeon.errors import ExportError

QUICK = {"model": "netsurgeon:tiny_resnet", "input_size": (3, 8, 8), "baseline_epochs": 1, "epochs": 1,
         "limit_train_batches": 1, "limit_eval_batches": 1, "progress": False}


class _Trained(Exception):
    pass


@pytest.fixture
def no_training(monkeypatch):
    calls = []

    def finetune(*args, **kwargs):
        calls.append(kwargs.get("out_dir"))
        raise _Trained(f"training started into {kwargs.get('out_dir')}")

    monkeypatch.setattr(demo, "finetune", finetune)
    return calls


def test_a_second_demo_into_the_same_out_is_refused_before_training(tmp_path, no_training):
    out = tmp_path / "demo"
    with claim_output_dir(out):  # the first demo, still running
        with pytest.raises(ExportError, match="being written by another netsurgeon run"):
            demo.run_demo("digits", out, **QUICK)
    assert no_training == []


def test_an_unwritable_out_is_found_before_training(tmp_path, no_training):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ExportError, match="choose a directory"):
        demo.run_demo("digits", tmp_path / "file" / "demo", **QUICK)
    assert no_training == []
    assert (tmp_path / "file").read_text() == "not a directory"


@pytest.mark.slow
def test_overwrite_replaces_an_earlier_demos_comparison(tmp_path):
    first = demo.run_demo("digits", tmp_path, **QUICK)
    again = demo.run_demo("digits", tmp_path, overwrite=True, **QUICK)
    assert [r.top1_finetuned for r in again.rows] == [r.top1_finetuned for r in first.rows]
    assert len(first.rows) == 6 and (tmp_path / "compare" / "compare.md").exists()
