"""The head finder on timm heads that are not a plain nn.Linear call (issue 14), and the head passes on them."""

import pytest
import torch
from torch import fx, nn

import netsurgeon as ns
from netsurgeon.graph.index import GraphIndex
from netsurgeon.graph.trace import trace

# smallest variants: timm Linear traced through to F.linear (mobilenetv3), 1x1 conv after pooling (dla, resnetv2)
TIMM_HEADS = [("mobilenetv3_small_050", "linear"), ("dla46_c", "conv1x1"), ("resnetv2_18", "conv1x1")]


def _classifier_path(model: nn.Module) -> str:
    classifier = model.get_classifier()
    return next(name for name, m in model.named_modules() if m is classifier)


@pytest.fixture(scope="module")
def timm_models():
    return {name: ns.load_model(f"timm:{name}", num_classes=10) for name, _ in TIMM_HEADS}


@pytest.mark.parametrize("name,kind", TIMM_HEADS)
def test_head_agrees_with_get_classifier(timm_models, name, kind):
    model = timm_models[name]
    head = GraphIndex(trace(model).gm).head()
    assert head is not None and head.kind == kind
    assert head.target == _classifier_path(model)
    assert head.out_features == 10


@pytest.mark.parametrize("name,kind", TIMM_HEADS)
def test_spinal_head_and_gru_fc_run_on_timm_heads(timm_models, name, kind):
    model = timm_models[name]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    target = _classifier_path(model)
    spinal = ns.apply(model, "spinal-head", example_input=x)
    with torch.no_grad():
        scale = max(1.0, float(model.eval()(x).abs().max()))  # random-init dla46_c logits reach ~500
    assert spinal.report.verification.max_abs_diff <= 1e-5 * scale  # warm start: equal up to float rounding
    assert [c.site for c in spinal.report.passes[0].changes] == [target]
    assert spinal.model.eval()(x).shape == (2, 10)
    gru = ns.apply(model, "gru-fc", example_input=x)
    (change,) = gru.report.passes[0].changes
    assert change.site == target and "weights zeroed" in change.after
    weight = gru.model.get_submodule(target).weight
    assert (weight >= 0).all() and (weight == 0).any()  # weight_sign: every negative weight zeroed
    assert gru.report.passes[0].keys_changed == [f"{target}.weight"]


def test_squeezenet_conv_before_pooling_is_no_head():
    model = ns.load_model("torchvision:squeezenet1_1")
    assert GraphIndex(trace(model).gm).head() is None


def test_linear_subclass_traced_through_is_named_by_its_module():
    class MyLinear(nn.Linear):
        def forward(self, x):  # not a torch.nn leaf: fx records F.linear on get_attr weights
            return nn.functional.linear(x, self.weight, self.bias)

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), MyLinear(4, 5))
    gm = trace(model).gm
    assert not any(n.op == "call_module" and n.target == "3" for n in gm.graph.nodes)
    head = GraphIndex(gm).head()
    assert (head.target, head.in_features, head.out_features) == ("3", 4, 5)


def test_conv_head_without_pooling_is_no_head():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 5, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert GraphIndex(fx.symbolic_trace(model)).head() is None


def test_gru_fc_two_layers_traced_through_get_hooks():
    class MyLinear(nn.Linear):
        def forward(self, x):
            return nn.functional.linear(x, self.weight, self.bias)

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), MyLinear(4, 6), nn.ReLU(),
                          MyLinear(6, 3))
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    result = ns.apply(model, "gru-fc", example_input=x, data=[(x, torch.tensor([0, 1, 2, 0]))])
    assert [c.site for c in result.report.passes[0].changes] == ["3", "5"]
    assert result.report.passes[0].keys_changed == ["3.weight", "5.weight"]
    assert result.report.keys_added == [] and result.report.keys_removed == []


def _tiny_volo() -> nn.Module:
    from timm.models.volo import VOLO

    torch.manual_seed(0)
    return VOLO(layers=(1, 1, 1, 1), img_size=64, patch_size=8, stem_hidden_dim=16, embed_dims=(32,) * 4,
                num_heads=(1,) * 4, num_classes=10).eval()


def test_summed_logits_take_the_one_fc_term_as_head():
    """timm VOLO's logits are head(cls) + 0.5 * aux_head(tokens).max(1)[0]: the head is `head`, as timm says."""
    model = _tiny_volo()
    head = GraphIndex(trace(model).gm).head()
    assert head is not None and head.target == _classifier_path(model) == "head"
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    result = ns.apply(model, "spinal-head", example_input=x)
    assert type(result.model) is type(model)
    assert [(c.site, c.scope) for c in result.report.passes[0].changes] == [("head", "swap")]
    assert any("also add other terms" in note for note in result.report.passes[0].notes)
    assert result.model.aux_head is not None and result.model.get_classifier() is result.model.head
    assert result.report.verification.max_abs_diff <= 1e-5 * max(1.0, float(model(x).abs().max()))
    with pytest.raises(ns.NetsurgeonError, match="cannot change the class count"):
        ns.apply(model, ("spinal-head", {"num_classes": 5}), example_input=x)


def test_a_sum_of_two_fc_terms_has_no_single_head():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.pool = nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1)
            self.a, self.b = nn.Linear(4, 5), nn.Linear(4, 5)

        def forward(self, x):
            x = self.pool(self.body(x)).flatten(1)
            return self.a(x) + self.b(x)

    assert GraphIndex(fx.symbolic_trace(TwoHeads())).head() is None


class _MaskedHead(nn.Module):
    """Like timm Hiera: ``forward(x, mask=None)`` applies the head only when no mask is given."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
        self.head = nn.Linear(4, 3)

    def forward(self, x, mask=None):
        x = self.body(x)
        if mask is None:
            x = self.head(x)
        return x


def test_the_graph_is_of_the_forward_called_with_the_input_only():
    """A placeholder for ``mask`` (never None) would trace the masked path: no head, and gru-fc would zero
    the body's last Linear instead of the classifier."""
    model = _MaskedHead().eval()
    assert GraphIndex(trace(model).gm).head().target == "head"
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    gru = ns.apply(model, ("gru-fc", {"mode": "weight_sign"}), example_input=x)
    assert [c.site for c in gru.report.passes[0].changes] == ["head"]
    assert gru.model(x, mask=torch.ones(1)).shape == (2, 4)  # the other path still works on the result


def test_timm_hiera_traces_plainly_and_its_head_is_found():
    from timm.models.hiera import Hiera

    torch.manual_seed(0)
    model = Hiera(img_size=(64, 64), embed_dim=16, num_heads=1, stages=(1, 1, 1, 1), num_classes=10).eval()
    traced = trace(model)
    assert traced.rung.value == "fx" and traced.failures == []  # 'len' was only on the masked path
    assert GraphIndex(traced.gm).head().target == _classifier_path(model) == "head.fc"
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    spinal = ns.apply(model, "spinal-head", example_input=x)
    assert [(c.site, c.scope) for c in spinal.report.passes[0].changes] == [("head.fc", "swap")]
    assert type(spinal.model) is Hiera and spinal.report.verification.ok
