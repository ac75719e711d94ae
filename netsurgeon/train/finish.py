"""After the loop: exporting a fine-tuned model, and ``finetune`` (train, then export).

The training loop (:func:`netsurgeon.train.loop.run_training`) only trains; the caller decides what becomes of
the result. :func:`export_finetuned` writes it like ``apply`` does (safetensors with the provenance, now
also the training config, data, metrics and which weights, raw or EMA; ONNX with its parity check), so
the CLI, a recipe, a compare job and a Python script export a fine-tuned model the same way.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsurgeon.export import ExportResult, export
from netsurgeon.models.info import copy_model, get_info
from netsurgeon.progress import status
from netsurgeon.train.batches import DataArg
from netsurgeon.train.config import FinetuneConfig, as_config
from netsurgeon.train.loop import run_training
from netsurgeon.train.outputs import check_out_dir, one_finetune_run
from netsurgeon.train.result import FinetuneResult
from netsurgeon.train.tracking import RunLabels, log_artifacts

__all__ = ["export_finetuned", "finetune", "training_provenance"]


def training_provenance(result: FinetuneResult) -> dict[str, Any]:
    """The ``finetune`` block of an exported fine-tuned model's provenance: how it was trained."""
    return {"config": result.config.to_dict(), "data": result.data, "metrics": result.metrics, "amp": result.amp,
            "world_size": result.world_size, "weights": result.weights}


def export_finetuned(result: FinetuneResult, out_dir: str | Path | None,
                     formats: Sequence[str] = ("safetensors", "onnx"), *,
                     extra: dict[str, Any] | None = None) -> ExportResult | None:
    """Export a fine-tuning run's model into ``out_dir`` (the run's own directory, whose files
    ``run_training`` checked up front) with the training in its provenance; record it in ``result.export``
    and ``result.files``.

    Nothing is written without ``out_dir`` or ``formats``, nor on the non-zero ranks of a torchrun job.
    A model without netsurgeon provenance (not built with ``load_model``) is not exported: a warning says
    so (``checkpoint.pt`` holds its weights). ``extra``: more provenance (the recipe runner adds the recipe).
    """
    if out_dir is None or not formats or not result.is_main:
        return None
    if get_info(result.model) is None:
        warnings.warn("the model carries no netsurgeon provenance (not built with load_model), so it was "
                      "not exported; checkpoint.pt holds its weights.", stacklevel=2)
        return None
    final = copy_model(result.model).to("cpu", memory_format=torch.contiguous_format).eval()
    provenance = {**dict(extra or {}), "finetune": training_provenance(result)}
    exported = export(final, Path(out_dir), formats=list(formats), seed=result.config.seed, overwrite=True,
                      extra=provenance)
    result.export = exported
    result.files = sorted(set(result.files) | set(exported.files))
    log_artifacts(result.tracked, exported.files)  # log=mlflow: the model files join the run
    if exported.onnx_max_abs_diff is not None:
        status(f"exported; ONNX parity max |diff| {exported.onnx_max_abs_diff:.3g}", result.config.progress)
    return exported


def finetune(
    model: nn.Module,
    data: DataArg,
    config: FinetuneConfig | dict[str, Any] | None = None,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    formats: Sequence[str] = ("safetensors", "onnx"),
    extra: dict[str, Any] | None = None,
    resume_hint: str | None = None,
    labels: RunLabels | None = None,
) -> FinetuneResult:
    """Fine-tune a copy of ``model`` on ``data`` (:func:`~netsurgeon.train.loop.run_training`), then export the
    result into ``out_dir`` (:func:`export_finetuned`).

    Args:
        model: any classifier ``nn.Module`` (typically ``apply(...).model``); it is not modified.
        data: a data spec string or :class:`~netsurgeon.data.DataSpec` (the kinds: :mod:`netsurgeon.data.kinds`),
            resized and normalised for the model; or a training Dataset; or ``(train, test)`` Datasets.
        config: a :class:`FinetuneConfig`, or a dict of its fields (strings parsed like ``--set`` values).
        out_dir: where checkpoints, metrics, the plot and the final model go (nothing is written without it).
        resume: continue from ``out_dir/checkpoint.pt``.
        overwrite: start a new run in an ``out_dir`` that already holds one (replaced only once this one has
            trained and exported; a failed run leaves it as it was).
        formats: the final export's formats (empty: no export).
        extra: more provenance for the exported artifact (the recipe runner adds the recipe).
        resume_hint: what an interruption's message says to do next (default: ``--resume``; compare's jobs and
            recipes resume by running the same command again).
        labels: the run's name, group and store in W&B/MLflow (``compare`` names each job's run).

    Raises:
        ConfigError (bad config, class-count mismatch), CheckpointError (resume problems),
        TrainingInterrupted (Ctrl-C; the checkpoint is saved first).
    """
    cfg = as_config(config)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        check_out_dir(out, model, cfg, resume=resume, overwrite=overwrite)
    with one_finetune_run(out, resume=resume):  # the export is part of the run: a failed one leaves out as it was
        hint = {} if resume_hint is None else {"resume_hint": resume_hint}
        result = run_training(model, data, cfg, out_dir=out_dir, resume=resume, overwrite=overwrite, labels=labels,
                              **hint)
        export_finetuned(result, out_dir, formats, extra=extra)
    return result
