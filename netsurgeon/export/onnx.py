"""ONNX export with the provenance in ``metadata_props``, a dynamic batch axis, and a parity check."""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import logging
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from netsurgeon.errors import ExportError
from netsurgeon.validate import flatten_output

__all__ = ["PARITY_ATOL", "Parity", "onnx_parity", "to_onnx_proto", "write_onnx"]

#: float32 parity bound: max |eager - onnxruntime| <= PARITY_ATOL * max(1, max |eager output|).
#: An absolute 1e-4 asks float32 (about 7 significant digits) for more than it has once outputs are
#: large: a randomly initialised ResNet-50 whose post-add ReLUs are erased has logits near 840, where
#: one rounding step is already 1e-4. Below unit scale the bound is the plain absolute 1e-4.
PARITY_ATOL = 1e-4
log = logging.getLogger(__name__)


def inference_copy(model: nn.Module) -> nn.Module:
    """A copy in eval mode where training-only modules are swapped for the plain op they compute."""
    model = copy.deepcopy(model).eval()
    for name, module in list(model.named_modules()):
        swap = getattr(module, "netsurgeon_export_module", None)
        if name and callable(swap):
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, swap())
    return model


_REGISTRY_LOCK = threading.Lock()


@functools.cache
def _torchlib_registry(build, registry_cls: type, opset_version: int):
    return build(registry_cls, opset_version=opset_version)


@contextlib.contextmanager
def _torchlib_registry_built_once():
    """Within this block, the dynamo exporter gets a copy of one aten->ONNX registry per opset instead of building
    it anew: ``torch.onnx.export`` rebuilds it on every call (it compiles some 500 onnxscript functions from their
    source, about a third of a small model's export), though it depends on the opset alone. Each export still gets
    its own copy (an exporter given a custom translation table adds to it). Where torch's exporter no longer has
    this shape, the export simply runs as it is."""
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:
        yield
        return
    registry_cls = getattr(_registration, "ONNXRegistry", None)
    original = vars(registry_cls).get("from_torchlib") if isinstance(registry_cls, type) else None
    if not isinstance(original, classmethod):
        yield
        return
    build = original.__func__

    def from_torchlib(cls, *args, **kwargs):
        if cls is not registry_cls or args or set(kwargs) != {"opset_version"}:
            return build(cls, *args, **kwargs)
        shared = _torchlib_registry(build, cls, kwargs["opset_version"])
        fresh = copy.copy(shared)
        fresh.functions = {target: list(decomps) for target, decomps in shared.functions.items()}
        return fresh

    with _REGISTRY_LOCK:
        registry_cls.from_torchlib = classmethod(from_torchlib)
        try:
            yield
        finally:
            registry_cls.from_torchlib = original


def to_onnx_proto(model: nn.Module, example: torch.Tensor):
    """Export ``model`` (an :func:`inference_copy`) with the dynamo exporter, falling back to the
    TorchScript one; returns (ModelProto, exporter name)."""
    import onnx

    errors = []
    quiet = contextlib.redirect_stdout(io.StringIO())
    with warnings.catch_warnings(), quiet:
        warnings.simplefilter("ignore")
        try:
            batch = torch.export.Dim("batch", min=1)
            with _torchlib_registry_built_once():
                program = torch.onnx.export(model, (example,), None, dynamo=True, verbose=False,
                                            input_names=["input"], output_names=["logits"],
                                            dynamic_shapes=({0: batch},))
            return program.model_proto, "dynamo"
        except Exception as err:  # the exporter raises many types
            errors.append(f"dynamo: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        try:
            buffer = io.BytesIO()
            torch.onnx.export(model, (example,), buffer, dynamo=False, input_names=["input"],
                              output_names=["logits"], opset_version=18,
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
            return onnx.load_from_string(buffer.getvalue()), "torchscript"
        except Exception as err:
            errors.append(f"torchscript: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    raise ExportError("ONNX export failed (" + "; ".join(errors) + ").")


def write_onnx(proto, path: Path, metadata: dict[str, str]) -> None:
    import onnx

    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(proto, str(path))


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float
    output_scale: float  # max |eager output|
    finite: bool = True  # every eager and onnxruntime output is finite (NaN never compares, so say it)

    @property
    def tolerance(self) -> float:
        return PARITY_ATOL * max(1.0, self.output_scale)

    @property
    def ok(self) -> bool:
        return self.finite and self.max_abs_diff <= self.tolerance


#: the refusal of a model whose outputs are not finite (every format's export, and verify, say it alike)
NON_FINITE = ("the model's outputs contain NaN or infinity on the export probe (a diverged fine-tune, or damaged "
              "weights?)")


@torch.no_grad()
def outputs_finite(model: nn.Module, example: torch.Tensor) -> bool:
    """Whether every output of ``model`` (an :func:`inference_copy`) on ``example`` is finite: what each export
    format and ``verify`` check first (weights can be finite while BatchNorm statistics blow outputs up)."""
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    if first is not None:  # a float16 model is probed in float16: that is where its outputs may overflow
        example = example.to(device=first.device, dtype=first.dtype)
    leaves, _ = flatten_output(model(example))
    return all(bool(torch.isfinite(t).all()) for t in leaves if isinstance(t, torch.Tensor))


@torch.no_grad()
def onnx_parity(model: nn.Module, path: Path, example: torch.Tensor) -> Parity:
    """Compare ``model`` (an :func:`inference_copy`) with onnxruntime on the example batch and on a
    batch of a different size."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    worst, scale, finite = 0.0, 0.0, True
    for batch in (example, torch.cat([example, example[:1]])):  # also checks the dynamic batch axis
        expected = model(batch).float().numpy()
        (got,) = session.run(None, {session.get_inputs()[0].name: batch.numpy()})
        if got.shape != expected.shape:
            raise ExportError(f"ONNX output shape {got.shape} differs from eager {expected.shape}.")
        if not (np.isfinite(expected).all() and np.isfinite(got).all()):
            finite = False
            continue
        worst = max(worst, float(np.abs(got - expected).max()))
        scale = max(scale, float(np.abs(expected).max()))
    return Parity(worst if finite else float("nan"), scale, finite)


def provenance_props(record: dict) -> dict[str, str]:
    return {"netsurgeon": json.dumps(record, sort_keys=True)}
