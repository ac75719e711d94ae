"""spinal-head: parameter formulas, warm start on heads in different places, the gradient highway, keys,
reload and ONNX (arXiv 2103.11373)."""

import collections

import onnx
import pytest
import torch
from torch import nn

import netsurgeon as ns
from netsurgeon.errors import ConfigError, NetsurgeonError, SurgeryError
from netsurgeon.layers import SpinalHead, spinal_param_count


def progressive_formula(d, c, w, n):
    return n * (d * w + w) + w * w * n * (n - 1) // 2 + (d + n * w) * c + c


def spinal_formula(d, c, w, n):  # S = 2, even D (the spec's closed form)
    h = d // 2
    return (h * w + w) + (n - 1) * ((h + w) * w + w) + n * w * c + c


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("d", "c", "w", "n"), [(256, 10, 64, 4), (2048, 101, 200, 4), (784, 10, 128, 4),
                                                (96, 7, 16, 1), (100, 3, 8, 6)])
def test_parameter_counts_equal_the_formulas(d, c, w, n):
    assert progressive_formula(256, 10, 64, 4) == 95_498  # the spec's worked figure
    assert n_params(SpinalHead(d, c, width=w, num_layers=n)) == progressive_formula(d, c, w, n)
    assert n_params(SpinalHead(d, c, variant="spinal", width=w, num_layers=n)) == spinal_formula(d, c, w, n)
    bn = SpinalHead(d, c, width=w, num_layers=n, batchnorm=True)
    assert n_params(bn) == progressive_formula(d, c, w, n) + 2 * w * n
    assert spinal_param_count("spinal", d, c, w, n) == spinal_formula(d, c, w, n)


def test_odd_feature_size_and_more_splits_work():
    head = SpinalHead(11, 4, variant="spinal", width=5, num_layers=5, num_splits=3)
    assert head(torch.randn(2, 11)).shape == (2, 4)
    assert n_params(head) == spinal_param_count("spinal", 11, 4, 5, 5, 3)


def _classifier_path(model: nn.Module) -> str:
    """Where the model's own API says its classifier is."""
    target = model.get_classifier() if hasattr(model, "get_classifier") else None
    if target is None:
        for attr in ("fc", "classifier"):
            target = getattr(model, attr, None)
            if target is not None:
                break
    if isinstance(target, nn.Sequential):
        target = [m for m in target if isinstance(m, nn.Linear)][-1]
    return next(name for name, m in model.named_modules() if m is target)


@pytest.mark.parametrize(("spec", "path"), [
    ("torchvision:resnet18", "fc"),
    ("torchvision:densenet121", "classifier"),
    ("torchvision:vgg11", "classifier.6"),
    ("torchvision:mobilenet_v2", "classifier.1"),
    ("timm:test_resnet", "fc"),
    ("timm:test_convnext", "head.fc"),
])
def test_warm_start_keeps_eval_logits_on_heads_in_different_places(spec, path):
    model = ns.load_model(spec).eval()
    assert _classifier_path(model) == path
    x = torch.randn(3, 3, 64, 64)
    result = ns.apply(model, ns.SpinalHeadConfig(), example_input=x)
    assert [c.site for c in result.report.passes[0].changes] == [path]
    assert isinstance(result.model.get_submodule(path), SpinalHead)
    with torch.no_grad():
        torch.testing.assert_close(result.model.eval()(x), model(x), atol=1e-5, rtol=0)
    assert result.report.passes[0].contract == "exact" and result.report.verification.ok
    assert result.report.keys_removed == [f"{path}.weight", f"{path}.bias"]  # only the replaced layer's keys
    assert all(k.startswith(path + ".") for k in result.report.keys_added)
    assert result.report.verification.state_unchanged  # the backbone is untouched


def test_feature_size_is_measured_not_read_from_attributes():
    model = ns.load_model("timm:vgg11")
    assert model.num_features == 512  # what the attribute says
    result = ns.apply(model, ns.SpinalHeadConfig(width=8), input_size=(3, 32, 32))
    assert result.model.get_submodule("head.fc").in_features == 4096  # what the classifier reads


def _highway_gradient(variant: str) -> torch.Tensor:
    head = SpinalHead(16, 3, variant=variant, width=8).eval()
    with torch.no_grad():
        for layer in head.hidden:
            layer[0].bias.fill_(-1e9)  # every hidden unit dead
    x = torch.randn(4, 16, requires_grad=True)
    head(x).sum().backward()
    return x.grad


def test_gradient_highway_progressive_but_not_spinal():
    assert _highway_gradient("progressive").abs().sum() > 0
    assert _highway_gradient("spinal").abs().sum() == 0


def test_dropout_only_in_training_and_eval_is_deterministic():
    head = SpinalHead(32, 5, width=8, input_dropout=0.5)
    x = torch.randn(8, 32)
    head.eval()
    assert torch.equal(head(x), head(x))
    head.train()
    assert not torch.equal(head(x), head(x))


def test_num_classes_change_and_classifier_replacement():
    model = ns.load_model("torchvision:vgg11")
    x = torch.randn(2, 3, 32, 32)
    result = ns.apply(model, ns.SpinalHeadConfig(num_classes=7, width=16), example_input=x)
    assert result.model(x).shape == (2, 7) and result.report.passes[0].contract == "changes-function"
    whole = ns.apply(model, ns.SpinalHeadConfig(replace="classifier", width=8, num_classes=5), example_input=x)
    assert isinstance(whole.model.get_submodule("classifier"), SpinalHead)
    assert whole.model.get_submodule("classifier").in_features == 512 * 7 * 7  # after the 7x7 adaptive pool
    assert sorted(whole.report.keys_removed) == sorted(f"classifier.{i}.{p}" for i in (0, 3, 6)
                                                       for p in ("weight", "bias"))


def test_batchnorm_head_refuses_a_training_batch_of_one():
    model = ns.load_model("netsurgeon:tiny_resnet")
    result = ns.apply(model, ns.SpinalHeadConfig(batchnorm=True, width=8), input_size=(3, 32, 32))
    with pytest.raises(NetsurgeonError, match="batch of 1"):
        result.model.train()(torch.randn(1, 3, 32, 32))
    assert result.model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_bad_configs_and_models_are_refused():
    with pytest.raises(ConfigError, match="warm_start needs variant='progressive'"):
        ns.SpinalHeadConfig(variant="spinal", warm_start=True)
    with pytest.raises(SurgeryError, match="class count unchanged"):
        ns.apply(ns.load_model("netsurgeon:tiny_resnet"), ns.SpinalHeadConfig(num_classes=3, warm_start=True))
    with pytest.raises(SurgeryError, match="convolutional"):
        ns.apply(ns.load_model("torchvision:squeezenet1_0"), "spinal-head", input_size=(3, 64, 64))


def test_reload_rebuilds_the_head_and_onnx_has_the_expected_ops(tmp_path):
    model = ns.load_model("netsurgeon:tiny_resnet")
    x = torch.randn(2, 3, 32, 32)
    result = ns.apply(model, ns.SpinalHeadConfig(num_classes=4, width=8), example_input=x)
    with torch.no_grad():  # make the head's weights distinctive so a reload that ignored them would fail
        result.model.fc.out.weight.normal_()
    exported = ns.export(result.model, tmp_path, report=result.report)
    assert exported.onnx_max_abs_diff <= exported.onnx_tolerance
    reloaded = ns.load_model(tmp_path / "model.safetensors")
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(x), result.model.eval()(x))
    ops = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node)
    assert ops["Gemm"] + ops["MatMul"] == 5 and ops["Concat"] == 4  # 4 hidden layers + output, 4 concats
