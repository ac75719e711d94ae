"""The bad-input corpus, third round (issue 29), training and output side: diverged fine-tunes, failed
``--overwrite`` runs, full disks, non-finite outputs, unknown augmentation policies, missing or unwritable
loggers. Same rule as ``test_corpus``: exit code 1 (a NetsurgeonError from Python), one line that says what
to do, no traceback, and no file created, changed or removed: a failed ``--overwrite`` leaves the previous
run exactly as it was. Each case failed before issue 29's changes (checked by running it on the code before).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

import netsurgeon as ns
from tests.badinput.helpers import (
    TINY,
    Case,
    case_registry,
    cli,
    export_golden,
    read_record,
    run_case,
    tiny_state,
    write_artifact,
)

CASES: dict[str, Case] = {}
case = case_registry(CASES)
FAST = ("--input-size", "3,8,8", "--format", "safetensors", "--set", "limit_train_batches=5", "--set",
        "batch_size=16", "--set", "limit_eval_batches=1", "--epochs", "1", "--set", "progress=false")
DIVERGE = ("--set", "lr=1e6")  # BatchNorm statistics overflow in epoch 1
#: what safetensors and torch.save raise on a full disk (neither is an OSError)
SAFETENSORS_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"
TORCH_SAVE_FULL = "[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file data/3: " \
                  "file write failed"


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Path:
    """An artifact, and beside it a finished fine-tuning run (``run/``) of the tiny ResNet from ``w.pt``."""
    out = export_golden(tmp_path_factory.mktemp("golden") / "art")
    torch.save(tiny_state(), out.parent / "w.pt")
    run = cli("finetune", TINY, "-c", out.parent / "w.pt", "--data", "digits", "--out", out.parent / "run", *FAST)
    assert run.exit_code == 0, run.output
    return out


def _finetune(tmp: Path, golden: Path, *more: object, previous: bool = False) -> list:
    """``finetune`` of the tiny ResNet into ``tmp/run`` (a copy of the golden finished run when ``previous``)."""
    if previous:
        shutil.copytree(golden.parent / "run", tmp / "run")
    return ["finetune", TINY, "-c", golden.parent / "w.pt", "--data", "digits", "--out", tmp / "run", *FAST,
            *(["--overwrite"] if previous else []), *more]


def _safetensors_disk_full(mp: pytest.MonkeyPatch) -> None:
    import safetensors.torch
    from safetensors import SafetensorError

    def full(tensors, filename, metadata=None):  # noqa: ANN001, ANN202
        Path(filename).write_bytes(b"\0" * 100)  # a partial file, as a real full disk leaves
        raise SafetensorError(SAFETENSORS_FULL)

    mp.setattr(safetensors.torch, "save_file", full)


def _torch_save_disk_full(mp: pytest.MonkeyPatch) -> None:
    import netsurgeon.train.state as state

    def full(payload, path, *args, **kwargs):  # noqa: ANN001, ANN202
        Path(path).write_bytes(b"PK\3\4")
        raise RuntimeError(TORCH_SAVE_FULL)

    mp.setattr(state.torch, "save", full)


# ------------------------------------------------------------------ 1: diverged runs, non-finite outputs
@case("training diverged in epoch 1")
def finetune_diverged(tmp, golden, mp):
    return _finetune(tmp, golden, *DIVERGE)


@case("clip_grad_norm")
def finetune_nan_loss_python(tmp, golden, mp):
    from torch.utils.data import TensorDataset

    images = torch.randn(8, 3, 8, 8)
    images[3] = float("nan")  # one damaged image: the first step's loss is NaN
    data = TensorDataset(images, torch.arange(8) % 10)
    data.num_classes = 10
    model = ns.load_model(TINY, input_size=(3, 8, 8))
    return lambda: ns.train.finetune(model, (data, data), {"epochs": 1, "batch_size": 8, "progress": False},
                                     out_dir=tmp / "run", formats=["safetensors"])


def _blown_up() -> torch.nn.Module:
    """Finite weights whose outputs overflow (as BatchNorm variances near 1e17 make them)."""
    model = ns.load_model(TINY, input_size=(3, 8, 8))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.fill_(1.0)  # every feature positive, whatever the probe
        model.fc.weight.fill_(3e38)
    return model


@case("NaN or infinity")
def export_safetensors_non_finite_outputs(tmp, golden, mp):
    return lambda: ns.export(_blown_up(), tmp / "out", formats=["safetensors"])


@case("NaN or infinity")
def export_pt2_non_finite_outputs(tmp, golden, mp):
    return lambda: ns.export(_blown_up(), tmp / "out", formats=["pt2"])


@case("NaN or infinity")
def verify_non_finite_outputs(tmp, golden, mp):
    from safetensors.torch import load_file

    from netsurgeon.export.artifact import tensor_record

    tensors = load_file(str(golden / "model.safetensors"))
    for name in [k for k in tensors if k.endswith("running_var")]:  # BatchNorm statistics of a diverged run:
        tensors[name] = torch.full_like(tensors[name], 1e-30)  # finite, and the digest says so
        tensors[name.replace("running_var", "running_mean")] = torch.full_like(tensors[name], -1e38)
    record = read_record(golden / "model.safetensors")
    record["tensors"] = tensor_record(tensors)
    return ["verify", write_artifact(tmp / "art" / "model.safetensors", record, tensors).parent]


# ------------------------------------------------------------------ 2: a failed --overwrite keeps the previous run
@case("training diverged")
def overwrite_diverged_keeps_the_previous_run(tmp, golden, mp):
    return _finetune(tmp, golden, *DIVERGE, previous=True)


@case("training diverged")
def overwrite_format_none_diverged_keeps_the_previous_run(tmp, golden, mp):
    return [*_finetune(tmp, golden, *DIVERGE, previous=True), "--format", "none"]


@case("disk full while writing")
def overwrite_disk_full_at_export_keeps_the_previous_run(tmp, golden, mp):
    _safetensors_disk_full(mp)
    return _finetune(tmp, golden, previous=True)


@case("NaN or infinity")
def overwrite_nan_at_export_keeps_the_previous_run(tmp, golden, mp):
    import importlib

    export_pkg = importlib.import_module("netsurgeon.export")  # the package (netsurgeon.export is also a function)
    mp.setattr(export_pkg, "outputs_finite", lambda model, example: False)
    return _finetune(tmp, golden, previous=True)


# ------------------------------------------------------------------ 12: full disks, whatever the writer raises
@case("disk full while writing")
def apply_safetensors_disk_full(tmp, golden, mp):
    _safetensors_disk_full(mp)
    return ["apply", "erase-relu", "-m", TINY, "--out", tmp / "o", "--format", "safetensors"]


@case("disk full while writing")
def finetune_checkpoint_disk_full(tmp, golden, mp):
    _torch_save_disk_full(mp)
    return _finetune(tmp, golden)


@case("disk full while writing")
def overwrite_checkpoint_disk_full_keeps_the_previous_run(tmp, golden, mp):
    _torch_save_disk_full(mp)
    return _finetune(tmp, golden, previous=True)


# ------------------------------------------------------------------ 13, 14, 21: settings found up front
@case("TensorBoard folder of --out")
def resume_with_an_unwritable_tensorboard_folder(tmp, golden, mp):
    shutil.copytree(golden.parent / "run", tmp / "run")
    shutil.rmtree(tmp / "run" / "tensorboard")
    (tmp / "run" / "tensorboard").symlink_to("/proc/self/fdinfo")  # no file can be created there, even by root
    return ["finetune", TINY, "-c", golden.parent / "w.pt", "--data", "digits", "--out", tmp / "run", "--resume",
            *FAST[:-4], "--epochs", "2", "--set", "progress=false"]


@case("not a timm policy")
def auto_augment_unknown_policy(tmp, golden, mp):
    return _finetune(tmp, golden, "--set", "augment=timm", "--set", "auto_augment=rand-zz9")


@case("not a timm policy")
def auto_augment_unknown_policy_python(tmp, golden, mp):
    return lambda: ns.train.FinetuneConfig(augment="timm", auto_augment="bogus-m9")


@case("log=wandb needs the wandb package")
def wandb_missing_found_before_any_work(tmp, golden, mp):
    import netsurgeon.workflows.finetune as workflow

    real = importlib.util.find_spec
    mp.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    mp.setattr(workflow, "load_from_options", lambda *a, **k: pytest.fail("the model was loaded"))
    return _finetune(tmp, golden, "--set", "log=wandb")


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_in_one_line_leaving_files_alone(name, golden, tmp_path, monkeypatch):
    run_case(CASES[name], golden, tmp_path, monkeypatch)


def test_round3_count_is_the_one_in_the_readme():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"{len(CASES)} training and output bad inputs" in readme
