"""pd-relu: exact forward, exact pseudo-derivative backward, re-tracing, compile, export and reload (§3.3)."""

import collections
import json
import warnings

import onnx
import pytest
import torch
from torch import nn

import netsurgeon as ns
from netsurgeon.errors import ConfigError, NoMatchError
from netsurgeon.export.artifact import load_artifact
from netsurgeon.graph.index import GraphIndex
from netsurgeon.graph.trace import trace
from netsurgeon.layers import PDReLU
from tests.conftest import state_equal

SPECIAL = torch.tensor([0.0, -0.0, 1e-45, -1e-45, 3e38, -3e38, float("inf"), float("-inf"), float("nan"), 6.0, 5.999])
FAMILIES = {
    "leaky": {"alpha": 0.1},
    "exp": {"alpha": 1.0, "tau": 1.0},
    "sigmoid": {"alpha": 0.5, "tau": 2.0},
    "ramp": {"alpha": 0.7, "width": 1.5},
}


def expected_h(x: torch.Tensor, family: str, p: dict) -> torch.Tensor:
    """The spec's table, written out independently of the implementation."""
    if family == "leaky":
        return torch.full_like(x, p["alpha"])
    if family == "exp":
        return p["alpha"] * torch.exp(x / p["tau"])
    if family == "sigmoid":
        return 2 * p["alpha"] * torch.sigmoid(x / p["tau"])
    return p["alpha"] * torch.clamp(1 + x / p["width"], min=0)


def sample(dtype=torch.float32) -> torch.Tensor:
    x = torch.cat([SPECIAL, torch.randn(500) * 4, torch.zeros(10)]).to(dtype)
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("family", [*FAMILIES, "callable"])
def test_forward_is_bit_identical_to_relu(family, dtype):
    x = sample(dtype)
    params = FAMILIES.get(family, {})
    relu = PDReLU(family, fn=(lambda t: torch.sigmoid(t)) if family == "callable" else None, **params)
    y = relu(x)
    assert torch.equal(y.isnan(), torch.relu(x).isnan())
    assert torch.equal(torch.nan_to_num(y), torch.nan_to_num(torch.relu(x)))
    assert torch.equal(torch.signbit(y[~y.isnan()]), torch.signbit(torch.relu(x)[~y.isnan()]))  # ±0
    six = PDReLU(family, relu6=True, fn=(lambda t: torch.sigmoid(t)) if family == "callable" else None, **params)
    assert torch.equal(torch.nan_to_num(six(x)), torch.nan_to_num(nn.ReLU6()(x)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_backward_is_exactly_upstream_times_g(family, dtype):
    x = sample(dtype).requires_grad_()
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(5)).to(dtype)
    PDReLU(family, **FAMILIES[family])(x).backward(upstream)
    xd = x.detach()
    g = torch.where(xd > 0, torch.ones((), dtype=dtype), expected_h(xd, family, FAMILIES[family]))
    expected = upstream * g
    if family == "leaky" and dtype == torch.bfloat16:  # grad * alpha rounded once, not via a bf16 alpha
        expected = torch.where(xd > 0, upstream, (upstream.double() * FAMILIES[family]["alpha"]).to(dtype))
    assert torch.equal(torch.nan_to_num(x.grad), torch.nan_to_num(expected))


def test_relu6_keeps_zero_gradient_above_six_and_callable_family():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 5.9, 6.0, 7.0], requires_grad=True)
    PDReLU(relu6=True)(x).sum().backward()
    assert x.grad.tolist() == pytest.approx([0.1, 0.1, 0.1, 1, 1, 0, 0])
    x.grad = None
    PDReLU("callable", fn=lambda t: 0.25 * torch.ones_like(t))(x).sum().backward()
    assert x.grad.tolist() == [0.25, 0.25, 0.25, 1, 1, 1, 1]


def test_prototype_gradient_values():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    PDReLU()(x).sum().backward()
    assert x.grad.tolist() == pytest.approx([0.1, 0.1, 0.1, 1, 1])


def test_gradcheck_fails_by_design():
    x = torch.tensor([-1.5, -0.3, 0.4, 2.0], dtype=torch.float64, requires_grad=True)
    assert not torch.autograd.gradcheck(PDReLU(), (x,), raise_exception=False)
    assert torch.autograd.gradcheck(nn.ReLU(), (x,), raise_exception=False)  # the check itself works


@pytest.mark.parametrize(("fn", "message"), [
    (lambda t: t + 2, r"values in \[0, 1\]"),
    (lambda t: t.sum(), "shaped like its input"),
    ("mymodule.h", "never imports"),
])
def test_bad_callables_are_rejected(fn, message):
    with pytest.raises(ConfigError, match=message):
        ns.PseudoDerivativeReLU(family="callable", fn=fn)


def test_bad_parameters_are_rejected():
    with pytest.raises(ConfigError, match="alpha must be between 0 and 1"):
        ns.get_pass("pd-relu").make_config({"alpha": "1.5"})
    with pytest.raises(ConfigError, match="family='bogus' is invalid"):
        ns.get_pass("pd-relu").make_config({"family": "bogus"})
    with pytest.raises(ConfigError, match="needs fn"):
        ns.PseudoDerivativeReLU(family="callable")


def _train_step_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(11)
    return model.train()(x)


@pytest.mark.parametrize("spec", ["netsurgeon:tiny_convnet", "netsurgeon:tiny_resnet", "torchvision:resnet18"])
def test_model_outputs_equal_in_eval_and_train_and_every_site_replaced(spec):
    model = ns.load_model(spec)
    x = torch.randn(4, 3, 32, 32)
    sites = GraphIndex(trace(model).gm).sites()
    result = ns.apply(model, ns.PseudoDerivativeReLU(), example_input=x)
    pd = result.model
    assert result.report.verification.outputs_equal
    with torch.no_grad():
        assert torch.equal(pd.eval()(x), model.eval()(x))
        assert torch.equal(_train_step_output(pd, x), _train_step_output(model, x))  # dropout, BN batch stats
    assert sum(isinstance(m, PDReLU) for m in pd.modules()) == len(sites)
    assert GraphIndex(trace(pd).gm).sites() == []  # no nn.ReLU / F.relu / .relu() site remains
    assert not any(isinstance(m, nn.ReLU) for m in pd.modules())  # shared modules are called by no site
    assert state_equal(pd.state_dict(), model.state_dict())


def test_shared_relu_is_split_per_site():
    result = ns.apply(ns.load_model("torchvision:resnet18"), "pd-relu", example_input=torch.randn(2, 3, 32, 32))
    names = {n for n, m in result.model.named_modules() if isinstance(m, PDReLU)}
    assert {"layer1.0.pd_relu", "layer1.0.pd_relu_1"} <= names
    modules = [result.model.get_submodule(n) for n in names]
    assert len({id(m) for m in modules}) == 17


def test_relus_inside_timm_leaves_are_reached():
    """timm vgg16 traces only with timm's leaves (ConvMlp): its two classifier ReLUs are nested sites."""
    model = ns.load_model("timm:vgg16")
    result = ns.apply(model, "pd-relu", input_size=(3, 32, 32))
    assert result.report.rung == "fx+timm-leaves"
    nested = [c for c in result.report.passes[0].changes if "inside a leaf" in c.before]
    assert len(nested) == 2 and result.report.verification.outputs_equal
    assert isinstance(result.model.get_submodule(nested[0].site), PDReLU)


def _input_grad(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_()
    model.eval()(x).square().sum().backward()
    return x.grad


def test_pseudo_derivative_reaches_the_model_gradient_and_survives_retracing():
    model = ns.load_model("netsurgeon:tiny_resnet")
    x = torch.randn(2, 3, 32, 32)
    pd = ns.apply(model, ns.PseudoDerivativeReLU(alpha=0.3), example_input=x).model
    g_pd, g_relu = _input_grad(pd, x), _input_grad(model, x)
    assert not torch.allclose(g_pd, g_relu)
    retraced = trace(nn.Sequential(pd)).gm  # the tracer must not trace through PDReLU (A.3)
    assert sum(isinstance(m, PDReLU) for m in retraced.modules()) == 7
    assert torch.equal(_input_grad(retraced, x), g_pd)
    plain = torch.fx.symbolic_trace(nn.Sequential(pd))  # a foreign tracer records pd_relu (fx.wrap): kept
    assert torch.equal(_input_grad(plain, x), g_pd)


@pytest.mark.slow
def test_torch_compile_gives_the_same_gradients():
    model = ns.load_model("netsurgeon:tiny_resnet")
    x = torch.randn(2, 3, 32, 32)
    pd = ns.apply(model, ns.PseudoDerivativeReLU(family="exp", alpha=0.5), example_input=x).model
    compiled = torch.compile(pd)
    assert torch.allclose(_input_grad(compiled, x), _input_grad(pd, x), atol=1e-5)


def test_torch_compile_aot_eager_keeps_the_custom_backward():
    model = ns.load_model("netsurgeon:tiny_convnet")
    x = torch.randn(2, 3, 32, 32)
    pd = ns.apply(model, ns.PseudoDerivativeReLU(), example_input=x).model
    compiled = torch.compile(pd, backend="aot_eager")
    assert torch.equal(_input_grad(compiled, x), _input_grad(pd, x))
    assert not torch.equal(_input_grad(pd, x), _input_grad(model, x))


def _saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.train()(x).sum().backward()
    return sum(storages.values())


def test_leaky_stores_no_more_for_backward_than_relu_and_exp_stores_the_input():
    model = ns.load_model("netsurgeon:tiny_resnet")
    x = torch.randn(8, 3, 32, 32)
    relu = _saved_bytes(model, x)
    leaky = _saved_bytes(ns.apply(model, "pd-relu", example_input=x).model, x)
    exp = _saved_bytes(ns.apply(model, ns.PseudoDerivativeReLU(family="exp"), example_input=x).model, x)
    assert leaky <= relu < exp


def test_include_and_exclude_select_sites():
    model = ns.load_model("torchvision:resnet18")
    x = torch.randn(2, 3, 32, 32)
    only = ns.apply(model, ns.PseudoDerivativeReLU(include=("layer1.*",), exclude=("*@1",)), example_input=x)
    assert [c.site for c in only.report.passes[0].changes] == ["layer1.0.relu", "layer1.1.relu"]
    with pytest.raises(NoMatchError, match="matched no ReLU site"):
        ns.apply(model, ns.PseudoDerivativeReLU(include=("nothing*",)), example_input=x)


def _op_histogram(path) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_onnx_ops_equal_the_original_and_reload_brings_the_pseudo_derivative_back(tmp_path):
    model = ns.load_model("netsurgeon:tiny_resnet")
    x = torch.randn(2, 3, 32, 32)
    ns.export(model, tmp_path / "orig", formats=["onnx"])
    result = ns.apply(model, ns.PseudoDerivativeReLU(alpha=0.2), example_input=x)
    exported = ns.export(result.model, tmp_path / "pd", report=result.report)
    assert exported.onnx_max_abs_diff <= exported.onnx_tolerance
    assert _op_histogram(tmp_path / "pd" / "model.onnx") == _op_histogram(tmp_path / "orig" / "model.onnx")
    assert _op_histogram(tmp_path / "pd" / "model.onnx")["Relu"] == 7
    reloaded = ns.load_model(tmp_path / "pd" / "model.safetensors")
    assert sum(isinstance(m, PDReLU) and m.alpha == 0.2 for m in reloaded.modules()) == 7
    assert torch.equal(_input_grad(reloaded, x), _input_grad(result.model, x))


def test_callable_family_reloads_only_with_the_function_given_back(tmp_path):
    def h(t: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.sigmoid(t)

    model = ns.load_model("netsurgeon:tiny_convnet")
    x = torch.randn(2, 3, 32, 32)
    result = ns.apply(model, ns.PseudoDerivativeReLU(family="callable", fn=h), example_input=x)
    ns.export(result.model, tmp_path, formats=["safetensors"], report=result.report)
    with pytest.raises(ConfigError, match="never imports"):
        ns.load_model(tmp_path / "model.safetensors")
    reloaded = load_artifact(tmp_path / "model.safetensors", overrides={"pd-relu": {"fn": h}})
    assert torch.equal(_input_grad(reloaded, x), _input_grad(result.model, x))


def test_cli_apply_pd_relu_with_set_options(tmp_path):
    from typer.testing import CliRunner

    from netsurgeon.cli import app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = CliRunner().invoke(app, ["apply", "pd-relu", "-m", "netsurgeon:tiny_resnet", "--set", "family=exp",
                                          "--set", "alpha=0.5", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["report"]
    assert report["passes"][0]["config"]["family"] == "exp" and report["passes"][0]["config"]["alpha"] == 0.5
    assert report["verification"]["outputs_equal"] and len(report["passes"][0]["changes"]) == 7


def test_relu6_sites_are_opt_in():
    model = ns.load_model("torchvision:mobilenet_v2")
    x = torch.randn(2, 3, 32, 32)
    with pytest.warns(ns.NoEffectWarning):
        ns.apply(model, "pd-relu", example_input=x)
    result = ns.apply(model, ns.PseudoDerivativeReLU(relu6=True), example_input=x)
    modules = [m for m in result.model.modules() if isinstance(m, PDReLU)]
    assert len(modules) == 35 and all(m.relu6 for m in modules) and result.report.verification.outputs_equal
