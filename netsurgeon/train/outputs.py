"""A run's output directory: the files it writes, when a new run may replace them, and when it may be resumed.

Every name a run writes is in :func:`run_outputs` (checked up front against existing files and inputs by
:func:`check_out_dir`; moved aside while a new run writes by :func:`one_finetune_run`). A checkpoint there is
resumed only with the same config (but :data:`RESUMABLE_DIFFERENCES`) and the same :func:`run_identity`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from netsurgeon.atomic import check_not_inputs, check_writable, one_run
from netsurgeon.data import DataSpec
from netsurgeon.errors import CheckpointError, ConfigError, TrainingInterrupted
from netsurgeon.export import FORMATS
from netsurgeon.models.info import get_info, model_input_size
from netsurgeon.train.batches import DataArg
from netsurgeon.train.config import FinetuneConfig
from netsurgeon.train.distributed import is_main_process
from netsurgeon.train.optimizers import check_available
from netsurgeon.train.tracking import TENSORBOARD_DIR, check_loggers, tensorboard_on

__all__ = ["CHECKPOINT", "RESUMABLE_DIFFERENCES", "RESUME_HINT", "check_out_dir", "check_resumable",
           "identity_differences", "one_finetune_run", "run_identity", "run_output_files", "run_outputs"]

CHECKPOINT = "checkpoint.pt"
#: config keys that may differ between a run and its resumption (they do not change the weights)
RESUMABLE_DIFFERENCES = {"progress", "workers", "eval_every", "limit_eval_batches", "log", "wandb_project",
                         "ema_export"}
#: the next step an interrupted run names (``netsurgeon finetune``'s; compare and recipes say their own)
RESUME_HINT = "continue with --resume"


def run_outputs(cfg: FinetuneConfig, formats: Sequence[str]) -> list[str]:
    """The names a run writes in its output directory (files, and the TensorBoard events folder); a new
    kind of output is one more name here (``run_output_files`` checks them all up front)."""
    check_loggers(cfg.log)  # before any work: a missing logger package is found up front
    check_available(cfg.optimizer)  # and a missing optimizer package (bitsandbytes, apex)
    names = [CHECKPOINT, "metrics.csv", "metrics.jsonl", "curves.png"]
    names += [f"model.{f}" for f in formats]
    return names + ([TENSORBOARD_DIR] if tensorboard_on(cfg.log) else [])


def run_output_files(out: Path, cfg: FinetuneConfig | None = None) -> list[Path]:
    """Every file a fine-tuning run may write into ``out`` (checked up front: none is replaced without
    ``overwrite``/``resume``, and none may be an input): ``run_outputs`` for every export format, since the
    final export leaves only the ones asked for. Without ``cfg``, the defaults' outputs."""
    return [out / name for name in run_outputs(cfg or FinetuneConfig(), FORMATS)]


def check_out_dir(out: Path, model: nn.Module, cfg: FinetuneConfig, *, resume: bool, overwrite: bool) -> None:
    """Refuse an ``out`` that is a file, where a run's file would replace an input, or that holds a run's files
    without ``resume``/``overwrite`` (before :func:`one_finetune_run` moves the previous run aside)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory.")
    info = get_info(model)
    finals = run_output_files(out, cfg)
    check_not_inputs(finals, info.sources if info else [], overwrite=True)
    present = [p.name for p in finals if p.exists() or p.is_symlink()]
    if not resume and not overwrite and present:
        raise ConfigError(f"{out} already holds a run's files ({', '.join(present)}); pass --resume to continue it, "
                          "--overwrite to replace them, or choose another --out.")
    events = out / TENSORBOARD_DIR
    if resume and tensorboard_on(cfg.log) and events.exists():  # else TensorBoard's writer thread fails later
        check_writable(events, flag="the TensorBoard folder of --out (--set log=none to do without)")


def one_finetune_run(out: Path | None, *, resume: bool,
                     more: Sequence[str] = ()) -> contextlib.AbstractContextManager:
    """The block in which a fine-tuning run (training, then its export) writes ``out``: a fresh or ``overwrite``
    run replaces the previous run's files (every name a run may write, and ``more``) only when it completes; one
    that fails leaves ``out`` as it was. An interruption that saved a checkpoint keeps the new run (resumable).
    A resumed run keeps what it saved (its checkpoint was the previous state). Rank 0 only."""
    if out is None or not is_main_process():
        return contextlib.nullcontext()
    names = [] if resume else [*run_outputs(FinetuneConfig(log="none"), FORMATS), TENSORBOARD_DIR, *more]

    def resumable(err: BaseException) -> bool:
        # a stop from outside (Ctrl-C, a signal, or SystemExit: submitit exits that way after it checkpointed and
        # requeued a preempted SLURM job) keeps the new run when it saved a checkpoint: it is resumed, not lost
        return isinstance(err, (TrainingInterrupted, KeyboardInterrupt, SystemExit)) and (out / CHECKPOINT).exists()

    return one_run(out, names, keep=resumable)


def run_identity(model: nn.Module, data: DataArg, train: Dataset, test: Dataset | None) -> dict[str, Any]:
    """What determines a run besides its config: the model (base, constructor arguments, source weights,
    input size, surgery history) and the data (its spec, sizes and class count; for Dataset objects the
    sizes and class count only). Saved in each checkpoint; ``--resume`` must match it."""
    spec = DataSpec.parse(data) if isinstance(data, str) else data
    data_label = spec.label() if isinstance(spec, DataSpec) else "(Dataset objects)"

    info = get_info(model)
    record = info.to_dict() if info else {}

    def sized(dataset: Dataset | None) -> int | None:
        try:
            return len(dataset) if dataset is not None else None  # type: ignore[arg-type]
        except TypeError:
            return None

    identity = {
        "model": record.get("spec"),
        "model arguments": record.get("kwargs"),
        "source weights": record.get("checkpoint_sha256") or record.get("checkpoint"),
        "input size": record.get("input_size", list(model_input_size(model))),
        "surgery": [{"pass": step.pass_name, "config": step.plain_config()} for step in (info.history if info else ())],
        "data": data_label,
        "training images": sized(train),
        "test images": sized(test),
        "classes": getattr(train, "num_classes", None),
    }
    return json.loads(json.dumps(identity, default=repr))  # plain values only (checkpoints load weights_only)


def _short(value: Any) -> str:
    if isinstance(value, list) and value and all(isinstance(v, dict) and "pass" in v for v in value):
        value = [v["pass"] for v in value]
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def identity_differences(stored: dict[str, Any], identity: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every entry of a :func:`run_identity` that differs from the ``stored`` one (what
    ``--resume`` and a ``compare`` rerun name when they refuse other data or another model)."""
    return [f"{k}: {_short(stored.get(k))} -> {_short(identity[k])}" for k in identity if stored.get(k) != identity[k]]


def check_resumable(stored: dict[str, Any], cfg: FinetuneConfig, path: Path,
                     identity: dict[str, Any] | None = None, stored_identity: dict[str, Any] | None = None) -> None:
    """Refuse a resume whose config, model or data differs from the checkpoint's, naming every difference (a field
    an older checkpoint lacks was added since: it had its default)."""
    current, default = cfg.to_dict(), FinetuneConfig().to_dict()
    differ = [f"{k}: {stored.get(k, default[k])!r} -> {current[k]!r}" for k in sorted(current)
              if k not in RESUMABLE_DIFFERENCES and stored.get(k, default[k]) != current[k]]
    if differ:
        raise CheckpointError(f"{path} was made with a different config ({', '.join(differ)}); resume with the same "
                              "settings, or start a new run in another --out directory.")
    if identity is None or not isinstance(stored_identity, dict) or not stored_identity:  # an older checkpoint
        return
    differ = identity_differences(stored_identity, identity)
    if differ:
        raise CheckpointError(f"{path} belongs to a different run ({'; '.join(differ)}); resume with the same "
                              "model, checkpoint, --input-size and --data, or start a new run in another --out "
                              "directory.")
