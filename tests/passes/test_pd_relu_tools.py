"""pd-relu through other tools: every fx tracer keeps the pseudo derivative; TorchScript keeps the forward
bit for bit and refuses training (it cannot carry the custom backward)."""

import pytest
import torch
from torch import nn

import netsurgeon as ns
from netsurgeon.layers import PDReLU


@pytest.fixture(scope="module")
def pd_and_plain():
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    pd = ns.apply(model, ns.PseudoDerivativeReLU(alpha=0.3), example_input=x).model.eval()
    return model, pd, x


def _input_grad(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_()
    out = model(x)
    out = next(iter(out.values())) if isinstance(out, dict) else out
    out.square().sum().backward()
    return x.grad


def _tracers():
    from timm.models import get_graph_node_names
    from timm.models._features_fx import create_feature_extractor as timm_extractor
    from torchvision.models.feature_extraction import create_feature_extractor as tv_extractor
    from torchvision.models.feature_extraction import get_graph_node_names as tv_names

    return {
        "symbolic_trace": torch.fx.symbolic_trace,
        "timm-fx": lambda m: timm_extractor(m, [get_graph_node_names(m)[1][-1]]),
        "torchvision-fx": lambda m: tv_extractor(m, [tv_names(m)[1][-1]]),
    }


@pytest.mark.parametrize("tracer", ["symbolic_trace", "timm-fx", "torchvision-fx"])
def test_fx_tracers_keep_the_pseudo_derivative(pd_and_plain, tracer):
    model, pd, x = pd_and_plain
    g_pd, g_relu = _input_grad(pd, x), _input_grad(model, x)
    assert not torch.allclose(g_pd, g_relu)
    traced = _tracers()[tracer](pd).eval()
    assert torch.equal(_input_grad(traced, x), g_pd)


def test_pd_relu_alone_after_symbolic_trace_has_its_gradient():
    traced = torch.fx.symbolic_trace(nn.Sequential(nn.Identity(), PDReLU(alpha=0.25)))
    x = torch.tensor([-2.0, -0.5, 0.0, 1.0], requires_grad=True)
    traced(x).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.25, 0.25, 0.25, 1.0]))


def test_scripted_forward_is_bit_identical_and_training_is_refused(pd_and_plain):
    _, pd, x = pd_and_plain
    scripted = torch.jit.script(pd)
    with torch.no_grad():
        assert torch.equal(scripted(x), pd(x))
    special = torch.tensor([-0.0, 0.0, float("inf"), -float("inf"), float("nan"), 7.0, -1.0])
    for relu6 in (False, True):
        layer, ref = PDReLU(relu6=relu6), (nn.ReLU6() if relu6 else nn.ReLU())
        got, want = torch.jit.script(layer)(special), ref(special)
        assert torch.equal(got.view(torch.int32), want.view(torch.int32))  # signed zeros and NaN bits too
    scripted.train()
    with pytest.raises(torch.jit.Error, match="TorchScript cannot carry the pseudo-derivative"):
        scripted(x.clone().requires_grad_())
    with torch.no_grad():
        scripted(x)  # train mode without grad (BatchNorm statistics) still runs


def test_callable_family_refuses_fx_tracing():
    layer = PDReLU(family="callable", fn=lambda t: torch.full_like(t, 0.5))
    with pytest.raises(ns.NetsurgeonError, match="cannot be traced by torch.fx"):
        torch.fx.symbolic_trace(nn.Sequential(layer))


def _timm_fx_model(model: nn.Module) -> nn.Module:
    """What timm's ``tests/test_models.py::_create_fx_model`` builds (eval): torchvision's feature extractor with
    timm's no-trace leaves and functions, returning the last node."""
    from timm.models import get_notrace_functions, get_notrace_modules
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    kwargs = {"leaf_modules": get_notrace_modules(), "autowrap_functions": get_notrace_functions(),
              "param_shapes_constant": True}
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=kwargs)
    return create_feature_extractor(model, train_return_nodes=[train_nodes[-1]], eval_return_nodes=[eval_nodes[-1]],
                                    tracer_kwargs=kwargs)


@pytest.mark.parametrize("name", ["test_resnet", "test_byobnet", "resnet18", "regnetx_002"])
def test_29_17_timm_fx_then_torchscript_runs_a_pd_relu_result(name):
    """timm's ``test_model_forward_fx_torchscript`` on a pd-relu result: fx trace, script, one forward (issue 29
    item 17: scripting failed on ``pd_relu``'s annotations); the outputs are the original model's."""
    import timm

    torch.manual_seed(0)
    with timm.layers.set_scriptable(True):
        model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    result = ns.apply(model, "pd-relu", example_input=x).model.eval()
    scripted = torch.jit.script(_timm_fx_model(result))
    with torch.no_grad():
        got = tuple(scripted(x).values())[0]
        assert torch.equal(got, model(x))
    with pytest.raises(torch.jit.Error, match="TorchScript cannot carry the pseudo-derivative"):
        scripted(x.clone().requires_grad_())
