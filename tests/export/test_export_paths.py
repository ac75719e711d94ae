"""Results survive the tools the original survives: TorchScript (script, trace), torch.export with a .pt2
round trip, torch.compile, copy.deepcopy and pickling the whole module, for every pass, with eval outputs
equal to the eager result's. torch.compile runs with backend="aot_eager" here (graph capture and AOT
autograd, no C++ compiler); the inductor run is marked slow."""

import copy
import io
import subprocess
import sys
import warnings

import pytest
import torch

import netsurgeon as ns

PASSES = [p.name for p in ns.list_passes()]
PARAMS: dict[str, dict] = {"gru-fc": {"mode": "weight_sign"}}
SIZE = (3, 64, 64)
MODELS = {
    "tv-resnet18": lambda: __import__("torchvision").models.resnet18(num_classes=10),
    "tv-googlenet": lambda: __import__("torchvision").models.googlenet(num_classes=10, aux_logits=False,
                                                                       init_weights=False),
    "timm-resnet18": lambda: __import__("timm").create_model("resnet18", num_classes=10),
    "timm-dla34": lambda: __import__("timm").create_model("dla34", num_classes=10),
}
PATHS = ["script", "trace", "export-pt2", "compile", "deepcopy", "pickle"]
#: the default suite runs every path on the models with block rewrites (torchvision resnet18, timm dla34: the
#: class-keeping and dispatching forwards) and the cheap paths on all four; these cells (several seconds
#: each on a CPU) are marked slow
_SLOW = {("tv-googlenet", "export-pt2"), ("tv-googlenet", "compile"), ("timm-resnet18", "export-pt2"),
         ("timm-resnet18", "compile")}
CELLS = [pytest.param(m, p, path, marks=[pytest.mark.slow] if (m, path) in _SLOW else [], id=f"{m}-{p}-{path}")
         for m in MODELS for p in PASSES for path in PATHS]


@pytest.fixture(scope="module")
def results(shared_model):
    """(model, pass) -> (result in eval mode, probe, eager output), built once; each base model built once."""
    cache: dict = {}

    def get(model_name: str, pass_name: str):
        key = (model_name, pass_name)
        if key not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                base = shared_model(("export-paths", model_name), lambda: MODELS[model_name]().eval())
                result = ns.apply(base, (pass_name, PARAMS.get(pass_name, {})), input_size=SIZE).model.eval()
            x = torch.randn(2, *SIZE, generator=torch.Generator().manual_seed(1))
            with torch.no_grad():
                cache[key] = (result, x, result(x))
        return cache[key]

    return get


def _run_path(path: str, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if path == "script":
            scripted = torch.jit.script(model)
            buffer = io.BytesIO()
            torch.jit.save(scripted, buffer)  # a scripted model is for saving: it must save and load
            buffer.seek(0)
            return torch.jit.load(buffer)(x)
        if path == "trace":
            return torch.jit.trace(model, x)(x)
        if path == "export-pt2":
            program = torch.export.export(model, (x,))
            buffer = io.BytesIO()
            torch.export.save(program, buffer)
            buffer.seek(0)
            return torch.export.load(buffer).module()(x)
        if path == "compile":
            torch._dynamo.reset()
            return torch.compile(model, backend="aot_eager")(x)
        if path == "deepcopy":
            return copy.deepcopy(model)(x)
        buffer = io.BytesIO()
        torch.save(model, buffer)
        buffer.seek(0)
        return torch.load(buffer, weights_only=False)(x)


@pytest.mark.parametrize(("model_name", "pass_name", "path"), CELLS)
def test_result_survives_export_path(results, model_name, pass_name, path):
    model, x, expected = results(model_name, pass_name)
    out = _run_path(path, model, x)
    if hasattr(out, "logits"):  # scripted GoogLeNet returns GoogLeNetOutputs in every mode, as the original does
        out = out.logits
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("pass_name", PASSES)
def test_result_survives_inductor(results, pass_name):
    model, x, expected = results("timm-dla34", pass_name)
    torch._dynamo.reset()
    with torch.no_grad():
        out = torch.compile(model)(x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


_LOAD = """
import sys, torch
model = torch.load(sys.argv[1], weights_only=False)
x, expected = torch.load(sys.argv[2])
block = model.level3.tree1.tree2
assert type(block).__name__ == "DlaBasic" and hasattr(type(block), "_netsurgeon_base")
with torch.no_grad():
    assert torch.equal(model.eval()(x), expected)
    assert block(torch.randn(1, 128, 8, 8)).shape == (1, 128, 8, 8)
print("ok")
"""


def test_pickled_rewritten_model_loads_in_a_fresh_process(results, tmp_path):
    """torch.save(model) of rewritten blocks: the class is rebuilt from its source, not looked up by name."""
    model, x, expected = results("timm-dla34", "erase-relu")
    torch.save(model, tmp_path / "model.pt")
    torch.save((x, expected), tmp_path / "io.pt")
    done = subprocess.run([sys.executable, "-c", _LOAD, str(tmp_path / "model.pt"), str(tmp_path / "io.pt")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]
