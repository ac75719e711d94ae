"""Issue 29's input findings that are behaviour, not refusals (those are in ``test_round3_inputs``): the
checkpoint copy the user picks, reparametrized weights export and reload, float images are not black, the
Python API's ``out_dir`` and a recipe's format names read as the CLI reads them. Each failed before the fix."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn.utils import parametrizations

import netsurgeon as ns
from netsurgeon.data import load_dataset
from netsurgeon.models.info import get_info
from tests.badinput.test_round3_inputs import _two_copies

TINY = "netsurgeon:tiny_resnet"


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_29_4_weights_raw_or_ema_picks_the_copy_of_a_lightning_checkpoint(tmp_path):
    path = _two_copies(tmp_path)  # student. (seed 0) and ema. (seed 1)
    torch.manual_seed(0)
    student = ns.load_model(TINY).state_dict()
    torch.manual_seed(1)
    ema = ns.load_model(TINY).state_dict()
    raw_model = ns.load_model(TINY, checkpoint=path, weights="raw")
    ema_model = ns.load_model(TINY, checkpoint=path, weights="ema")
    assert _equal(raw_model.state_dict(), student) and _equal(ema_model.state_dict(), ema)
    assert get_info(ema_model).checkpoint_entry == "state_dict/ema."
    report = ns.apply(raw_model, "erase-relu", input_size=(3, 16, 16)).report
    assert "entry state_dict/student.; EMA weights also present (state_dict/ema.)" in report.weights


def _reparametrized(kind: str) -> torch.nn.Module:
    model = ns.load_model(TINY, input_size=(3, 16, 16))
    if kind.startswith("hook-"):  # the older hook-based API (weight_g/weight_v, weight_orig/_u/_v)
        getattr(torch.nn.utils, kind.removeprefix("hook-"))(model.fc)
    else:
        getattr(parametrizations, kind)(model.fc)
        getattr(parametrizations, kind)(model.conv1)
    model.train()
    model(torch.randn(4, 3, 16, 16))  # a training forward moves spectral_norm's power-iteration estimate
    return model.eval()


@pytest.mark.parametrize("kind", ["weight_norm", "spectral_norm", "hook-weight_norm", "hook-spectral_norm"])
def test_29_7_reparametrized_weights_export_as_the_plain_weights_they_compute(tmp_path, kind):
    """weight_norm/spectral_norm: export writes the weights the model computes (under the architecture's own
    names), so load_model and verify accept what was written, with the same outputs; the caller's model keeps
    its parametrizations."""
    model = _reparametrized(kind)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(x)
    result = ns.apply(model, "erase-relu")
    ns.export(result.model, tmp_path / "art", formats=["safetensors", "onnx"])
    assert ns.verify_artifact(tmp_path / "art").ok
    reloaded = ns.load_model(tmp_path / "art")
    with torch.no_grad():
        assert torch.equal(reloaded(x), result.model(x))
        assert torch.equal(model(x), before)  # the input kept its parametrizations and estimate
    assert any(k.startswith("fc.") and ("parametrizations" in k or k.endswith(("_g", "_orig")))
               for k in model.state_dict())


def _float_tiffs(root: Path, values: dict[str, float]) -> None:
    for name, value in values.items():
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((4, 4), value, dtype=np.float32), mode="F").save(root / name / f"{i}.tiff")


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_29_8_float_tiffs_are_not_black(tmp_path, scale):
    """32-bit float images (PIL mode F, TIFF) in [0, 1] (or 0-255) read as their values, not as 0 or 1/255."""
    _float_tiffs(tmp_path, {"dark": 0.25 * scale, "light": 0.75 * scale})
    assert Image.open(next(tmp_path.rglob("*.tiff"))).mode == "F"
    data = load_dataset(f"folder:{tmp_path}", "train", (3, 4, 4), mean=(0.0,) * 3, std=(1.0,) * 3)
    grey = sorted({round(float(data[i][0].mean()), 4) for i in range(len(data))})
    assert grey == [0.25, 0.75]


def test_29_24_python_out_dir_expands_the_home_directory(tmp_path, monkeypatch):
    """finetune(out_dir="~/x") and export(out_dir="~/y") write under $HOME, as --out does (not into a "~" folder)."""
    from netsurgeon.train import finetune

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    model = ns.load_model(TINY, input_size=(3, 8, 8))
    finetune(model, "digits", {"epochs": 1, "batch_size": 16, "limit_train_batches": 1, "limit_eval_batches": 1,
                               "progress": False}, out_dir="~/x", formats=["safetensors"])
    ns.export(model, "~/y", formats=["safetensors"])
    assert (tmp_path / "home" / "x" / "model.safetensors").is_file()
    assert (tmp_path / "home" / "y" / "model.safetensors").is_file()
    assert not os.path.exists(tmp_path / "~")


def test_29_24_recipe_format_names_are_read_in_any_case(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{name: '{TINY}', input_size: [3, 8, 8]}}\nsurgery: [{{pass: erase-relu}}]\n"
                      f"export: {{dir: '{tmp_path / 'out'}', formats: [ONNX, Safetensors]}}\n")
    spec = ns.Recipe.from_yaml(recipe)
    assert spec.export.formats == ("onnx", "safetensors")
