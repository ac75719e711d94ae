"""Shipping a modified model: ``export`` writes the artifacts, ``verify_artifact`` checks them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from netsurgeon.atomic import check_not_inputs, expand_out, staged_files
from netsurgeon.errors import ArtifactError, ConfigError, ExportError
from netsurgeon.export.artifact import (
    file_tensors,
    load_artifact,
    provenance,
    read_provenance,
    tensor_record,
    write_safetensors,
)
from netsurgeon.export.header import header_problems
from netsurgeon.export.onnx import (
    NON_FINITE,
    inference_copy,
    onnx_parity,
    outputs_finite,
    provenance_props,
    to_onnx_proto,
    write_onnx,
)
from netsurgeon.export.pt2 import (
    check_pt2_content,
    pt2_parity,
    read_pt2_provenance,
    to_exported_program,
    write_pt2,
)
from netsurgeon.history import parse_history
from netsurgeon.models.info import copy_model, get_info, probe_input
from netsurgeon.registry import registered_contract
from netsurgeon.report import SurgeryReport
from netsurgeon.validate import check_input_channels, check_input_size, check_model_tensors

__all__ = ["DEFAULT_FORMATS", "FORMATS", "ExportResult", "VerifyResult", "artifact_files", "export", "parse_formats",
           "plain_weights", "verify_artifact"]

#: every format, named by its file's extension (model.safetensors, model.onnx, model.pt2)
FORMATS = ("safetensors", "onnx", "pt2")
DEFAULT_FORMATS = ("safetensors", "onnx")


@dataclass
class ExportResult:
    files: list[str]
    onnx_max_abs_diff: float | None = None
    onnx_tolerance: float | None = None
    onnx_exporter: str | None = None
    pt2_max_abs_diff: float | None = None
    pt2_dynamic_batch: bool | None = None


@dataclass
class VerifyResult:
    artifact: str
    onnx: str | None
    onnx_max_abs_diff: float | None
    onnx_tolerance: float | None
    passes: list[str]
    ok: bool
    messages: list[str] = field(default_factory=list)


def parse_formats(formats: str | Sequence[str]) -> list[str]:
    """``"safetensors,onnx"`` or a list of names -> validated format names, lower-cased, each once, in the
    order given (``"onnx,ONNX"`` is ``["onnx"]``)."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    if not all(isinstance(f, str) for f in items):
        raise ConfigError(f"export formats are names ({', '.join(FORMATS)}), got {list(items)!r:.80}.")
    names = list(dict.fromkeys(f.strip().lower() for f in items if f.strip()))
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise ConfigError(f"unknown export format(s) {unknown or names} (--format); choose from {', '.join(FORMATS)}.")
    return names


def artifact_files(out_dir: str | Path) -> dict[str, Path]:
    """The file of each export format in ``out_dir``: an artifact directory holds only these, as one set."""
    return {fmt: Path(out_dir) / f"model.{fmt}" for fmt in FORMATS}


def _made_by_netsurgeon(path: Path) -> bool:
    """Whether ``path`` is a regular file carrying a netsurgeon provenance (safetensors, ONNX or pt2)."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                return "netsurgeon" in (fh.metadata() or {})
        if path.suffix == ".pt2":
            return read_pt2_provenance(path) is not None
        return "netsurgeon" in _onnx_props(path)
    except Exception:  # unreadable or damaged: not provably ours
        return False


def plain_weights(model: nn.Module) -> nn.Module:
    """``model``, or, when it carries weight reparametrizations (``torch.nn.utils.parametrizations.weight_norm``
    / ``spectral_norm``, or the older hook-based ``weight_norm`` / ``spectral_norm``), a copy with each
    reparametrized weight replaced by the plain weight it computes in eval mode (no power iteration). A reload
    rebuilds the architecture from its name, which has no reparametrizations: the file must hold the weights
    the model computes with, under the names the architecture has."""
    from torch.nn.utils import parametrize
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    def hooked(module: nn.Module) -> list:
        return [h for h in module._forward_pre_hooks.values() if isinstance(h, (WeightNorm, SpectralNorm))]

    if not any(parametrize.is_parametrized(m) or hooked(m) for m in model.modules()):
        return model
    copied = copy_model(model)
    with torch.no_grad():
        for module in copied.modules():
            for hook in hooked(module):
                remove = torch.nn.utils.remove_weight_norm if isinstance(hook, WeightNorm) else \
                    torch.nn.utils.remove_spectral_norm
                remove(module, hook.name)
            if parametrize.is_parametrized(module):
                # a deepcopy shares the injected Parametrized* class, whose properties removal deletes: give the
                # copy a class of its own first, or the caller's model would lose its weight property
                cls = type(module)
                module.__class__ = type(cls.__name__, cls.__bases__, {k: v for k, v in cls.__dict__.items()
                                                                      if k not in ("__dict__", "__weakref__")})
                for name in list(module.parametrizations):
                    module.parametrizations[name].eval()  # spectral_norm: the stored estimate, no update
                    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return copied


def _example(model: nn.Module, input_size: Sequence[int] | None) -> torch.Tensor:
    return probe_input(model, input_size)


def export(
    model: nn.Module,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = DEFAULT_FORMATS,
    report: SurgeryReport | None = None,
    seed: int | None = None,
    input_size: Sequence[int] | None = None,
    overwrite: bool = False,
    extra: dict | None = None,
) -> ExportResult:
    """Write ``model.safetensors``, ``model.onnx`` and/or ``model.pt2`` into ``out_dir``, atomically.

    All carry the provenance (see :mod:`netsurgeon.export.artifact`). The ONNX model has a dynamic
    batch axis and must agree with the eager model in onnxruntime within 1e-4 * max(1, max |output|)
    (see ``export.onnx.PARITY_ATOL``), or nothing is written; the ``torch.export`` program (``pt2``, a
    dynamic batch axis where the model allows) must agree alike once reloaded with ``torch.export.load``.
    An input file is never overwritten; existing outputs only with ``overwrite=True``.

    The tensors keep their dtype (a float16 model exports, and reloads, as float16; the header records
    the dtype and a sha256 digest of the tensor data). ONNX needs a float32 model: for any other dtype
    the export is refused before anything is written (export ``formats=["safetensors"]``, or convert
    with ``model.float()`` first). The header is checked with the reader's schema before anything is
    written, so what export writes, ``load_model`` and ``verify`` accept.
    """
    formats = parse_formats(formats)
    out = expand_out(out_dir, "out_dir")  # ~ expanded, "" refused, as --out
    check_model_tensors(model, "export")
    model = plain_weights(model)  # what load_model rebuilds: the architecture's own weight names
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a directory.")
    info = get_info(model)
    files = artifact_files(out)
    finals = [files[f] for f in formats]
    # another format's file from an earlier export would sit beside the new one as if it matched: it counts as
    # an output (refused without overwrite; replaced, i.e. removed, with it), so the directory stays one set
    others = [p for f, p in files.items() if f not in formats and (p.exists() or p.is_symlink())]
    check_not_inputs(finals + others, info.sources if info else [], overwrite=True)  # inputs: never
    check_not_inputs(finals, [], overwrite)
    if others and not overwrite:
        names = ", ".join(p.name for p in others)
        raise ExportError(f"{out} already exists and holds {names} of an earlier export, which would not match the "
                          "new files: pass --overwrite (overwrite=True: it is removed) or choose another --out.")
    for other in others:
        if not _made_by_netsurgeon(other):
            raise ExportError(f"{other} is not a netsurgeon export and would be left beside a new model.* of another "
                              "format; move it away or choose another --out.")
    record_extra = dict(extra or {})
    if report is not None and report.verification is not None:
        record_extra["verification"] = report.verification.__dict__
    if "onnx" in formats:
        _check_onnx_dtype(model)
    record = provenance(model, seed=seed, extra=record_extra)
    if input_size is not None:  # the size the ONNX file is exported and checked at is the one recorded
        input_size = check_input_size(tuple(input_size))
        check_input_channels(model, input_size)
        record["model"]["input_size"] = list(input_size)
    record["tensors"] = tensor_record(file_tensors(model))
    _check_header(record)
    if not outputs_finite(inference_copy(model), _example(model, input_size)):  # every format, before any write
        raise ExportError(f"{NON_FINITE}; nothing was written.")
    size_hint = sum(t.numel() * t.element_size() for t in model.state_dict().values()) * len(formats)
    result = ExportResult(files=[str(f) for f in finals])
    with staged_files(finals, replace=overwrite, size_hint=size_hint) as temps:
        for fmt, temp in zip(formats, temps, strict=True):
            if fmt == "safetensors":
                write_safetensors(model, temp, record)
            elif fmt == "pt2":
                example = _example(model, input_size)
                plain = inference_copy(model)
                program, dynamic = to_exported_program(plain, example)
                write_pt2(program, temp, record)
                parity = pt2_parity(plain, temp, example, dynamic)
                if not parity.ok:
                    raise ExportError(f"torch.export round trip failed: max |eager - reloaded .pt2| = "
                                      f"{parity.max_abs_diff:.3g} > {parity.tolerance:.3g} (or non-finite outputs); "
                                      "nothing was written.")
                result.pt2_max_abs_diff, result.pt2_dynamic_batch = parity.max_abs_diff, dynamic
            else:
                example = _example(model, input_size)
                plain = inference_copy(model)
                proto, exporter = to_onnx_proto(plain, example)
                write_onnx(proto, temp, provenance_props(record))
                parity = onnx_parity(plain, temp, example)
                if not parity.finite:
                    raise ExportError(f"{NON_FINITE} in onnxruntime; nothing was written.")
                if not parity.ok:
                    raise ExportError(
                        f"ONNX parity failed: max |eager - onnxruntime| = {parity.max_abs_diff:.3g} > "
                        f"{parity.tolerance:.3g} (outputs up to {parity.output_scale:.3g}); nothing was written."
                    )
                result.onnx_max_abs_diff, result.onnx_tolerance = parity.max_abs_diff, parity.tolerance
                result.onnx_exporter = exporter
    for stale in others:  # only reached with overwrite=True, after the new files are in place
        stale.unlink(missing_ok=True)
    return result


def _check_onnx_dtype(model: nn.Module) -> None:
    other = sorted({str(t.dtype).removeprefix("torch.") for t in model.state_dict().values()
                    if t.is_floating_point() and t.dtype != torch.float32})
    if other:
        raise ExportError(f"ONNX export needs a float32 model, this one holds {', '.join(other)} tensors; export "
                          "only safetensors (--format safetensors, formats=['safetensors']: it keeps the dtype), or "
                          "convert with model.float() first.")


def _check_header(record: dict) -> None:
    """Refuse to write a header the reader would refuse (so export never writes what load rejects)."""
    try:
        problems = header_problems(json.loads(json.dumps(record, sort_keys=True)))
    except (TypeError, ValueError) as err:
        raise ExportError(f"the provenance cannot be written as JSON ({str(err)[:120]}); nothing was "
                          "written.") from None
    if problems:
        shown = "; ".join(problems[:3]) + (f"; ... ({len(problems) - 3} more)" if len(problems) > 3 else "")
        raise ExportError(f"this model cannot be exported: its provenance header would be refused on reload "
                          f"({shown}); nothing was written.")


def _onnx_props(path: Path) -> dict[str, str]:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf DecodeError on a truncated file, OSError, ...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise ArtifactError(f"{path.name} could not be read as ONNX (truncated or corrupt?): {first}; re-export "
                            "it, or delete it to verify model.safetensors alone.") from None
    return {p.key: p.value for p in proto.metadata_props}


def verify_artifact(path: str | Path) -> VerifyResult:
    """Rebuild the model from ``model.safetensors`` alone and check ``model.onnx`` against it."""
    p = Path(path)
    st = p / "model.safetensors" if p.is_dir() else p
    if st.suffix == ".onnx":
        st = st.with_suffix(".safetensors")
    record = read_provenance(st)
    if not st.is_file():
        raise ArtifactError(f"{st} not found; give an export directory or its model.safetensors.")
    onnx_path, pt2_path = st.with_suffix(".onnx"), st.with_suffix(".pt2")
    for other in (onnx_path, pt2_path):  # a FIFO would block the reader forever, /dev/zero never end
        if other.exists() and not other.is_file():
            raise ArtifactError(f"{other} is not a regular file; remove it to verify {st.name} alone.")
    model = load_artifact(st, record)
    if not outputs_finite(inference_copy(model), _example(model, record["model"]["input_size"])):
        raise ArtifactError(f"{st.name}: {NON_FINITE}; it is not usable: re-export a model whose outputs are finite.")
    steps = parse_history(record["passes"], registered=registered_contract)
    result = VerifyResult(str(st), None, None, None, [s.pass_name for s in steps], ok=True)
    result.messages.append(f"rebuilt {record['model']['spec']} + {len(record['passes'])} pass(es) from {st.name}")
    tensors = record.get("tensors")
    result.messages.append(f"tensor data matches the header's sha256 ({tensors['sha256'][:16]}), dtype "
                           f"{tensors['dtype'] if isinstance(tensors['dtype'], str) else 'per tensor'}" if tensors
                           else "no tensor digest in the header (exported by an older netsurgeon): weights unchecked")
    if onnx_path.exists():
        props = _onnx_props(onnx_path)
        try:
            same = json.loads(props.get("netsurgeon", "null") or "null") == record
        except (ValueError, RecursionError):
            same = False
        if not same:
            raise ArtifactError(f"{onnx_path.name} does not carry the same provenance as {st.name}; re-export both.")
        input_size = record["model"]["input_size"]
        try:
            parity = onnx_parity(inference_copy(model), onnx_path, _example(model, input_size))
        except ExportError as err:
            raise ArtifactError(f"{onnx_path.name}: {err}") from None
        except Exception as err:  # onnxruntime rejects a damaged graph in many ways
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise ArtifactError(f"{onnx_path.name} could not be run by onnxruntime (damaged?): {first}; "
                                "re-export it.") from None
        if not parity.finite:
            raise ArtifactError(f"{onnx_path.name}: outputs contain NaN or infinity on the probe; the weights are "
                                "damaged: re-export.")
        result.onnx = str(onnx_path)
        result.onnx_max_abs_diff, result.onnx_tolerance = parity.max_abs_diff, parity.tolerance
        result.ok = parity.ok
        result.messages.append(f"ONNX parity max |diff| {parity.max_abs_diff:.3g} (tolerance {parity.tolerance:.3g}, "
                               f"outputs up to {parity.output_scale:.3g}): {'ok' if parity.ok else 'FAILED'}")
    if pt2_path.exists():  # provenance only: torch.export.load is not weights-only (see export.pt2)
        if read_pt2_provenance(pt2_path) != record:
            raise ArtifactError(f"{pt2_path.name} does not carry the same provenance as {st.name}; re-export both.")
        content = check_pt2_content(pt2_path)
        checked = (f"program and tensors match the digest recorded at export ({content[:16]})" if content else
                   "no content digest (exported by an older netsurgeon): its weights are unchecked")
        result.messages.append(f"{pt2_path.name}: same provenance; {checked} (its program is not loaded: "
                               "torch.export.load unpickles beyond weights; its round trip was checked at export)")
    return result
