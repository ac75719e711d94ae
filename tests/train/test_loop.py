"""The fine-tuning loop on digits with tiny models: learning, determinism, resume, errors, hooks, outputs."""

import importlib.util
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch.utils.data import Dataset

import netsurgeon as ns
from netsurgeon.errors import CheckpointError, ConfigError, TrainingInterrupted
from netsurgeon.passes.gru_fc import MASK_BUFFER
from netsurgeon.train import FinetuneConfig, evaluate, finetune, recalibrate_bn, resolve_data
from netsurgeon.train.components import param_groups
from tests.conftest import state_equal

TENSORBOARD = ["tensorboard"] if importlib.util.find_spec("tensorboard") else []  # events folder (log=auto)

SIZE = (3, 16, 16)
QUICK = {"batch_size": 32, "lr": 0.05, "progress": False, "workers": 0}


@pytest.fixture(scope="module")
def digits():
    model = ns.load_model("netsurgeon:tiny_resnet", input_size=SIZE)
    train, test, _ = resolve_data("digits", model, FinetuneConfig(augment="none"))  # the tests' fixed tensors
    return train, test


@pytest.fixture
def model():
    torch.manual_seed(0)
    return ns.load_model("netsurgeon:tiny_resnet", input_size=SIZE)


class SigintAt(Dataset):
    """Sends this process a real SIGINT when the n-th sample is read (as a user's Ctrl-C would)."""

    def __init__(self, base, at: int) -> None:
        self.base, self.at, self.reads, self.num_classes = base, at, 0, base.num_classes

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        self.reads += 1
        if self.reads == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return self.base[i]


def test_learns_digits_well_above_chance(model, digits):
    result = finetune(model, digits, FinetuneConfig(epochs=3, **QUICK))
    assert result.metrics[0]["epoch"] == 0 and result.metrics[0]["test_top1"] < 30  # untrained: near chance
    assert result.final["test_top1"] > 80  # chance is 10%
    assert result.final["train_loss"] < result.metrics[1]["train_loss"]
    assert not any(torch.equal(a, b) for a, b in zip(model.parameters(), result.model.parameters(), strict=True)
                   if a.numel() > 1), "the caller's model must not be trained in place"


def test_same_seed_same_weights(model, digits):
    cfg = FinetuneConfig(epochs=1, limit_train_batches=10, **QUICK)
    a, b = finetune(model, digits, cfg), finetune(model, digits, cfg)
    assert state_equal(a.model.state_dict(), b.model.state_dict())
    c = finetune(model, digits, FinetuneConfig(epochs=1, limit_train_batches=10, seed=1, **QUICK))
    assert not state_equal(a.model.state_dict(), c.model.state_dict())


@pytest.mark.parametrize("at_batch", [5, 45 + 6])  # inside the first epoch; inside the second, after a checkpoint
def test_interrupt_then_resume_is_bit_identical(model, digits, tmp_path, at_batch):
    train, test = digits
    cfg = FinetuneConfig(epochs=2, **QUICK)
    full = finetune(model, digits, cfg, out_dir=tmp_path / "full", formats=())
    with pytest.raises(TrainingInterrupted, match="--resume"):
        finetune(model, (SigintAt(train, at_batch * 32 - 3), test), cfg, out_dir=tmp_path / "cut", formats=())
    assert (tmp_path / "cut" / "checkpoint.pt").exists()
    assert not list((tmp_path / "cut").glob(".*.tmp"))
    resumed = finetune(model, digits, cfg, out_dir=tmp_path / "cut", resume=True, formats=())
    assert state_equal(full.model.state_dict(), resumed.model.state_dict())
    strip = [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in full.metrics]
    assert strip == [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")}
                     for row in resumed.metrics]


# the second epoch's case is -m slow: test_interrupt_then_resume_is_bit_identical[51] resumes there by default
@pytest.mark.parametrize("at_batch", [5, pytest.param(45 + 6, marks=pytest.mark.slow)])
def test_interrupt_then_resume_is_bit_identical_with_augmentation_mixup_ema_and_workers(model, tmp_path, monkeypatch,
                                                                                         at_batch):
    """The training data is a spec, so the loop augments (basic: padded crop + flip), mixes (mixup and CutMix),
    keeps an EMA, accumulates two batches per step, and reads through two worker processes. At the at_batch-th
    batch the training process and its DataLoader workers get SIGINT, as from a terminal's Ctrl-C."""
    from netsurgeon.train import loop

    cfg = FinetuneConfig(epochs=2, augment="basic", mixup=0.4, cutmix=1.0, ema_decay=0.9, accumulate_steps=2,
                         **{**QUICK, "workers": 2})
    full = finetune(model, "digits", cfg, out_dir=tmp_path / "full", formats=())
    original, calls = loop._Run._train_step, []

    def step(self, *args):
        calls.append(1)
        if len(calls) == at_batch:
            workers = [int(pid) for task in Path("/proc/self/task").iterdir() if (task / "children").exists()
                       for pid in (task / "children").read_text().split()]
            assert workers or not Path("/proc/self/task").exists()  # the DataLoader's worker processes
            for pid in [os.getpid(), *workers]:
                os.kill(pid, signal.SIGINT)
        return original(self, *args)

    with monkeypatch.context() as patched:
        patched.setattr(loop._Run, "_train_step", step)
        with pytest.raises(TrainingInterrupted, match="--resume"):
            finetune(model, "digits", cfg, out_dir=tmp_path / "cut", formats=())
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert cut["state"]["batch"] % 2 == 0  # stopped between optimizer steps, not inside an accumulation
    resumed = finetune(model, "digits", cfg, out_dir=tmp_path / "cut", resume=True, formats=())
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=True) for d in ("full", "cut"))
    assert state_equal(a["model"], b["model"]) and state_equal(a["ema"], b["ema"])
    assert state_equal(full.model.state_dict(), resumed.model.state_dict()) and full.weights == resumed.weights
    strip = [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in full.metrics]
    assert strip == [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")}
                     for row in resumed.metrics]


def test_resume_refuses_a_different_config_or_a_missing_checkpoint(model, digits, tmp_path):
    finetune(model, digits, FinetuneConfig(epochs=1, limit_train_batches=2, **QUICK), out_dir=tmp_path, formats=())
    with pytest.raises(CheckpointError, match=r"lr: 0.05 -> 0.1"):
        finetune(model, digits, FinetuneConfig(epochs=1, limit_train_batches=2, **{**QUICK, "lr": 0.1}),
                 out_dir=tmp_path, resume=True, formats=())
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        finetune(model, digits, FinetuneConfig(epochs=1, **QUICK), out_dir=tmp_path / "new", resume=True)
    with pytest.raises(ConfigError, match="already holds a run"):
        finetune(model, digits, FinetuneConfig(epochs=1, **QUICK), out_dir=tmp_path, formats=())


def test_outputs_metrics_plot_checkpoint_and_artifact_with_training_provenance(model, digits, tmp_path):
    cfg = FinetuneConfig(epochs=2, limit_train_batches=4, **QUICK)
    result = finetune(model, digits, cfg, out_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint.pt", "curves.png", "metrics.csv", "metrics.jsonl", "model.onnx", "model.safetensors",
                     *TENSORBOARD]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2] and rows == result.metrics
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0].startswith("epoch,")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as fh:
        record = json.loads(fh.metadata()["netsurgeon"])
    assert record["finetune"]["config"]["epochs"] == 2 and record["finetune"]["metrics"][-1]["epoch"] == 2
    reloaded = ns.load_model(tmp_path)
    x = torch.randn(2, *SIZE)
    assert torch.equal(reloaded(x), result.model(x))
    assert result.export is not None and result.export.onnx_max_abs_diff < 1e-4


def test_class_count_mismatch_is_a_clear_error(digits):
    five = ns.load_model("netsurgeon:tiny_resnet", num_classes=5, input_size=SIZE)
    with pytest.raises(ConfigError, match="outputs 5 classes but the data has 10.*--num-classes 10"):
        finetune(five, digits, FinetuneConfig(epochs=1, **QUICK))


@pytest.mark.parametrize("spec, words", [
    ("folder:/nonexistent/images", "image folder /nonexistent/images does not exist"),
    ("fashion-mnist:/nonexistent", "Fashion-MNIST IDX files"),
    ("torchvision:CIFAR10:/nonexistent", "CIFAR10 not found under /nonexistent"),
    ("imagenet", "unknown data spec"),
])
def test_bad_data_is_a_clear_error(model, spec, words):
    with pytest.raises(ConfigError, match=words):
        finetune(model, spec, FinetuneConfig(epochs=1, **QUICK))


def test_new_parameters_get_their_own_learning_rate(model):
    headed = ns.apply(model, ns.SpinalHeadConfig(width=8)).model
    groups = param_groups(headed, FinetuneConfig(lr=0.01, new_param_lr_scale=10), set(
        ns.models.info.get_info(headed).history[0].new_params))
    new = [g for g in groups if g["netsurgeon_new"]]
    head_params = {id(p) for p in headed.get_submodule("fc").parameters()}
    assert new and {id(p) for g in new for p in g["params"]} == head_params
    assert all(g["lr"] == pytest.approx(0.1) for g in new)
    assert all(g["lr"] == pytest.approx(0.01) for g in groups if not g["netsurgeon_new"])
    assert all(g["weight_decay"] == 0 for g in groups if all(p.ndim == 1 for p in g["params"]))


def test_gru_fc_freeze_zeros_and_periodic_rectification(model, digits, tmp_path):
    cfg = ns.GradientRectifiedFC(freeze_zeros=True, rounds=2, every_n_epochs=1)
    rectified = ns.apply(model, cfg).model
    zeros = rectified.fc.weight == 0
    result = finetune(rectified, digits, FinetuneConfig(epochs=2, limit_train_batches=5, **QUICK),
                      out_dir=tmp_path, formats=("safetensors",))
    w = result.model.fc.weight
    assert torch.all(w[zeros] == 0)  # frozen zeros stay exactly zero through SGD with momentum and decay
    assert int((w == 0).sum()) > int(zeros.sum())  # the second round (start of epoch 2) zeroed more
    assert torch.equal(getattr(result.model.fc, MASK_BUFFER), w == 0)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    (gru_state,) = saved["hooks"]  # the pass's own training-hook state (netsurgeon.hooks)
    assert torch.equal(gru_state["masks"]["fc"], w == 0) and gru_state["rectified"] == 2


def test_bn_recalibration_uses_the_data_statistics():
    bn = torch.nn.Sequential(torch.nn.BatchNorm2d(3)).eval()
    x = torch.randn(64, 3, 4, 4) * 3 + 2
    assert recalibrate_bn(bn, [(x[:32], None), (x[32:], None)], n_batches=2) == 1
    assert torch.allclose(bn[0].running_mean, x.mean(dim=(0, 2, 3)), atol=1e-5)
    assert bn[0].momentum == 0.1 and not bn.training


def test_bn_recalibration_runs_only_after_function_changing_structural_passes(model, digits):
    erased = ns.apply(model, ns.EraseReLU()).model
    cfg = FinetuneConfig(epochs=1, limit_train_batches=1, bn_batches=3, **QUICK)
    assert finetune(erased, digits, cfg).metrics[0]["bn_recalibrated"] == 8  # every BN
    assert finetune(model, digits, cfg).metrics[0]["bn_recalibrated"] == 0
    headed = ns.apply(model, ns.SpinalHeadConfig(width=8)).model  # warm-started: exact, backbone BN untouched
    assert finetune(headed, digits, cfg).metrics[0]["bn_recalibrated"] == 0
    cold = ns.apply(model, ns.SpinalHeadConfig(width=8, warm_start=False)).model
    assert finetune(cold, digits, cfg).metrics[0]["bn_recalibrated"] == 8


def test_evaluate_top1_top5():
    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5]])
    model = torch.nn.Sequential(torch.nn.Flatten(0, -1), torch.nn.Unflatten(0, (2, 6)))
    result = evaluate(model, [(logits, torch.tensor([0, 0]))])
    assert (result.top1, result.top5, result.samples) == (50.0, 50.0, 2)
    result = evaluate(model, [(logits, torch.tensor([1, 2]))])
    assert (result.top1, result.top5) == (0.0, 100.0)


@pytest.mark.parametrize("change", [{"clip_grad_norm": 1e-3}, {"label_smoothing": 0.3}, {"optimizer": "adamw"},
                                    {"new_param_lr_scale": 1.0, "weight_decay": 0.0}, {"schedule": "constant"}])
def test_each_setting_reaches_the_loop(model, digits, change):
    base = {"epochs": 1, "limit_train_batches": 3, "limit_eval_batches": 1, **QUICK}
    a = finetune(model, digits, FinetuneConfig(**base))
    b = finetune(model, digits, FinetuneConfig(**{**base, **change}))
    if change.get("new_param_lr_scale") == 1.0:  # no pass created parameters: only weight decay differs
        assert not state_equal(a.model.state_dict(), b.model.state_dict())
    else:
        assert not state_equal(a.model.state_dict(), b.model.state_dict()), change


def test_recorded_learning_rate_follows_the_step_schedule(model, digits):
    cfg = FinetuneConfig(epochs=3, schedule="step", step_epochs=(1, 2), step_gamma=0.5, limit_train_batches=2,
                         limit_eval_batches=1, eval_every=2, **QUICK)
    rows = finetune(model, digits, cfg).metrics
    assert [r["lr"] for r in rows[1:]] == pytest.approx([0.05, 0.025, 0.0125])
    assert ["test_top1" in r for r in rows] == [True, False, True, True]  # eval_every=2, and always the last


def test_transforms_follow_the_model_data_config():
    from netsurgeon.data import model_normalization

    assert model_normalization(ns.load_model("timm:test_resnet")) == ((0.5,) * 3, (0.5,) * 3)
    assert model_normalization(ns.load_model("torchvision:resnet18"))[0] == pytest.approx((0.485, 0.456, 0.406))
    model = ns.load_model("timm:test_resnet", num_classes=10, input_size=(3, 24, 24))
    train, _, _ = resolve_data("digits", model)
    image, _ = train[0]
    assert image.shape == (3, 24, 24) and image.min() >= -1 - 1e-6 and image.max() <= 1 + 1e-6  # (x - 0.5) / 0.5


@pytest.mark.slow
def test_torch_compile_trains_like_eager(model, digits):
    cfg = FinetuneConfig(epochs=1, limit_train_batches=3, limit_eval_batches=1, **QUICK)
    eager = finetune(model, digits, cfg)
    compiled = finetune(model, digits, FinetuneConfig(**{**cfg.to_dict(), "compile": True}))
    for (name, a), b in zip(eager.model.state_dict().items(), compiled.model.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=2e-3), name  # inductor fuses: float rounding differs
    assert not torch.equal(compiled.model.conv1.weight, model.conv1.weight)  # and it did train


@pytest.mark.gpu
def test_gpu_amp_channels_last(model, digits, tmp_path):
    cfg = FinetuneConfig(epochs=1, limit_train_batches=5, device="cuda", amp="bf16", **QUICK)
    result = finetune(model, digits, cfg, out_dir=tmp_path)
    assert next(result.model.parameters()).is_cuda and result.final["test_top1"] > 0
    assert (tmp_path / "model.onnx").exists()  # exported from a CPU copy
    fp16 = finetune(model, digits, FinetuneConfig(**{**cfg.to_dict(), "amp": "fp16"}))
    assert torch.isfinite(torch.tensor(fp16.final["train_loss"]))
