"""The result of surgery is the user's own model: same class, same methods, same train-mode behaviour.

Every registered pass on the torchvision and timm families the issue names; train-mode equality with
dropout and drop-path; timm's head API after spinal-head; artifacts that reload to the same class;
and transfer learning (a 1000-class checkpoint into a 10-class model).
"""

from __future__ import annotations

import copy
import functools
import json
import warnings

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import netsurgeon as ns
from netsurgeon.cli import app
from netsurgeon.export.artifact import read_provenance
from netsurgeon.graph.codegen import base_class
from netsurgeon.layers.pd_relu import PDReLU
from netsurgeon.models.info import get_info
from netsurgeon.registry import list_passes
from netsurgeon.testing.model_lists import KEPT_CLASS_MODELS
from netsurgeon.train import FinetuneConfig, finetune
from netsurgeon.train.components import split_auxiliary

# (spec, constructor kwargs, input side): the families the issue names, at small inputs; the same list
# feeds benchmarks/scope_share.py, which prints the share of swaps, block and root rewrites
MODELS = KEPT_CLASS_MODELS
PASSES = [spec.name for spec in list_passes()]
SLOW_MODELS = {"torchvision:vgg16_bn", "timm:vgg11",  # ~100M-parameter classifiers even at 32 px: -m slow
               "timm:densenet121"}  # timm's traces slowest (its norms read weights in forward): -m slow
# the default run keeps the VGG family through a VGG-shaped stand-in (conv stack, three-layer classifier), and
# DenseNet through torchvision:densenet121
CASES = [pytest.param(*m, id=m[0], marks=[pytest.mark.slow] if m[0] in SLOW_MODELS else []) for m in MODELS] + [
    pytest.param("netsurgeon:tiny_convnet", {}, 32, id="netsurgeon:tiny_convnet")]


@functools.lru_cache(maxsize=1)
def _model(spec: str, side: int, kwargs: str):
    torch.manual_seed(0)
    return ns.load_model(spec, num_classes=10, input_size=(3, side, side), **json.loads(kwargs))


def _data(side: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 3, side, side, generator=g), torch.arange(4) % 10) for _ in range(2)]


@pytest.mark.parametrize(("spec", "kwargs", "side"), CASES)
def test_every_pass_keeps_the_class_the_keys_and_the_contract(spec, kwargs, side):
    model = _model(spec, side, json.dumps(kwargs, sort_keys=True))
    keys = set(model.state_dict())
    for name in PASSES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ns.NoEffectWarning)
            result = ns.apply(model, name, data=_data(side))
        report = result.report
        assert isinstance(result.model, type(model)), (name, type(result.model))
        assert base_class(result.model) is type(model)
        assert set(result.model.state_dict()) == (keys - set(report.keys_removed)) | set(report.keys_added), name
        assert report.verification.ok, (name, report.verification)
        assert all(c.scope for p in report.passes for c in p.changes), name
        scopes = report.scope_counts()
        assert scopes["root"] <= 1, (name, scopes)  # root rewrites are the exception
        assert set(model.state_dict()) == keys  # the caller's model is untouched


def _train_forward(model: torch.nn.Module, x: torch.Tensor, seed: int = 0):
    model = copy.deepcopy(model).train()  # BN running stats move: keep the caller's copies clean
    torch.manual_seed(seed)
    with torch.no_grad():
        return model(x)


@pytest.fixture(scope="module")
def timm_resnet():
    torch.manual_seed(0)
    return ns.load_model("timm:resnet18", num_classes=10, input_size=(3, 32, 32), drop_rate=0.5, drop_path_rate=0.2)


def test_pd_relu_train_mode_equals_the_original_with_dropout_and_drop_path(timm_resnet):
    x = torch.randn(4, 3, 32, 32)
    result = ns.apply(timm_resnet, "pd-relu").model
    assert torch.equal(_train_forward(result, x), _train_forward(timm_resnet, x))
    assert not torch.equal(_train_forward(result, x, seed=0), _train_forward(result, x, seed=1))  # still random
    assert any(type(m).__name__ == "DropPath" for m in result.modules())


@pytest.mark.parametrize(("spec", "side"), [("torchvision:googlenet", 64), ("torchvision:mobilenet_v3_small", 32)])
def test_pd_relu_train_mode_equals_the_original_on_torchvision(spec, side):
    torch.manual_seed(0)
    model = ns.load_model(spec, num_classes=10, input_size=(3, side, side))
    x = torch.randn(2, 3, side, side)
    result = ns.apply(model, "pd-relu").model
    a, b = _train_forward(result, x), _train_forward(model, x)
    a, b = (a, b) if isinstance(a, torch.Tensor) else (tuple(a), tuple(b))  # GoogLeNet: with its aux logits
    assert type(a) is type(b) and all(torch.equal(u, v) for u, v in zip(
        a if isinstance(a, tuple) else [a], b if isinstance(b, tuple) else [b], strict=True))


def test_warm_started_spinal_head_train_mode_equals_the_original(timm_resnet):
    """With no input dropout of its own, a warm-started head adds no randomness: the model's own dropout
    and drop-path draw the same masks, and the logits match (to float rounding of the wider matmul)."""
    x = torch.randn(4, 3, 32, 32)
    result = ns.apply(timm_resnet, ns.SpinalHeadConfig(input_dropout=0.0)).model
    torch.testing.assert_close(_train_forward(result, x), _train_forward(timm_resnet, x), atol=1e-5, rtol=0)


def test_erase_relu_keeps_drop_path_alive(timm_resnet):
    x = torch.randn(4, 3, 32, 32)
    result = ns.apply(timm_resnet, "erase-relu").model
    assert not torch.equal(_train_forward(result, x, seed=0), _train_forward(result, x, seed=1))
    with torch.no_grad():
        assert torch.equal(result.eval()(x), result.eval()(x))


def test_timm_api_survives_and_head_metadata_follows_spinal_head(timm_resnet):
    x = torch.randn(2, 3, 32, 32)
    result = ns.apply(timm_resnet, ns.SpinalHeadConfig(num_classes=7)).model.eval()
    head = result.get_classifier()
    assert isinstance(head, ns.layers.SpinalHead) and head.num_classes == 7
    assert result.num_classes == 7 and result.pretrained_cfg["num_classes"] == 7
    assert timm_resnet.num_classes == 10 and timm_resnet.pretrained_cfg["num_classes"] != 7  # caller untouched
    with torch.no_grad():
        assert torch.equal(result.forward_head(result.forward_features(x)), result(x))
        assert result(x).shape == (2, 7)
        result.set_grad_checkpointing(True)
        assert result(x).shape == (2, 7)
        result.reset_classifier(5)
        assert result(x).shape == (2, 5)
    assert result.num_features == timm_resnet.num_features


@pytest.mark.parametrize("name", ["pd-relu", "erase-relu", "proportional-relu", "gru-fc"])
def test_timm_api_works_after_every_pass(timm_resnet, name):
    x = torch.randn(2, 3, 32, 32)
    result = ns.apply(timm_resnet, name).model.eval()
    with torch.no_grad():
        assert torch.equal(result.forward_head(result.forward_features(x)), result(x))
        assert result.get_classifier() is result.fc
        result.set_grad_checkpointing(True)
        result.reset_classifier(3)
        assert result(x).shape == (2, 3)


@pytest.mark.parametrize(("spec", "passes", "formats"), [
    ("torchvision:resnet18", ["erase-relu", "pd-relu"], ("safetensors", "onnx")),  # a second apply on a result
    ("torchvision:densenet121", ["pd-relu"], ("safetensors",)),  # a root rewrite (the final F.relu)
    ("timm:resnet18", ["spinal-head"], ("safetensors", "onnx")),
])
def test_artifact_reloads_to_the_same_class_and_outputs(tmp_path, spec, passes, formats):
    torch.manual_seed(0)
    model = ns.load_model(spec, num_classes=10, input_size=(3, 32, 32))
    result = model
    for name in passes:  # one pass at a time: re-applying to a kept-class result
        applied = ns.apply(result, name)
        result = applied.model
    exported = ns.export(result, tmp_path, formats=formats, report=applied.report)
    if "onnx" in formats:  # export checks parity itself (it raises past the bound); the figure is recorded
        assert exported.onnx_max_abs_diff is not None and exported.onnx_max_abs_diff <= exported.onnx_tolerance
    loaded = ns.load_model(tmp_path)
    assert type(loaded).__name__ == type(result).__name__ and base_class(loaded) is type(model)
    assert isinstance(loaded, type(model))
    assert sum(isinstance(m, PDReLU) for m in loaded.modules()) == sum(isinstance(m, PDReLU) for m in result.modules())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), result.eval()(x))
    assert set(loaded.state_dict()) == set(result.state_dict())


def test_deepcopy_keeps_provenance_and_class():
    result = ns.apply(ns.load_model("torchvision:resnet18", input_size=(3, 32, 32)), "pd-relu").model
    copied = copy.deepcopy(result)
    assert type(copied) is type(result) and get_info(copied).history[0].pass_name == "pd-relu"


# ------------------------------------------------------------------ transfer learning
def _imagenet_checkpoint(tmp_path, spec: str):
    torch.manual_seed(0)
    source = ns.load_model(spec)  # 1000 classes
    path = tmp_path / "imagenet.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    return source, path


@pytest.mark.parametrize(("spec", "head"), [("timm:resnet18", "fc"), ("torchvision:resnet18", "fc"),
                                            ("torchvision:mobilenet_v3_small", "classifier.3")])
def test_a_1000_class_checkpoint_loads_into_a_10_class_model(tmp_path, spec, head):
    source, path = _imagenet_checkpoint(tmp_path, spec)
    model = ns.load_model(spec, checkpoint=path, num_classes=10, input_size=(3, 32, 32))
    fresh = [f"{head}.bias", f"{head}.weight"]
    info = get_info(model)
    assert info.reinitialized == fresh
    own, theirs = model.state_dict(), source.state_dict()
    assert all(torch.equal(own[k], theirs[k]) for k in own if k not in fresh)  # every other weight, bit for bit
    assert own[f"{head}.weight"].shape[0] == 10
    report = ns.plan(model, "pd-relu")
    assert report.reinitialized == fresh and "re-initialised" in report.format()


def test_transfer_learning_from_the_cli_and_a_recipe_and_the_artifact_reloads(tmp_path):
    _, path = _imagenet_checkpoint(tmp_path, "timm:resnet18")
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["finetune", "timm:resnet18", "--checkpoint", str(path), "--num-classes", "10",
                                 "--data", "digits", "--epochs", "1", "--input-size", "3,32,32", "--out", str(out),
                                 "--set", "limit_train_batches=2", "--set", "limit_eval_batches=1",
                                 "--format", "safetensors"])
    assert result.exit_code == 0, result.output
    record = read_provenance(out)
    assert record["model"]["reinitialized"] == ["fc.bias", "fc.weight"]
    reloaded = ns.load_model(out)
    assert reloaded.get_classifier().out_features == 10 and isinstance(reloaded, type(ns.load_model("timm:resnet18")))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model:\n  name: timm:resnet18\n  checkpoint: {path}\n  num_classes: 10\n  input_size: [3, 32, 32]\n"
        "surgery:\n  - pass: pd-relu\n"
        "finetune:\n  data: digits\n  epochs: 1\n  limit_train_batches: 2\n  limit_eval_batches: 1\n"
        f"export:\n  dir: {tmp_path / 'recipe'}\n  formats: [safetensors]\nseed: 0\n")
    result = runner.invoke(app, ["run", str(recipe)])
    assert result.exit_code == 0, result.output
    again = ns.load_model(tmp_path / "recipe")
    assert get_info(again).reinitialized == ["fc.bias", "fc.weight"]
    assert sum(isinstance(m, PDReLU) for m in again.modules()) == 17


def test_split_auxiliary_reads_googlenet_and_inception_outputs():
    from torchvision.models.googlenet import GoogLeNetOutputs

    logits, aux = split_auxiliary(GoogLeNetOutputs(torch.ones(2, 3), torch.zeros(2, 3), None))
    assert torch.equal(logits, torch.ones(2, 3)) and len(aux) == 1
    assert split_auxiliary(torch.ones(2, 3))[1] == []
    with pytest.raises(ns.NetsurgeonError, match="first item is the logits"):
        split_auxiliary({"logits": torch.ones(2, 3)})


def test_finetune_trains_googlenet_auxiliary_heads_after_surgery():
    """GoogLeNet keeps its class, so train mode returns aux logits: fine-tuning trains them too."""
    torch.manual_seed(0)
    model = ns.load_model("torchvision:googlenet", num_classes=10, input_size=(3, 32, 32))
    result = ns.apply(model, "pd-relu").model
    before = result.aux1.fc2.weight.detach().clone()
    tuned = finetune(result, "digits", FinetuneConfig(epochs=1, batch_size=8, limit_train_batches=2,
                                                      limit_eval_batches=1, progress=False))
    assert isinstance(tuned.model, type(model))
    assert not torch.equal(tuned.model.aux1.fc2.weight, before)  # the auxiliary loss reached the aux head
    assert all(torch.isfinite(torch.tensor(m["train_loss"])) for m in tuned.metrics if "train_loss" in m)
