"""``netsurgeon finetune`` as a library call: build a model from options, fine-tune it on a data spec,
export the result. Every option is checked, and every file the run may write is checked against its
inputs, before the model is loaded; ``out`` is claimed (checked writable, locked) on rank 0 before any
work."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from netsurgeon.atomic import claim_output_dir
from netsurgeon.data import DataSpec, count_classes
from netsurgeon.errors import TrainingInterrupted
from netsurgeon.export import parse_formats
from netsurgeon.models.load import is_artifact_path
from netsurgeon.progress import status
from netsurgeon.train import FinetuneConfig, FinetuneResult, export_finetuned, run_output_files, run_training
from netsurgeon.train.distributed import is_main_process
from netsurgeon.train.outputs import check_out_dir, one_finetune_run
from netsurgeon.workflows.options import (
    SetValues,
    check_inputs_kept,
    check_num_classes,
    check_out_outside_data,
    load_from_options,
    out_path,
    parse_input_size,
    set_values,
    weights_line,
)

__all__ = ["FinetuneOutcome", "FinetuneSettings", "finetune_from_settings"]


@dataclass(frozen=True)
class FinetuneSettings:
    """What ``netsurgeon finetune`` is given (its options, by the same names)."""

    model: str  # timm:NAME, torchvision:NAME, NAME, or an artifact
    data: str  # a data spec (see netsurgeon.data)
    out: str | Path  # checkpoints, metrics, plot and model
    epochs: int | None = None  # same as config epochs=N
    resume: bool = False
    config: SetValues = ()  # FinetuneConfig fields: --set key=value items, or a dict
    checkpoint: str | Path | None = None
    num_classes: int | None = None  # default for a model built from a name: the data's class count
    input_size: str | Sequence[int] | None = None
    formats: str | Sequence[str] = "safetensors,onnx"  # the final export ('none' or empty: none)
    overwrite: bool = False
    pretrained: bool = False
    skip_unreadable: bool = False
    weights: str | None = None  # raw or ema: the entry of a trainer's checkpoint


@dataclass
class FinetuneOutcome:
    """The run (``result``; exported on rank 0) and where the starting weights came from."""

    result: FinetuneResult
    weights: str
    random: bool


def finetune_from_settings(settings: FinetuneSettings) -> FinetuneOutcome:
    """Check every setting, then load, fine-tune and export."""
    s = settings
    values = set_values(s.config)
    if s.epochs is not None:
        values["epochs"] = s.epochs
    config = FinetuneConfig.from_dict(values)  # validate before loading anything
    data = dataclasses.replace(DataSpec.parse(s.data), skip_unreadable=s.skip_unreadable)
    no_export = isinstance(s.formats, str) and s.formats.strip().lower() == "none"
    formats = [] if no_export or (not isinstance(s.formats, str) and not s.formats) else parse_formats(s.formats)
    size = parse_input_size(s.input_size)
    out = out_path(s.out)
    check_num_classes(s.num_classes, s.model)
    check_out_outside_data(out, data)
    check_inputs_kept(run_output_files(out, config), s.model, s.checkpoint)
    phase = {"trained": False}
    with (claim_output_dir(out) if is_main_process() else contextlib.nullcontext(),  # before any work
          _terminated_stops(out, s.resume, phase)):
        num_classes = s.num_classes
        if not is_artifact_path(s.model) and num_classes is None and s.checkpoint is None and not s.pretrained:
            num_classes = count_classes(data)
            status(f"building {s.model} with {num_classes} classes (the data's)")
        torch.manual_seed(config.seed)  # the same command and seed build the same initial weights
        loaded = load_from_options(s.model, s.checkpoint, num_classes, input_size=size, pretrained=s.pretrained,
                                   weights=s.weights)
        weights, random = weights_line(s.model, loaded)
        status(f"weights: {weights}")
        status(f"fine-tuning on {s.data} for {config.epochs} epochs" + (" (resuming)" if s.resume else ""))
        check_out_dir(out, loaded, config, resume=s.resume, overwrite=s.overwrite)
        with one_finetune_run(out, resume=s.resume):  # the previous run is replaced once this one has exported
            result = run_training(loaded, data, config, out_dir=out, resume=s.resume, overwrite=s.overwrite)
            phase["trained"] = True
            export_finetuned(result, out, formats)
    return FinetuneOutcome(result, weights, random)


@contextlib.contextmanager
def _terminated_stops(out: Path, resume: bool, phase: dict[str, bool]) -> Iterator[None]:
    """SIGTERM or SIGHUP outside the training loop (loading, the export; the loop handles its own) stops the
    command with one line and the right next step (exit code 130) instead of killing it without a word: before
    training ``out`` stays as it was, after it the trained run is kept and ``--resume`` exports it."""
    signals = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if phase["trained"]:
            raise TrainingInterrupted(f"terminated ({name}) while exporting: the trained run is kept in {out}; "
                                      "continue with --resume (it exports).")
        if resume:
            raise TrainingInterrupted(f"terminated ({name}) before training resumed: {out} is as it was; continue "
                                      "with --resume.")
        raise TrainingInterrupted(f"terminated ({name}) before training started: nothing of this run was kept "
                                  "(--out is as it was); run the same command again to start over.")

    previous = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
