"""``torch.export`` programs (``model.pt2``) with the provenance inside, a dynamic batch axis where the model
allows one, and a round-trip check: the file is reloaded with ``torch.export.load`` and must agree with the
eager model, as ONNX must with onnxruntime."""

from __future__ import annotations

import hashlib
import io
import json
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from netsurgeon.errors import ArtifactError, ExportError
from netsurgeon.export.onnx import Parity
from netsurgeon.validate import NotRegularFileError, flatten_output, open_regular

__all__ = ["CONTENT_FILE", "PROVENANCE_FILE", "check_pt2_content", "pt2_parity", "read_pt2_provenance",
           "to_exported_program", "write_pt2"]

#: the extra file of the .pt2 archive that holds the provenance (the same JSON as the safetensors header)
PROVENANCE_FILE = "netsurgeon"
#: the extra file that holds the sha256 of the archive's program and tensors (``content_digest``)
CONTENT_FILE = "netsurgeon-content"
#: the parts of the archive the digest covers: the weights, the constants and the program (not the extra files,
#: nor the sample inputs, a pickle; nor torch's per-save serialization id)
_CONTENT_PARTS = ("data/weights/", "data/constants/", "models/")


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


def _content_digest(archive: zipfile.ZipFile) -> tuple[str, int]:
    """sha256 over the archive's weights, constants and program (each member's name below the archive's top
    folder, then its bytes, in name order), and how many members it covers. The bytes are hashed, never
    decoded: nothing of the archive is unpickled."""
    digest, count = hashlib.sha256(), 0
    for name in sorted(archive.namelist()):
        inner = name.partition("/")[2]
        if inner.startswith(_CONTENT_PARTS) and not name.endswith("/"):
            digest.update(inner.encode() + b"\0")
            with archive.open(name) as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):  # noqa: B023 - fh is this iteration's
                    digest.update(chunk)
            count += 1
    return digest.hexdigest(), count


def write_pt2(program: torch.export.ExportedProgram, path: Path, record: dict) -> None:
    """The program with the provenance and the digest of its content (:func:`check_pt2_content` checks it):
    saved once to measure the content, then with the digest beside it (torch.export's save is deterministic
    but for the extra files; a difference is an error, never a wrong digest)."""
    extra = {PROVENANCE_FILE: json.dumps(record, sort_keys=True)}
    # through a buffer: torch.export names files by their suffix, and the staged temporary's is not .pt2
    first = io.BytesIO()
    torch.export.save(program, first, extra_files=extra)
    with zipfile.ZipFile(first) as archive:
        sha256, count = _content_digest(archive)
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={**extra, CONTENT_FILE: json.dumps({"sha256": sha256,
                                                                                       "count": count})})
    with zipfile.ZipFile(buffer) as archive:
        if _content_digest(archive) != (sha256, count):
            raise ExportError("torch.export.save wrote the program differently twice, so its content digest "
                              "cannot be recorded; nothing was written (export without pt2).")
    path.write_bytes(buffer.getvalue())


def check_pt2_content(path: Path) -> str | None:
    """Check a ``.pt2`` archive's weights, constants and program against the digest export recorded in it,
    reading the zip alone (nothing unpickled); returns the digest, or None for an archive written before
    netsurgeon recorded one. A mismatch is an ArtifactError: the archive was changed after export."""
    try:
        with open_regular(path) as fh, zipfile.ZipFile(fh) as archive:
            name = next((n for n in archive.namelist() if n.endswith(f"/extra/{CONTENT_FILE}")), None)
            if name is None:
                return None
            recorded = json.loads(archive.read(name).decode("utf-8"))
            sha256, count = _content_digest(archive)
    except NotRegularFileError as err:
        raise ArtifactError(f"{err}; remove it, or re-export.") from None
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ArtifactError(f"{path.name} could not be read as a .pt2 archive (truncated or corrupt?): "
                            f"{type(err).__name__}; re-export it.") from None
    if not isinstance(recorded, dict) or recorded.get("sha256") != sha256 or recorded.get("count") != count:
        raise ArtifactError(f"{path.name}: the program and tensors in the archive do not match the sha256 digest "
                            "recorded at export (changed or damaged after export); re-export it.")
    return sha256


def read_pt2_provenance(path: Path) -> dict | None:
    """The provenance a ``.pt2`` archive carries, read from the zip alone (None when it carries none).

    ``torch.export.load`` unpickles parts of an archive with ``weights_only=False``, so a file netsurgeon
    did not just write is never loaded: ``verify`` checks its provenance only."""
    try:
        with open_regular(path) as fh, zipfile.ZipFile(fh) as archive:
            name = next((n for n in archive.namelist() if n.endswith(f"/extra/{PROVENANCE_FILE}")), None)
            text = archive.read(name).decode("utf-8") if name else ""
    except NotRegularFileError as err:
        raise ArtifactError(f"{err}; remove it, or re-export.") from None
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
