"""The standard training pipeline inside ``finetune``: mixup/CutMix, weight EMA, gradient accumulation,
TensorBoard logging and the logged learning rates, workers=auto, bf16 autocast with channels_last."""

import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

import netsurgeon as ns
from netsurgeon.train import FinetuneConfig, finetune, resolve_data
from netsurgeon.train.batches import resolve_workers
from tests.conftest import state_equal

SIZE = (3, 16, 16)
QUICK = {"batch_size": 32, "lr": 0.05, "progress": False, "workers": 0, "limit_eval_batches": 2}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return ns.load_model("netsurgeon:tiny_resnet", input_size=SIZE)


def test_mixup_trains_on_soft_targets_and_counts_accuracy_on_hard_labels(model, monkeypatch):
    from netsurgeon.train import loop
    from netsurgeon.train.state import EpochSums

    seen, original_loss, original_add = [], loop._Run._loss, EpochSums.add
    monkeypatch.setattr(loop._Run, "_loss", lambda self, logits, t: seen.append(t.shape) or
                        original_loss(self, logits, t))
    monkeypatch.setattr(EpochSums, "add", lambda self, loss, logits, y: seen.append(("hard", y.ndim)) or
                        original_add(self, loss, logits, y))
    cfg = FinetuneConfig(epochs=1, limit_train_batches=3, mixup=0.8, cutmix=1.0, label_smoothing=0.1, **QUICK)
    result = finetune(model, "digits", cfg)
    assert [s for s in seen if s != ("hard", 1)] == [torch.Size([32, 10])] * 3  # soft targets, 10 classes
    assert seen.count(("hard", 1)) == 3  # train top-1 against the hard labels
    assert 0 <= result.final["train_top1"] <= 100 and result.final["test_top1"] > 0
    plain = finetune(model, "digits", FinetuneConfig(epochs=1, limit_train_batches=3, **QUICK))
    assert not state_equal(plain.model.state_dict(), result.model.state_dict())


@pytest.mark.parametrize("choice", ["ema", "raw", "best"])
def test_ema_is_evaluated_checkpointed_and_exported_as_named(model, tmp_path, choice):
    cfg = FinetuneConfig(epochs=2, limit_train_batches=4, ema_decay=0.99, ema_export=choice, **QUICK)
    result = finetune(model, "digits", cfg, out_dir=tmp_path, formats=("safetensors",))
    assert all("ema_test_top1" in row and "test_top1" in row for row in result.metrics)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert not state_equal(saved["ema"], saved["model"])  # the EMA lags the raw weights
    last = result.metrics[-1]
    expected = choice if choice != "best" else ("ema" if last["ema_test_top1"] > last["test_top1"] else "raw")
    assert result.weights == expected
    assert state_equal(result.model.state_dict(), saved[{"ema": "ema", "raw": "model"}[expected]])
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as fh:
        record = json.loads(fh.metadata()["netsurgeon"])
        exported = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no iteration)
    assert record["finetune"]["weights"] == expected
    reference = saved["ema" if expected == "ema" else "model"]
    assert all(torch.equal(exported[k], reference[k]) for k in exported)


def test_ema_warmup_follows_timm():
    from timm.utils import ModelEmaV3

    ema = ModelEmaV3(nn.Linear(2, 2), decay=0.999, use_warmup=True)
    assert ema.get_decay(1) == 0 and ema.get_decay(10) < 0.9 < ema.get_decay(10_000) <= 0.999


def test_accumulating_four_batches_of_16_is_one_batch_of_64():
    """No BatchNorm (its statistics see 16 images at a time), the whole epoch: the last, partial group (29
    images as 16 + 13) is weighted like batch 64's last batch of 29."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    data = resolve_data("digits", ns.load_model("netsurgeon:tiny_resnet", input_size=SIZE),
                        FinetuneConfig(augment="none"))[:2]
    base = {"epochs": 1, "lr": 0.05, "progress": False, "workers": 0, "limit_eval_batches": 1,
            "bn_recalibrate": "off"}
    big = finetune(net, data, FinetuneConfig(batch_size=64, **base))
    accumulated = finetune(net, data, FinetuneConfig(batch_size=16, accumulate_steps=4, **base))
    small = finetune(net, data, FinetuneConfig(batch_size=16, **base))
    for (name, a), b, c in zip(big.model.state_dict().items(), accumulated.model.state_dict().values(),
                               small.model.state_dict().values(), strict=True):
        # float tolerance: 23 momentum steps whose sums run in another order with several OpenMP threads
        # (3e-6 apart on 2 threads, 0 on one); batch 16 without accumulation is 0.15 apart
        assert torch.allclose(a, b, atol=2e-5, rtol=1e-5), name
        assert not torch.allclose(a, c, atol=1e-4), name  # without accumulation, batch 16 updates differ


def test_tensorboard_events_hold_the_scalars_and_the_base_learning_rate(model, tmp_path):
    pytest.importorskip("tensorboard")  # an optional extra (in dev)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    headed = ns.apply(model, ns.SpinalHeadConfig(width=8)).model  # a new-parameter group at 10x the rate
    cfg = FinetuneConfig(epochs=2, limit_train_batches=2, schedule="constant", ema_decay=0.9,
                         **{**QUICK, "lr": 0.01})
    result = finetune(headed, "digits", cfg, out_dir=tmp_path, formats=())
    assert [row["lr"] for row in result.metrics[1:]] == pytest.approx([0.01, 0.01])
    assert [row["lr_new"] for row in result.metrics[1:]] == pytest.approx([0.1, 0.1])
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/top1", "lr/base", "lr/new_params", "test/loss", "test/top1", "test/top5",
            "ema/top1", "ema/top5", "ema/loss", "speed/images_per_s"} <= tags
    assert [e.value for e in events.Scalars("lr/base")] == pytest.approx([0.01, 0.01])
    assert [e.value for e in events.Scalars("lr/new_params")] == pytest.approx([0.1, 0.1])
    assert [e.step for e in events.Scalars("test/top1")] == [0, 1, 2]
    assert [e.value for e in events.Scalars("ema/top1")] == pytest.approx([r["ema_test_top1"] for r in result.metrics])


def test_logging_can_be_switched_off(model, tmp_path):
    finetune(model, "digits", FinetuneConfig(epochs=1, limit_train_batches=1, log="none", **QUICK), out_dir=tmp_path,
             formats=())
    assert not (tmp_path / "tensorboard").exists()


def test_workers_auto_reads_in_memory_data_in_process(model):
    train, _, _ = resolve_data("digits", model)
    assert resolve_workers("auto", train) == 0 and resolve_workers(3, train) == 3


def test_bf16_autocast_and_channels_last_on_the_cpu(model):
    """What a GPU run does (bf16 autocast, channels_last), exercised on the CPU with augmentation and EMA."""
    cfg = FinetuneConfig(epochs=1, limit_train_batches=3, amp="bf16", channels_last=True, ema_decay=0.9,
                         **QUICK)
    result = finetune(model, "digits", cfg)
    assert torch.isfinite(torch.tensor(result.final["train_loss"])) and result.final["ema_test_top1"] >= 0
    assert result.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert result.model.conv1.weight.dtype == torch.float32  # autocast leaves the weights in float32


@pytest.mark.parametrize("log", ["auto", "none"])
def test_run_outputs_names_every_file_a_run_writes(model, tmp_path, log):
    from netsurgeon.train.outputs import run_outputs

    cfg = FinetuneConfig(epochs=1, limit_train_batches=1, log=log, **QUICK)
    finetune(model, "digits", cfg, out_dir=tmp_path, formats=("safetensors",))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(run_outputs(cfg, ("safetensors",)))
