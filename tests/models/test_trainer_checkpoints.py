"""Checkpoints as users' trainers write them (timm train.py, torchvision references, Lightning, the hub
layout) load into apply, inspect and finetune; --weights picks raw or EMA; foreign classes stay refused."""

import argparse
import json

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from typer.testing import CliRunner

import netsurgeon as ns
from netsurgeon.cli import app
from netsurgeon.errors import CheckpointError, ConfigError
from netsurgeon.models import get_info
from netsurgeon.models.checkpoint import read_trainer_checkpoint
from tests.conftest import state_equal

SPEC, CLASSES = "timm:test_resnet", 10
runner = CliRunner()


def _trained():
    """A model and an EMA of it whose weights differ (as after some steps)."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=CLASSES)
    ema = timm.utils.ModelEmaV3(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    ema.update(model)
    return model, ema


def _timm_train_py(tmp_path):
    """timm train.py's own saver: model_best.pth.tar with state_dict, state_dict_ema, an args Namespace."""
    from timm.utils import CheckpointSaver

    model, ema = _trained()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    args = argparse.Namespace(model="test_resnet", lr=0.1, epochs=3, output="", model_ema=True)
    saver = CheckpointSaver(model, optimizer, args=args, model_ema=ema, checkpoint_dir=str(tmp_path),
                            recovery_dir=str(tmp_path))
    saver.save_checkpoint(epoch=0, metric=51.0)
    path = tmp_path / "model_best.pth.tar"
    assert path.exists()
    return path, model.state_dict(), ema.module.state_dict()


def _torchvision_reference(tmp_path):
    """torchvision references/classification/train.py: model, model_ema (an AveragedModel), optimizer, args."""
    model, _ = _trained()
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.5), use_buffers=True)
    ema.update_parameters(model)  # the first update copies
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    ema.update_parameters(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30)
    checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "lr_scheduler": scheduler.state_dict(), "epoch": 2,
                  "args": argparse.Namespace(model="test_resnet", lr=0.1, output_dir="out"),
                  "model_ema": ema.state_dict()}
    path = tmp_path / "checkpoint.pth"
    torch.save(checkpoint, path)
    return path, model.state_dict(), ema.module.state_dict()


def _lightning(tmp_path):
    """A LightningModule holding the network as ``self.net`` (plus a loss with a buffer) as Lightning saves it."""
    model, _ = _trained()
    state = {f"net.{k}": v for k, v in model.state_dict().items()}
    state["criterion.weight"] = torch.ones(CLASSES)
    checkpoint = {"epoch": 1, "global_step": 10, "pytorch-lightning_version": "2.4.0", "state_dict": state,
                  "loops": {"fit_loop": {"epoch_progress": {"total": {"ready": 1}}}}, "callbacks": {},
                  "optimizer_states": [torch.optim.SGD(model.parameters(), lr=0.1).state_dict()],
                  "lr_schedulers": [], "hparams_name": "kwargs", "hyper_parameters": {"lr": 0.1, "arch": "x"}}
    path = tmp_path / "epoch=1-step=10.ckpt"
    torch.save(checkpoint, path)
    return path, model.state_dict(), None


def _hub_dir(tmp_path):
    """timm's hub layout (push_to_hf_hub / local-dir:): config.json and model.safetensors."""
    from timm.models._hub import save_for_hf

    model, _ = _trained()
    folder = tmp_path / "hub"
    save_for_hf(model, str(folder), safe_serialization=True)
    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    return folder, model.state_dict(), None


WRITERS = {"timm-train": _timm_train_py, "torchvision-ref": _torchvision_reference, "lightning": _lightning,
           "hub-dir": _hub_dir}


@pytest.mark.parametrize("kind", list(WRITERS))
def test_trainer_checkpoint_loads_raw_weights_by_default(tmp_path, kind):
    path, raw, _ = WRITERS[kind](tmp_path)
    model = ns.load_model(SPEC, checkpoint=path, num_classes=CLASSES)
    assert state_equal(model.state_dict(), raw)
    info = get_info(model)
    assert info.checkpoint_entry == {"timm-train": "state_dict", "torchvision-ref": "model",
                                     "lightning": "state_dict", "hub-dir": None}[kind]


@pytest.mark.parametrize("kind", ["timm-train", "torchvision-ref"])
def test_weights_ema_picks_the_ema_entry(tmp_path, kind):
    path, raw, ema = WRITERS[kind](tmp_path)
    model = ns.load_model(SPEC, checkpoint=path, num_classes=CLASSES, weights="ema")
    assert state_equal(model.state_dict(), ema) and not state_equal(model.state_dict(), raw)
    entry = get_info(model).checkpoint_entry
    assert entry in ("state_dict_ema", "model_ema")
    result = ns.apply(model, "pd-relu", input_size=(3, 32, 32))
    assert f"entry {entry}" in result.report.weights  # the report names the entry
    default = ns.apply(ns.load_model(SPEC, checkpoint=path, num_classes=CLASSES), "pd-relu", input_size=(3, 32, 32))
    assert "EMA weights also present" in default.report.weights


def test_provenance_names_the_entry(tmp_path):
    path, _, _ = _timm_train_py(tmp_path)
    model = ns.load_model(SPEC, checkpoint=path, num_classes=CLASSES, weights="ema", input_size=(3, 32, 32))
    ns.export(ns.apply(model, "erase-relu").model, tmp_path / "out", formats=["safetensors"])
    from safetensors import safe_open

    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as fh:
        record = json.loads(fh.metadata()["netsurgeon"])
    assert record["weights"]["entry"] == "state_dict_ema"
    ns.load_model(tmp_path / "out")  # the header stays valid


def test_ema_asked_of_a_file_without_one(tmp_path):
    path, _, _ = _lightning(tmp_path)
    with pytest.raises(CheckpointError, match="no EMA entry"):
        ns.load_model(SPEC, checkpoint=path, num_classes=CLASSES, weights="ema")
    with pytest.raises(CheckpointError, match="weights must be one of raw, ema"):
        ns.load_model(SPEC, checkpoint=path, num_classes=CLASSES, weights="best")
    with pytest.raises(ConfigError, match="give checkpoint"):
        ns.load_model(SPEC, num_classes=CLASSES, weights="ema")


def test_lightning_prefix_is_found_from_the_models_keys(tmp_path):
    path, raw, _ = _lightning(tmp_path)
    read = read_trainer_checkpoint(path, model_keys=raw.keys())
    assert read.prefix == "net." and read.dropped == 1 and set(read.state) == set(raw)


class Foreign:  # a class no allow-list names
    pass


def test_a_pickled_foreign_class_is_refused_in_one_line(tmp_path):
    model, _ = _trained()
    path = tmp_path / "bad.pth.tar"
    torch.save({"state_dict": model.state_dict(), "args": argparse.Namespace(x=1), "extra": Foreign()}, path)
    with pytest.raises(CheckpointError) as err:
        ns.load_model(SPEC, checkpoint=path, num_classes=CLASSES)
    text = str(err.value)
    assert "\n" not in text and "refused to load" in text and "Foreign" in text and "weights_only=False" not in text


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("kind", list(WRITERS))
def test_cli_apply_and_inspect_read_trainer_checkpoints(tmp_path, kind):
    path, _, _ = WRITERS[kind](tmp_path)
    common = ("-m", SPEC, "-c", path, "--num-classes", CLASSES)
    inspected = _cli("inspect", *common)
    assert inspected.exit_code == 0, inspected.output
    applied = _cli("apply", "erase-relu", *common, "--input-size", "3,32,32", "--dry-run")
    assert applied.exit_code == 0, applied.output
    if kind == "timm-train":
        assert "EMA weights also present" in inspected.output
        ema = _cli("inspect", *common, "--weights", "ema")
        assert ema.exit_code == 0 and "entry state_dict_ema" in ema.output


def test_cli_finetune_reads_timm_train_py_ema(tmp_path):
    path, _, _ = _timm_train_py(tmp_path)
    result = _cli("finetune", SPEC, "-c", path, "--num-classes", CLASSES, "--weights", "ema", "--data", "digits",
                  "--epochs", "1", "--input-size", "3,16,16", "--out", tmp_path / "run", "--set",
                  "limit_train_batches=2", "--set", "batch_size=32", "--format", "safetensors")
    assert result.exit_code == 0, result.output
    assert "entry state_dict_ema" in result.output
    bad = _cli("inspect", "-m", SPEC, "--weights", "ema")
    assert bad.exit_code == 1 and "give --checkpoint" in bad.output
