"""Issue 29, training and output side, as behaviour: every signal a scheduler or a terminal sends stops a run
cleanly at any point (the evaluation before fine-tuning and the BatchNorm re-estimation included), SIGHUP
like SIGTERM, the DataLoader workers leave a terminal's Ctrl-C to the training process, an interrupted
compare or recipe names its own next step, a last batch of one image trains, an ``--overwrite`` run
replaces the previous one only when it completes, a diverged compare job is reported (never paired), the
EMA copy keeps gru-fc's zeros, and ``--pretrained`` without a network fails in one line, fast. Each test
failed before issue 29's changes."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import torch
from torch.utils.data import TensorDataset

import netsurgeon as ns
from netsurgeon.errors import PretrainedUnavailableError, TrainingDiverged, TrainingInterrupted
from tests.badinput.helpers import cli, error_lines, snapshot
from tests.faults.helpers import TINY, TRAIN, run_child, same_weights, temporaries, weights

INTERRUPTED = 130


# ------------------------------------------------------------------ 19: signals at any point of a run
@pytest.mark.parametrize(("point", "previous"), [
    ("sigterm-eval:1", True),
    pytest.param("sigterm-eval:1", False, marks=pytest.mark.slow),
    pytest.param("sigterm-bn:1", True, marks=pytest.mark.slow),
    pytest.param("sigterm-bn:1", False, marks=pytest.mark.slow),
])
def test_sigterm_before_training_stops_with_a_message_and_leaves_out_as_it_was(tmp_path, finished, point, previous):
    out = tmp_path / "run"
    if previous:
        shutil.copytree(finished, out)
    before = snapshot(tmp_path)
    more = ["--overwrite"] if previous else []
    proc = run_child(point, *TRAIN, "--out", out, "--set", "bn_recalibrate=on", *more)
    assert proc.returncode == INTERRUPTED, (proc.returncode, proc.stderr[-2000:])
    during = "the evaluation before fine-tuning" if point.startswith("sigterm-eval") else "the BatchNorm re-estimation"
    assert "terminated (SIGTERM): stopping before training starts" in proc.stderr, proc.stderr[-2000:]
    assert f"interrupted during {during}" in proc.stderr and "--out is as it was" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert snapshot(tmp_path) == before  # the previous run as it was, or no --out at all


@pytest.mark.slow
def test_sigterm_during_the_export_keeps_the_trained_run_and_resume_exports_it(tmp_path, baseline):
    out = tmp_path / "o"
    proc = run_child("sigterm-export:1", *TRAIN, "--out", out, OMP_NUM_THREADS=str(torch.get_num_threads()))
    assert proc.returncode == INTERRUPTED, (proc.returncode, proc.stderr[-2000:])
    assert "terminated (SIGTERM) while exporting" in proc.stderr and "continue with --resume" in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert (out / "checkpoint.pt").exists() and not (out / "model.safetensors").exists() and temporaries(out) == []
    result = cli(*TRAIN, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert same_weights(weights(out), baseline)


@pytest.mark.slow
def test_sigterm_while_loading_stops_in_one_line_leaving_out_as_it_was(tmp_path, finished):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = snapshot(tmp_path)
    proc = run_child("sigterm-load:1", *TRAIN, "--out", out, "--overwrite")
    assert proc.returncode == INTERRUPTED, (proc.returncode, proc.stderr[-2000:])
    assert "terminated (SIGTERM) before training started" in proc.stderr and "Traceback" not in proc.stderr
    assert snapshot(tmp_path) == before


def test_sighup_is_handled_like_sigterm_and_resumes_to_identical_weights(tmp_path, baseline):
    out = tmp_path / "o"
    proc = run_child("sighup-train:1", *TRAIN, "--out", out, OMP_NUM_THREADS=str(torch.get_num_threads()))
    assert proc.returncode == INTERRUPTED, (proc.returncode, proc.stderr[-2000:])
    assert "hangup (SIGHUP): stopping after this batch" in proc.stderr, proc.stderr[-2000:]
    assert "continue with --resume" in proc.stderr
    assert (out / "checkpoint.pt").exists() and not (out / "model.safetensors").exists()
    result = cli(*TRAIN, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert same_weights(weights(out), baseline) and temporaries(out) == []


# ------------------------------------------------------------------ 26: the workers leave Ctrl-C to training
def test_ctrl_c_to_the_process_group_with_dataloader_workers_saves_a_checkpoint(tmp_path):
    """A terminal's Ctrl-C reaches the whole foreground group; the workers ignore it (``worker_init_fn``): only
    the training process reacts (one message, not one per worker; a forked worker would otherwise run the
    loop's handler, or die of it), stops after its batch and saves a checkpoint. The signal comes after batch 1
    of an accumulation group of 8: the loop reads 7 more batches, beyond what the workers prefetched."""
    out = tmp_path / "o"
    longer = [a.replace("limit_train_batches=2", "limit_train_batches=8") for a in map(str, TRAIN)]
    proc = run_child("sigint-group-train:1", *longer, "--out", out, "--set", "workers=2", "--set", "accumulate_steps=8",
                     new_session=True)
    assert proc.returncode == INTERRUPTED, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.count("interrupt: stopping after this batch") == 1, proc.stderr[-2000:]
    assert "interrupted in epoch 1, after batch 8" in proc.stderr and "continue with --resume" in proc.stderr
    assert "DataLoader worker" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert (out / "checkpoint.pt").exists()


# ------------------------------------------------------------------ 20: each command names its own next step
def _stop_after_the_first_step(monkeypatch: pytest.MonkeyPatch) -> None:
    from netsurgeon.train import loop

    monkeypatch.setattr(loop._Run, "_stop_requested", lambda self, stop: self.state.step > 0)


def test_an_interrupted_compare_says_to_run_it_again(tmp_path, monkeypatch):
    _stop_after_the_first_step(monkeypatch)
    result = cli("compare", TINY, "--data", "digits", "--arm", "erase-relu", "--seeds", "1", "--input-size", "3,8,8",
                 "--epochs", "1", "--set", "limit_train_batches=2", "--set", "limit_eval_batches=1", "--set",
                 "batch_size=16", "--set", "progress=false", "--out", tmp_path / "cmp")
    assert result.exit_code == INTERRUPTED, result.output
    (line,) = [x for x in error_lines(result) if not x.startswith("warning:")]  # one seed: compare's seed warning
    assert "run the same compare command again to continue" in line and "--resume" not in line, line


def test_an_interrupted_recipe_says_what_is_true(tmp_path, monkeypatch):
    _stop_after_the_first_step(monkeypatch)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{name: '{TINY}', input_size: [3, 8, 8], num_classes: 10}}\n"
                      "finetune: {data: digits, epochs: 1, limit_train_batches: 2, limit_eval_batches: 1, "
                      "batch_size: 16}\n"
                      f"export: {{dir: '{tmp_path / 'out'}', formats: [safetensors]}}\n")
    result = cli("run", recipe)
    assert result.exit_code == INTERRUPTED, result.output
    (line,) = error_lines(result)
    assert "netsurgeon run has no --resume" in line and "export.overwrite=true" in line, line


# ------------------------------------------------------------------ 11: a last batch of one image
#: a model whose last BatchNorm sees 1x1 features at 32 px: one image per batch is one value per channel
ONE_BY_ONE = "torchvision:resnet18"


def _nine_images(size: int = 8) -> TensorDataset:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(9, 3, size, size), torch.arange(9) % 10)
    data.num_classes = 10
    return data


CONFIG = {"epochs": 2, "batch_size": 4, "progress": False, "log": "none"}


def test_a_last_batch_of_one_image_trains_and_resumes_bit_identically(tmp_path, monkeypatch):
    from netsurgeon.train import loop, run_training

    data = _nine_images(32)  # 4 + 4 + 1: BatchNorm cannot train on the last batch alone
    torch.manual_seed(0)
    model = ns.load_model(ONE_BY_ONE, num_classes=10, input_size=(3, 32, 32))
    whole = run_training(model, (data, data), CONFIG, out_dir=tmp_path / "whole")
    assert whole.metrics[-1]["epoch"] == 2
    def stop_once(self, stop):
        return self.state.epoch == 1 and self.state.batch == 1  # epoch 2, after its first batch

    with monkeypatch.context() as mp:
        mp.setattr(loop._Run, "_stop_requested", stop_once)
        with pytest.raises(TrainingInterrupted, match="epoch 2, after batch 1"):
            run_training(model, (data, data), CONFIG, out_dir=tmp_path / "cut")
    resumed = run_training(model, (data, data), CONFIG, out_dir=tmp_path / "cut", resume=True)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_last_batch_of_one_image_with_digits_on_the_command_line(tmp_path):
    """The issue's case: digits' 1,437 training images in batches of 4 (one image left)."""
    from netsurgeon.train.batches import without_stray

    assert len(without_stray(list(range(1437)), 4)) == 1436
    assert len(without_stray(list(range(1438)), 4)) == 1438
    result = cli("finetune", ONE_BY_ONE, "--data", "digits", "--epochs", "1", "--input-size", "3,32,32",
                 "--format", "none",
                 "--set", "batch_size=4", "--set", "limit_eval_batches=1", "--set", "progress=false",
                 "--set", "log=none", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------ 2: an --overwrite run replaces the previous one
def test_a_successful_overwrite_leaves_no_file_of_the_previous_run(tmp_path, finished):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    result = cli(*TRAIN[:-8], "--set", "limit_train_batches=1", "--set", "batch_size=16", "--set",
                 "limit_eval_batches=1", "--set", "progress=false", "--set", "log=none", "--format", "none",
                 "--out", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert not (out / "model.safetensors").exists() and not (out / "tensorboard").exists()  # not beside the new run
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 2
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no backup left
    assert cli("verify", out).exit_code == 1  # no model: nothing to verify


@pytest.mark.slow
def test_an_overwrite_interrupted_in_training_keeps_the_new_resumable_run(tmp_path, finished, baseline):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    proc = run_child("sigterm-train:1", *TRAIN, "--out", out, "--overwrite",
                     OMP_NUM_THREADS=str(torch.get_num_threads()))
    assert proc.returncode == INTERRUPTED, proc.stderr[-2000:]
    assert not (out / "model.safetensors").exists() and not (out / "metrics.csv").exists()  # the old run's: gone
    result = cli(*TRAIN, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert same_weights(weights(out), baseline)


# ------------------------------------------------------------------ 1: a diverged compare job is not paired
def test_a_diverged_compare_job_is_reported_as_diverged_and_never_paired(tmp_path):
    out = tmp_path / "cmp"
    result = cli("compare", TINY, "--data", "digits", "--arm", "erase-relu", "--seeds", "1", "--input-size", "3,8,8",
                 "--epochs", "1", "--set", "limit_train_batches=5", "--set", "limit_eval_batches=1", "--set",
                 "batch_size=16", "--set", "progress=false", "--set", "lr=1e6", "--out", out)
    assert result.exit_code == 1, result.output
    (line,) = [x for x in error_lines(result) if not x.startswith("warning:")]  # one seed: compare's seed warning
    assert "training diverged" in line and "clip_grad_norm" in line, line
    assert not list(out.rglob("job.json")) and not list(out.rglob("predictions.csv"))


def test_the_loop_stops_at_the_first_non_finite_loss(tmp_path):
    data = _nine_images()
    model = ns.load_model(TINY, input_size=(3, 8, 8))
    with torch.no_grad():
        model.fc.bias.fill_(float("inf"))
    with pytest.raises(TrainingDiverged, match=r"step 1 \(batch 1\): the loss is (nan|inf).*lower lr.*clip_grad_norm"):
        ns.train.run_training(model, (data, data), {**CONFIG, "bn_recalibrate": "off"}, out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ 25: EMA and gru-fc's frozen zeros
def test_gru_fc_frozen_zeros_hold_in_the_ema_weights():
    from netsurgeon.passes.gru_fc_rule import GradientRectifiedFC
    from netsurgeon.train import run_training

    def tuned(export: str) -> torch.Tensor:
        torch.manual_seed(0)
        model = ns.load_model(TINY, input_size=(3, 8, 8))
        result = ns.apply(model, GradientRectifiedFC(freeze_zeros=True, rounds=2, every_n_epochs=1))
        config = {"epochs": 2, "batch_size": 16, "limit_train_batches": 3, "limit_eval_batches": 1,
                  "ema_decay": 0.9, "ema_export": export, "progress": False, "log": "none"}
        return run_training(result.model, "digits", config).model.fc.weight.detach()

    raw, ema = tuned("raw"), tuned("ema")
    zeros = raw == 0  # round 2 (epoch 2) rectified more weights than the surgery did
    assert int(zeros.sum()) > 0
    assert torch.equal(ema[zeros], torch.zeros_like(ema[zeros]))


# ------------------------------------------------------------------ 22: --pretrained without a network
def test_pretrained_offline_fails_in_one_line_fast():
    from netsurgeon.models.load import hub_reachable

    if hub_reachable():
        pytest.skip("the Hugging Face Hub is reachable from here")
    started = time.perf_counter()
    with pytest.raises(PretrainedUnavailableError, match="could not fetch pretrained weights"):
        ns.load_model("timm:resnet18", pretrained=True)
    assert time.perf_counter() - started < 20  # was about 50 s of retries (60 s measured) before the one line
