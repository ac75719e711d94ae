"""``torch.export`` programs (``model.pt2``) with the provenance inside, a dynamic batch axis where the model
allows one, and a round-trip check: the file is reloaded with ``torch.export.load`` and must agree with the
eager model, as ONNX must with onnxruntime."""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from netsurgeon.errors import ArtifactError, ExportError
from netsurgeon.export.onnx import Parity
from netsurgeon.validate import flatten_output

__all__ = ["PROVENANCE_FILE", "pt2_parity", "read_pt2_provenance", "to_exported_program", "write_pt2"]

#: the extra file of the .pt2 archive that holds the provenance (the same JSON as the safetensors header)
PROVENANCE_FILE = "netsurgeon"


def to_exported_program(model: nn.Module, example: torch.Tensor) -> tuple[torch.export.ExportedProgram, bool]:
    """Export ``model`` (an :func:`~netsurgeon.export.onnx.inference_copy`) with a dynamic batch axis, or, when
    the model fixes its batch size, a static one; returns (program, whether the batch axis is dynamic)."""
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dynamic in (True, False):
            shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic else None
            try:
                return torch.export.export(model, (example,), dynamic_shapes=shapes), dynamic
            except Exception as err:  # torch.export raises many types
                errors.append(f"{'dynamic' if dynamic else 'static'} batch: {type(err).__name__}: "
                              f"{(str(err).strip().splitlines() or [''])[0][:160]}")
    raise ExportError("torch.export failed (" + "; ".join(errors) + ").")


def write_pt2(program: torch.export.ExportedProgram, path: Path, record: dict) -> None:
    # through a buffer: torch.export names files by their suffix, and the staged temporary's is not .pt2
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={PROVENANCE_FILE: json.dumps(record, sort_keys=True)})
    path.write_bytes(buffer.getvalue())


def read_pt2_provenance(path: Path) -> dict | None:
    """The provenance a ``.pt2`` archive carries, read from the zip alone (None when it carries none).

    ``torch.export.load`` unpickles parts of an archive with ``weights_only=False``, so a file netsurgeon
    did not just write is never loaded: ``verify`` checks its provenance only."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith(f"/extra/{PROVENANCE_FILE}")), None)
            text = archive.read(name).decode("utf-8") if name else ""
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError, KeyError) as err:
        raise ArtifactError(f"{path.name} could not be read as a .pt2 archive (truncated or corrupt?): "
                            f"{type(err).__name__}; re-export it.") from None
    try:
        return json.loads(text) if text else None
    except (ValueError, RecursionError):
        return None


def _load_own(path: Path) -> torch.export.ExportedProgram:
    """The program netsurgeon has just written to ``path`` (trusted: see :func:`read_pt2_provenance`)."""
    try:
        return torch.export.load(io.BytesIO(Path(path).read_bytes()))
    except Exception as err:  # fails in many ways
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise ExportError(f"the .pt2 program just written could not be reloaded by torch.export.load: {first}; "
                          "nothing was written.") from None


@torch.no_grad()
def pt2_parity(model: nn.Module, path: Path, example: torch.Tensor, dynamic: bool = True) -> Parity:
    """Compare ``model`` (an inference copy) with the program netsurgeon just wrote to ``path``, reloaded, on
    the example batch and, when the batch axis is dynamic, on a batch of another size."""
    reloaded = _load_own(path).module()
    batches = [example] + ([torch.cat([example, example[:1]])] if dynamic else [])
    worst, scale, finite = 0.0, 0.0, True
    for batch in batches:
        expected, got = _leaves(model(batch)), _leaves(reloaded(batch))
        if len(expected) != len(got) or any(a.shape != b.shape for a, b in zip(expected, got, strict=False)):
            raise ExportError("the reloaded .pt2 program's outputs differ in structure or shape from the eager "
                              "model's.")
        for a, b in zip(expected, got, strict=True):
            if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())):
                finite = False
                continue
            if a.numel():
                worst = max(worst, float((a.float() - b.float()).abs().max()))
                scale = max(scale, float(a.float().abs().max()))
    return Parity(worst if finite else float("nan"), scale, finite)


def _leaves(out: object) -> list[torch.Tensor]:
    return [v for v in flatten_output(out)[0] if isinstance(v, torch.Tensor)]
