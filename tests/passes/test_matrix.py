"""Every registered pass over every tiny model: forward, graph lint, ONNX parity, safetensors round trip."""

import warnings

import pytest
import torch
from torch import fx

import netsurgeon as ns

#: parameters a pass needs to run on the tiny models without data
PARAMS: dict[str, dict] = {"gru-fc": {"mode": "weight_sign"}}
TINY = ["netsurgeon:tiny_convnet", "netsurgeon:tiny_resnet"]
PASSES = [p.name for p in ns.list_passes()]


@pytest.mark.parametrize("spec", TINY)
@pytest.mark.parametrize("name", PASSES)
def test_pass_on_tiny_model_exports_and_reloads(tmp_path, name, spec):
    model = ns.load_model(spec)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ns.NoEffectWarning)
        result = ns.apply(model, (name, PARAMS.get(name, {})), example_input=x)
    assert result.report.verification.ok
    if isinstance(result.model, fx.GraphModule):
        result.model.graph.lint()
    with torch.no_grad():
        out = result.model.eval()(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    exported = ns.export(result.model, tmp_path, report=result.report)
    assert exported.onnx_max_abs_diff <= exported.onnx_tolerance
    reloaded = ns.load_model(tmp_path / "model.safetensors")
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(x), out)
