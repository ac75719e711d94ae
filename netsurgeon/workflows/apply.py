"""``netsurgeon apply`` as a library call: one pass on a model built from options, its report, and the
exported artifact. Every option is checked before the model is loaded, and ``out`` is claimed (checked
writable, locked) before any work."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from netsurgeon.api import apply, plan
from netsurgeon.atomic import claim_output_dir
from netsurgeon.config import PassConfig
from netsurgeon.data import DataSpec, surgery_loader
from netsurgeon.errors import ConfigError
from netsurgeon.export import ExportResult, artifact_files, export, parse_formats
from netsurgeon.progress import status
from netsurgeon.registry import PassSpec, get_pass
from netsurgeon.report import SurgeryReport
from netsurgeon.workflows.options import (
    SetValues,
    check_inputs_kept,
    check_num_classes,
    check_out_outside_data,
    check_seed,
    load_from_options,
    out_path,
    parse_input_size,
    set_values,
    weights_line,
)

__all__ = ["ApplyOutcome", "ApplySettings", "apply_from_settings"]


@dataclass(frozen=True)
class ApplySettings:
    """What ``netsurgeon apply`` is given (its options, by the same names)."""

    pass_name: str  # a registered pass
    model: str  # timm:NAME, torchvision:NAME, NAME, or an artifact
    checkpoint: str | Path | None = None
    num_classes: int | None = None
    parameters: SetValues = ()  # the pass's parameters: --set key=value items, or a dict
    dry_run: bool = False  # plan only: build and write nothing
    out: str | Path | None = None  # the export directory (nothing written without it)
    formats: str | Sequence[str] = "safetensors,onnx"
    input_size: str | Sequence[int] | None = None  # C,H,W; default: the model's own
    overwrite: bool = False
    allow_reapply: bool = False
    seed: int = 0  # recorded in the provenance, and the probe's
    data: str | DataSpec | None = None  # training data for data-driven passes (gru-fc)
    batch_size: int = 64  # of ``data``
    pretrained: bool = False
    allow_violation: bool = False  # keep (and export) a result whose contract check fails
    skip_unreadable: bool = False  # folder: data: leave unreadable images out
    weights: str | None = None  # raw or ema: the entry of a trainer's checkpoint


@dataclass
class ApplyOutcome:
    """The surgery's report, the export (when ``out`` was given and not a dry run), and where the
    weights came from (``random``: randomly initialised, so the results say nothing about a trained model)."""

    report: SurgeryReport
    export: ExportResult | None
    weights: str
    random: bool


def apply_from_settings(settings: ApplySettings) -> ApplyOutcome:
    """Check every setting, then load, apply (or plan) and export."""
    s = settings
    spec = get_pass(s.pass_name)
    config = spec.make_config(set_values(s.parameters))  # validate before loading anything
    out = out_path(s.out)
    check_seed(s.seed)
    check_num_classes(s.num_classes, s.model)
    size = parse_input_size(s.input_size)
    formats = parse_formats(s.formats)  # before loading anything
    if s.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {s.batch_size}.")
    data = None
    if s.data is not None:
        data = dataclasses.replace(s.data if isinstance(s.data, DataSpec) else DataSpec.parse(s.data),
                                   skip_unreadable=s.skip_unreadable)
        if out is not None:
            check_out_outside_data(out, data)
    writes = out is not None and not s.dry_run
    if writes:
        check_inputs_kept(list(artifact_files(out).values()), s.model, s.checkpoint)
    with claim_output_dir(out) if writes else contextlib.nullcontext():  # --out held by this run before any work
        return _apply(s, spec, config, size, data, out if writes else None, formats)


def _apply(s: ApplySettings, spec: PassSpec, config: PassConfig, size: tuple[int, ...] | None,
           data: DataSpec | None, out: Path | None, formats: list[str]) -> ApplyOutcome:
    torch.manual_seed(s.seed)
    loaded = load_from_options(s.model, s.checkpoint, s.num_classes, input_size=size, pretrained=s.pretrained,
                               weights=s.weights)
    weights, random = weights_line(s.model, loaded)
    status(f"applying {spec.name}" + (" (dry run)" if s.dry_run else ""))
    loader = None if data is None else surgery_loader(data, loaded, batch_size=s.batch_size, seed=s.seed,
                                                      input_size=size)
    if s.dry_run:  # the loaded model is thrown away: plan may share its tensors
        report = plan(loaded, config, input_size=size, allow_reapply=s.allow_reapply, data=loader)
        report.weights = weights
        return ApplyOutcome(report, None, weights, random)
    result = apply(loaded, config, input_size=size, allow_reapply=s.allow_reapply, data=loader,
                   allow_violation=s.allow_violation)
    report = result.report
    report.weights = weights
    exported = None
    if out is not None:
        status(f"exporting {', '.join(formats)} to {out}")
        exported = export(result.model, out, formats=formats, report=report, seed=s.seed, input_size=size,
                          overwrite=s.overwrite)
    return ApplyOutcome(report, exported, weights, random)
