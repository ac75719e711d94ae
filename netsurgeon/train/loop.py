"""``finetune``: a plain, readable training loop for a model after surgery.

One process or many (torchrun + DistributedDataParallel), CPU or GPU. What it does, in order:

1. Copies the model (the caller's is never trained in place), moves it to the device, and builds the
   optimizer *after* surgery, with a separate learning rate for parameters a pass created.
2. Fresh run: re-estimates BatchNorm statistics after a function-changing structural pass, then
   evaluates (epoch 0 of the metrics: the accuracy right after surgery). ``resume``: restores the
   checkpoint instead, including the RNG state and the position inside the epoch.
3. Trains epoch by epoch: seeded sample order (a pure function of seed, epoch and rank), training
   augmentation (``augment``) and mixup/CutMix whose draws are pure functions of (seed, epoch, index,
   rank) (``netsurgeon.data.draw_seed``), warm-up then cosine or step schedule, label smoothing,
   gradient accumulation, gradient clipping, AMP and channels_last on GPUs, weight EMA (timm's
   ``ModelEmaV3``, evaluated beside the raw weights); the training hooks of the passes in the model's
   history (``netsurgeon.hooks``) run at their events. Evaluation uses the model's own preprocessing.
   After every epoch (rank 0 only): an atomic checkpoint, the metrics as CSV and JSON lines, a PNG of
   the curves, and TensorBoard scalars (``netsurgeon.train.tracking``).
4. Ctrl-C, SIGTERM (what SLURM, Kubernetes and torchrun send before killing) or SIGHUP stops after the running
   batch, on every rank at the same batch, saves a checkpoint and raises ``TrainingInterrupted`` (before
   training, during the epoch-0 evaluation or BN recalibration, it stops at their next batch, saving nothing).
   A non-finite loss (or weights, or test loss) raises ``TrainingDiverged`` before anything from it is saved.
   Resuming from it gives bit-identical weights on the CPU; a second Ctrl-C aborts at once, a repeated
   SIGTERM does not (a scheduler and torchrun may both deliver one).
5. Returns the trained model (raw or EMA weights) with its metrics and what the run was (config, data,
   AMP, world size): a :class:`FinetuneResult`. Exporting it is the caller's step
   (:func:`netsurgeon.train.finish.export_finetuned`; ``finetune`` runs both).
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from netsurgeon.atomic import check_not_inputs, check_writable, expand_out, one_run
from netsurgeon.data import (
    DataSpec,
    check_samples,
    draw_seed,
    eval_transform,
    load_dataset,
    model_data_config,
    seeded,
    train_transform,
)
from netsurgeon.errors import CheckpointError, ConfigError, TrainingDiverged, TrainingInterrupted
from netsurgeon.export import FORMATS, ExportResult
from netsurgeon.hooks import EpochStart, hooks_for
from netsurgeon.models.info import copy_model, get_info, model_input_size
from netsurgeon.progress import status
from netsurgeon.train.batches import eval_loader, resolve_workers, train_loader
from netsurgeon.train.config import FinetuneConfig
from netsurgeon.train.distributed import (
    Context,
    all_reduce_sum,
    broadcast_buffers,
    epoch_indices,
    is_main_process,
    setup,
)
from netsurgeon.train.evaluate import EvalResult, check_classes, check_labels, evaluate, recalibrate_bn
from netsurgeon.train.metrics import plot_curves, write_metrics
from netsurgeon.train.schema import Key
from netsurgeon.train.state import TrainState, load_state, restore_rng, save_state
from netsurgeon.train.tracking import TENSORBOARD_DIR, RunLabels, Trackers, check_loggers, tensorboard_on
from netsurgeon.validate import check_model_tensors

CHECKPOINT = "checkpoint.pt"
#: config keys that may differ between a run and its resumption (they do not change the weights)
RESUMABLE_DIFFERENCES = {"progress", "workers", "eval_every", "limit_eval_batches", "log", "wandb_project",
                         "ema_export"}
DataArg = str | DataSpec | Dataset | tuple[Dataset, Dataset | None]
#: the next step an interrupted run names (``netsurgeon finetune``'s; compare and recipes say their own)
RESUME_HINT = "continue with --resume"


#: weight of each auxiliary classifier's loss (torchvision GoogLeNet and Inception-v3 in train mode), as in
#: the GoogLeNet paper (Szegedy et al. 2015, section 5: "weighted by 0.3").
AUX_LOSS_WEIGHT = 0.3


def split_auxiliary(output: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The logits and any auxiliary logits of a train-mode forward.

    Surgery keeps the model's class, so torchvision GoogLeNet and Inception-v3 return their auxiliary
    heads in train mode (``GoogLeNetOutputs``/``InceptionOutputs``: the logits first). Fine-tuning trains
    them too: each adds ``AUX_LOSS_WEIGHT`` times its cross-entropy; accuracy counts the logits only.
    """
    if isinstance(output, torch.Tensor):
        return output, []
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0], [t for t in output[1:] if isinstance(t, torch.Tensor)]
    raise ConfigError(f"the model returns a {type(output).__name__} in train mode; fine-tuning needs logits "
                      "(or a tuple whose first item is the logits).")


@dataclass
class FinetuneResult:
    """The trained model (a new module, unwrapped, in eval mode), its per-epoch metrics, the files written,
    and what the run was (what an export of it records as its ``finetune`` provenance)."""

    model: nn.Module
    metrics: list[dict[str, Any]]
    files: list[str] = field(default_factory=list)
    export: ExportResult | None = None  # the final export, once a caller made one (``export_finetuned``)
    weights: str = "raw"  # which weights ``model`` holds (and the export): raw, or ema (FinetuneConfig.ema_export)
    config: FinetuneConfig = field(default_factory=FinetuneConfig)  # the run's settings
    data: str = ""  # the data's label (its spec, or the Dataset's class name)
    amp: str = "off"  # the mixed precision the run used (``amp=auto`` resolved)
    world_size: int = 1  # processes that trained it (torchrun)
    rank: int = 0  # this process's rank: only rank 0 writes
    tracked: dict[str, str] = field(default_factory=dict)  # the tracker runs (mlflow_uri, mlflow_run_id, wandb_run_id)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def final(self) -> dict[str, Any]:
        return self.metrics[-1] if self.metrics else {}


def resolve_data(data: DataArg, model: nn.Module, config: FinetuneConfig | None = None,
                 ) -> tuple[Dataset, Dataset | None, str]:
    """(train, test, description) from a data spec or datasets.

    A spec's test split gets the model's own evaluation preprocessing, its training split the
    augmentation ``config`` names (``FinetuneConfig()``'s by default); Datasets are used as given."""
    if isinstance(data, (str, DataSpec)):
        cfg = config or FinetuneConfig()
        size = model_input_size(model)
        data_config = model_data_config(model)
        train = load_dataset(data, "train", size, transform=train_transform(data_config, size, cfg.augmentation()))
        test = load_dataset(data, "test", size, transform=eval_transform(data_config, size))
        label = str(data if isinstance(data, str) else f"{data.kind}:{data.path}")
        if train.num_classes < 2:
            raise ConfigError(f"the data {label} has {train.num_classes} class; fine-tuning needs at least two (one "
                              "class trains to loss 0 and 100% accuracy and learns nothing): add the other classes.")
        return train, test, label
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ConfigError("data must be a spec string, a Dataset, or a (train, test) pair of Datasets.")
        check_samples(data[0], "the training Dataset")
        if data[1] is not None:
            check_samples(data[1], "the test Dataset")
        return data[0], data[1], type(data[0]).__name__
    check_samples(data, "the Dataset")
    return data, None, type(data).__name__


class _StopRequest:
    """SIGINT, SIGTERM or SIGHUP sets a flag the loop checks between batches (and between evaluation batches
    before training); a second SIGINT aborts at once.

    SIGTERM is what SLURM, Kubernetes and torchrun's agent send before killing (torchrun forwards it to
    every rank and waits 30 s): it is never an abort, since a job's ranks may get it twice (once from the
    scheduler, once forwarded by torchrun). SIGHUP (the terminal closed) is handled like SIGTERM."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
    TRAINING = "stopping after this batch and saving a checkpoint"
    STARTING = "stopping before training starts; --out stays as it was"

    def __init__(self) -> None:
        self.requested = False
        self.doing = self.TRAINING  # what a stop does now (the loop sets it)
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if signum != signal.SIGINT:
            if not self.requested:
                what = "terminated" if signum == signal.SIGTERM else "hangup"
                print(f"\n{what} ({signal.Signals(signum).name}): {self.doing}", file=sys.stderr, flush=True)
            self.requested = True
            return
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\ninterrupt: {self.doing} (Ctrl-C again to abort)", file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            if previous is not None:
                signal.signal(sig, previous)
        self._previous = {}


def _param_groups(model: nn.Module, cfg: FinetuneConfig, new_params: set[str]) -> list[dict[str, Any]]:
    """Four groups at most: (pretrained | created by a pass) x (decayed weights | biases and norms)."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((name in new_params, p.ndim > 1), []).append(p)
    out = []
    for (new, decay), params in sorted(groups.items()):
        lr = cfg.lr * (cfg.new_param_lr_scale if new else 1.0)
        out.append({"params": params, "lr": lr, "initial_lr": lr, "weight_decay": cfg.weight_decay if decay else 0.0,
                    "netsurgeon_new": new})
    return out


def _make_optimizer(model: nn.Module, cfg: FinetuneConfig, new_params: set[str]) -> torch.optim.Optimizer:
    groups = _param_groups(model, cfg, new_params)
    if not groups:
        raise ConfigError("the model has no trainable parameters.")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _autocast(cfg: FinetuneConfig, device: torch.device) -> tuple[contextlib.AbstractContextManager, str]:
    amp = cfg.amp
    if amp == "auto":
        amp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device.type == "cuda" else "off"
    if amp == "off":
        return contextlib.nullcontext(), "off"
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp=fp16 needs a GPU; use amp=bf16 or amp=off on the CPU.")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype), amp


def _needs_bn_recalibration(model: nn.Module, cfg: FinetuneConfig) -> bool:
    from netsurgeon.registry import Contract, get_pass

    if cfg.bn_recalibrate != "auto":
        return cfg.bn_recalibrate == "on"
    info = get_info(model)
    for step in info.history if info else []:
        # the contract the pass reported (a warm-started head is exact)
        if get_pass(step.pass_name).structural and step.contract == Contract.CHANGES_FUNCTION:
            return True
    return False


def run_identity(model: nn.Module, data: DataArg, train: Dataset, test: Dataset | None) -> dict[str, Any]:
    """What determines a run besides its config: the model (base, constructor arguments, source weights,
    input size, surgery history) and the data (its spec, sizes and class count; for Dataset objects the
    sizes and class count only). Saved in each checkpoint; ``--resume`` must match it."""
    spec = DataSpec.parse(data) if isinstance(data, str) else data
    data_label = (f"{spec.kind}:{spec.name + ':' if spec.name else ''}{spec.path}" if isinstance(spec, DataSpec)
                  else "(Dataset objects)")

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


def _check_resumable(stored: dict[str, Any], cfg: FinetuneConfig, path: Path,
                     identity: dict[str, Any] | None = None, stored_identity: dict[str, Any] | None = None) -> None:
    """Refuse a resume whose config, model or data differs from the checkpoint's, naming every difference."""
    current = cfg.to_dict()
    differ = [f"{k}: {stored.get(k)!r} -> {current[k]!r}" for k in sorted(current)
              if k not in RESUMABLE_DIFFERENCES and stored.get(k) != current[k]]
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


def run_outputs(cfg: FinetuneConfig, formats: Sequence[str]) -> list[str]:
    """The names a run writes in its output directory (files, and the TensorBoard events folder); a new
    kind of output is one more name here (``run_output_files`` checks them all up front)."""
    check_loggers(cfg.log)  # before any work: a missing logger package is found up front
    names = [CHECKPOINT, "metrics.csv", "metrics.jsonl", "curves.png"]
    names += [f"model.{f}" for f in formats]
    return names + ([TENSORBOARD_DIR] if tensorboard_on(cfg.log) else [])


def _make_mixup(cfg: FinetuneConfig, num_classes: int | None):  # noqa: ANN202 (timm.data.Mixup)
    if num_classes is None:
        raise ConfigError("mixup/cutmix need the data's class count; give the Dataset a num_classes attribute.")
    from timm.data import Mixup

    return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                 switch_prob=cfg.mixup_switch_prob, label_smoothing=cfg.label_smoothing, num_classes=num_classes)


def _make_ema(model: nn.Module, cfg: FinetuneConfig):  # noqa: ANN202 (timm.utils.ModelEmaV3)
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=cfg.ema_warmup)


def run_training(
    model: nn.Module,
    data: DataArg,
    config: FinetuneConfig | dict[str, Any] | None = None,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    resume_hint: str = RESUME_HINT,
    labels: RunLabels | None = None,
) -> FinetuneResult:
    """Fine-tune a copy of ``model`` on ``data`` (see the module docstring for what happens when); export
    nothing (``netsurgeon.train.finetune`` trains, then exports).

    Args:
        model: any classifier ``nn.Module`` (typically ``apply(...).model``); it is not modified.
        data: a data spec (``"digits"``, ``"fashion-mnist"``, ``"folder:DIR"``, ``"torchvision:CIFAR10:ROOT"``),
            resized and normalised for the model; or a training Dataset; or ``(train, test)`` Datasets.
        config: a :class:`FinetuneConfig`, or a dict of its fields (strings parsed like ``--set`` values).
        out_dir: where checkpoints, metrics and the plot go (nothing is written without it). Every file a run
            may write there, the final export's included (``run_output_files``), is checked before training.
        resume: continue from ``out_dir/checkpoint.pt``.
        overwrite: start a new run in an ``out_dir`` that already holds one (it is replaced when this one
            completes; until then, and when this one fails, the previous run stays as it was).
        resume_hint: what an interruption's message says to do next (a caller that resumes otherwise says so).
        labels: the run's name, group and store in W&B/MLflow (``compare`` names each job's run).

    Raises:
        ConfigError (bad config, class-count mismatch, a tracker that is not installed), CheckpointError (resume
        problems), TrainingInterrupted (Ctrl-C, SIGTERM, SIGHUP; the checkpoint is saved first), TrainingDiverged (a
        non-finite loss, weights or test loss: nothing from that step on is saved).
    """
    cfg = as_config(config)
    check_loggers(cfg.log)  # before any work, with or without --out
    out = expand_out(out_dir, "out_dir") if out_dir is not None else None  # ~ expanded, "" refused, as --out
    check_model_tensors(model, "fine-tuning")
    if resume and out is None:
        raise ConfigError("resume needs the output directory of the run to continue (--out).")
    if out is not None:
        check_out_dir(out, model, cfg, resume=resume, overwrite=overwrite)  # log=tensorboard without it: an error
    with one_finetune_run(out, resume=resume):  # a failed run leaves out as it was (a caller's block: theirs)
        ctx = setup(cfg.device)
        try:
            return _Run(model, data, cfg, ctx, out, resume_hint=resume_hint, labels=labels).run(resume)
        finally:
            ctx.close()


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


def as_config(config: FinetuneConfig | dict[str, Any] | None) -> FinetuneConfig:
    """A :class:`FinetuneConfig` from itself, a dict of its fields, or nothing (the defaults)."""
    return config if isinstance(config, FinetuneConfig) else FinetuneConfig.from_dict(dict(config or {}))


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


@dataclass
class _Sums:
    """The running epoch's partial sums, on the device (saved in checkpoints for a bit-identical resume)."""

    loss: torch.Tensor
    correct: torch.Tensor
    seen: float

    @classmethod
    def resume(cls, state: TrainState, device: torch.device) -> _Sums:
        return cls(torch.tensor(state.loss_sum, dtype=torch.float64, device=device),
                   torch.tensor(state.correct, dtype=torch.float64, device=device), state.seen)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        with torch.no_grad():
            self.loss += loss.detach().double() * len(y)
            self.correct += (logits.argmax(dim=1) == y).sum()
        self.seen += len(y)

    def store(self, state: TrainState) -> None:
        state.loss_sum, state.correct, state.seen = float(self.loss), float(self.correct), self.seen


class _Run:
    """One fine-tuning run's state (kept in one place so ``finetune`` reads top to bottom)."""

    def __init__(self, model: nn.Module, data: DataArg, cfg: FinetuneConfig, ctx: Context, out: Path | None, *,
                 resume_hint: str = RESUME_HINT, labels: RunLabels | None = None) -> None:
        self.cfg, self.ctx, self.out, self.resume_hint, self.labels = cfg, ctx, out, resume_hint, labels
        self.train_set, self.test_set, self.data_label = resolve_data(data, model, cfg)
        self.num_classes = getattr(self.train_set, "num_classes", None)
        self.workers = resolve_workers(cfg.workers, self.train_set)
        self.batches, self.keys = train_loader(self.train_set, cfg.batch_size, seed=cfg.seed, rank=ctx.rank,
                                               workers=self.workers, device=ctx.device)
        self.test_batches = None if self.test_set is None else eval_loader(
            self.test_set, epoch_indices(self.test_set, ctx, seed=cfg.seed, epoch=0, shuffle=False), cfg.batch_size,
            workers=self.workers, device=ctx.device)
        self.info = get_info(model)
        self.identity = run_identity(model, data, self.train_set, self.test_set)
        self.model = copy_model(model).to(ctx.device)
        self.channels_last = cfg.channels_last if cfg.channels_last is not None else ctx.device.type == "cuda"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.autocast, self.amp = _autocast(cfg, ctx.device)
        history = self.info.history if self.info else []
        new_params = {n for step in history for n in step.new_params}
        self.hooks = hooks_for(self.model, history)
        self.optimizer = _make_optimizer(self.model, cfg, new_params)
        self.ema = _make_ema(self.model, cfg) if cfg.ema_decay is not None else None  # wraps the unwrapped model
        self.mixup = _make_mixup(cfg, self.num_classes) if cfg.mixes else None
        self.trackers = Trackers(None, "none", config={}, project="", name="", fresh=True)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == "fp16" else None
        for hook in self.hooks:
            hook.on_optimizer(self.model, self.optimizer)
        train_model: nn.Module = self.model
        if ctx.distributed:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.train_model = torch.compile(train_model) if cfg.compile else train_model
        self.state = TrainState()
        self.files: list[str] = []
        self.unchecked_loss: tuple[torch.Tensor, str] | None = None  # the last batch's loss, checked one batch late

    # ------------------------------------------------------------------ helpers
    def log(self, message: str) -> None:
        status(message, self.cfg.progress)

    def _evaluate(self, model: nn.Module | None = None,
                  should_stop: Callable[[], bool] | None = None) -> EvalResult | None:
        if self.test_batches is None:
            return None
        return evaluate(model or self.model, self.test_batches, ctx=self.ctx, num_classes=self.num_classes,
                        autocast=self.autocast, limit=self.cfg.limit_eval_batches, channels_last=self.channels_last,
                        should_stop=should_stop)

    def _stop_before_training(self, stop: _StopRequest, during: str) -> None:
        if self._stop_requested(stop):
            raise TrainingInterrupted(f"interrupted during {during}, before training started: nothing of this run "
                                      "was kept (--out is as it was); run the same command again to start over.")

    def _evaluation_row(self, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        """test_loss/top1/top5 of the raw weights, and ema_test_* of the EMA weights when on."""
        row: dict[str, Any] = {}
        result = self._evaluate(should_stop=should_stop)
        if result is not None:
            row.update({Key.TEST_LOSS: result.loss, Key.TEST_TOP1: result.top1, Key.TEST_TOP5: result.top5})
            if self.ema is not None:
                ema = self._evaluate(self.ema.module, should_stop=should_stop)
                row.update({Key.EMA_TEST_LOSS: ema.loss, Key.EMA_TEST_TOP1: ema.top1, Key.EMA_TEST_TOP5: ema.top5})
        return row

    def _train_batches(self, epoch: int, indices: Sequence[int]):
        """The training batches of ``indices`` in ``epoch`` (augmentation drawn from the (epoch, index) keys)."""
        self.keys.set(epoch, indices)
        yield from self._as_input(self.batches)

    def _train_indices(self, epoch: int) -> list[int]:
        indices = epoch_indices(self.train_set, self.ctx, seed=self.cfg.seed, epoch=epoch)
        if self.cfg.limit_train_batches is not None:
            indices = indices[: self.cfg.limit_train_batches * self.cfg.batch_size]
        return _without_stray(indices, self.cfg.batch_size)

    def _save(self) -> None:
        if self.out is not None and self.ctx.is_main:
            save_state(self.out / CHECKPOINT, self.state, model=self.model, optimizer=self.optimizer,
                       scaler=self.scaler, config=self.cfg.to_dict(),
                       hooks=[hook.state_dict() for hook in self.hooks], run=self.identity,
                       ema=self.ema.module.state_dict() if self.ema is not None else None)

    def _write_curves(self) -> None:
        if self.out is None or not self.ctx.is_main:
            return
        files = write_metrics(self.state.metrics, self.out)
        files.append(plot_curves({"fine-tune": self.state.metrics}, self.out / "curves.png",
                                 title=f"{self.info.spec if self.info else 'model'} on {self.data_label}"))
        self.files = sorted(set(self.files) | {str(f) for f in files})

    # ------------------------------------------------------------------ phases
    def start(self, stop: _StopRequest) -> None:
        """Fresh run: BN recalibration after function-changing surgery, then the epoch-0 evaluation (a stop
        request ends either at its next batch: nothing is written)."""
        torch.manual_seed(self.cfg.seed + self.ctx.rank)
        recalibrated = 0
        stop.doing = stop.STARTING
        if _needs_bn_recalibration(self.model, self.cfg):
            order = epoch_indices(self.train_set, Context(device=self.ctx.device), seed=self.cfg.seed, epoch=-1)
            n_batches = min(self.cfg.bn_batches, self.cfg.limit_train_batches or self.cfg.bn_batches)
            order = _without_stray(order[: n_batches * self.cfg.batch_size], self.cfg.batch_size)
            recalibrated = recalibrate_bn(self.model, self._train_batches(-1, order), n_batches,
                                          should_stop=lambda: stop.requested)
            self._stop_before_training(stop, "the BatchNorm re-estimation")
            if self.ema is not None:  # the EMA starts from the recalibrated weights
                self.ema.module.load_state_dict(self.model.state_dict())
            if recalibrated:
                self.log(f"re-estimated {recalibrated} BatchNorm layers on {n_batches} batches at most")
        row: dict[str, Any] = {Key.EPOCH: 0, Key.BN_RECALIBRATED: recalibrated,
                               **self._evaluation_row(should_stop=lambda: stop.requested)}
        self._stop_before_training(stop, "the evaluation before fine-tuning")
        stop.doing = stop.TRAINING
        if Key.TEST_TOP1 in row:
            self.log(f"before fine-tuning: test top-1 {row[Key.TEST_TOP1]:.2f}%")
        self.state.metrics.append(row)

    def _as_input(self, batches: DataLoader):
        """Batches on the device, images in the training memory format."""
        for x, y in batches:
            x, y = x.to(self.ctx.device, non_blocking=True), y.to(self.ctx.device, non_blocking=True)
            yield (x.contiguous(memory_format=torch.channels_last) if self.channels_last else x), y

    def restore(self) -> None:
        payload = load_state(self.out / CHECKPOINT)
        _check_resumable(payload["config"], self.cfg, self.out / CHECKPOINT, self.identity, payload.get("run"))
        try:
            self.model.load_state_dict(payload["model"], strict=True)
            self.optimizer.load_state_dict(payload["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(f"{self.out / CHECKPOINT} does not match this model: "
                                  f"{str(err).splitlines()[0]}") from None
        if self.ema is not None:
            if not payload.get("ema"):
                raise CheckpointError(f"{self.out / CHECKPOINT} holds no EMA weights; resume with the same settings.")
            self.ema.module.load_state_dict(payload["ema"], strict=True)
        if self.scaler is not None and payload["scaler"]:
            self.scaler.load_state_dict(payload["scaler"])
        if len(payload["hooks"]) != len(self.hooks):
            raise CheckpointError(f"{self.out / CHECKPOINT} holds {len(payload['hooks'])} pass hook state(s), "
                                  f"this model's history {len(self.hooks)}; it belongs to another model.")
        for hook, saved in zip(self.hooks, payload["hooks"], strict=True):
            hook.load_state_dict(saved, self.ctx.device)
            hook.on_optimizer(self.model, self.optimizer)
        self.state = payload["state"]
        restore_rng(payload["rng"])
        self.log(f"resuming at epoch {self.state.epoch + 1}, batch {self.state.batch}")

    def train_epoch(self, epoch: int, stop: _StopRequest) -> None:
        """One epoch in named steps: the passes' epoch hooks, the batches, then the epoch's metrics row."""
        cfg, state = self.cfg, self.state
        indices = self._train_indices(epoch)
        if state.batch == 0:
            self._epoch_start_hooks(epoch, indices)
        n_batches = math.ceil(len(indices) / cfg.batch_size)
        steps_per_epoch = math.ceil(n_batches / cfg.accumulate_steps)
        remaining = indices[state.batch * cfg.batch_size:]
        sums = _Sums.resume(state, self.ctx.device)
        self.train_model.train()
        started = time.perf_counter()
        bar = _progress(bool(remaining), epoch, cfg, self.ctx, initial=state.batch, total=n_batches)
        try:
            for x, y in self._train_batches(epoch, remaining):
                stepped = self._train_step(x, y, epoch, len(indices), steps_per_epoch, sums)
                if bar is not None:
                    bar.update(1)
                if stepped and self._stop_requested(stop):  # only between optimizer steps
                    self._check_finite()
                    sums.store(state)
                    self._save()
                    where = (f"{self.out / CHECKPOINT}; {self.resume_hint}" if self.out
                             else "nothing saved (no --out)")
                    raise TrainingInterrupted(f"interrupted in epoch {epoch + 1}, after batch {state.batch}: {where}.")
        finally:
            if bar is not None:
                bar.close()
        self._end_epoch(epoch, sums, time.perf_counter() - started)

    def _epoch_start_hooks(self, epoch: int, indices: list[int]) -> None:
        event = EpochStart(epoch, self.optimizer, lambda: self._train_batches(epoch, indices))
        for hook in self.hooks:
            message = hook.on_epoch_start(self.model, event)
            if message:
                self.log(message)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int, n_images: int, steps_per_epoch: int,
                    sums: _Sums) -> bool:
        """One batch: schedule (on an accumulation group's first batch), mixup, forward (with auxiliary losses),
        backward; on the group's last batch the optimizer step, the passes' step hooks and the EMA update.
        Returns whether the optimizer stepped.

        Each batch's loss is weighted by its share of the group's images, so ``accumulate_steps`` batches of
        ``batch_size`` make the same update as one batch of their union."""
        cfg, state = self.cfg, self.state
        k, size, position = cfg.accumulate_steps, cfg.batch_size, state.batch
        first, group_start = position % k == 0, (position // k) * k * size
        group_images = min(n_images, group_start + k * size) - group_start
        last = (position + 1) % k == 0 or (position + 1) * size >= n_images
        if first:
            factor = cfg.lr_factor(state.step, steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor
            self.optimizer.zero_grad(set_to_none=True)
        targets = y
        if self.mixup is not None and len(y) % 2 == 0:  # timm's Mixup pairs images: an odd last batch is not mixed
            with seeded(draw_seed(cfg.seed, epoch, position, self.ctx.rank, stream="mixup")):
                x, targets = self.mixup(x, y)
        sync = self.train_model.no_sync() if self.ctx.distributed and not last else contextlib.nullcontext()
        with sync:
            with self.autocast:
                logits, aux = split_auxiliary(self.train_model(x))
            if state.step == 0 and first:
                check_classes(logits, self.num_classes)
            if self.num_classes is None:  # a Dataset's labels, unknown up front
                check_labels(logits, y)
            loss = self._loss(logits, targets)
            for extra in aux:
                loss = loss + AUX_LOSS_WEIGHT * self._loss(extra, targets)
            self._backward(loss if group_images == len(y) else loss * (len(y) / group_images))
        self._check_finite((loss.detach(), f"at epoch {epoch + 1}, step {state.step + 1} (batch {state.batch + 1})"))
        if last:
            self._step()
            for hook in self.hooks:
                hook.after_step(self.model, self.optimizer)
            state.step += 1
            if self.ema is not None:
                self.ema.update(self.model, step=state.step)
                for hook in self.hooks:
                    hook.after_ema_update(self.model, self.ema.module)
        sums.add(loss, logits, y)
        state.batch += 1
        return last

    def _check_finite(self, new: tuple[torch.Tensor, str] | None = None) -> None:
        """Stop at the first non-finite loss (every rank at the same batch), before anything from it is saved.

        The previous batch's loss is read once this batch's backward pass is queued, so a GPU is not made to
        wait for every step; a bad step's update is never saved (a checkpoint checks first, and the epoch's
        end checks the weights)."""
        pending, self.unchecked_loss = self.unchecked_loss, new
        if pending is None:
            return
        loss, where = pending
        bad = float(not bool(torch.isfinite(loss)))
        if self.ctx.distributed:
            bad = all_reduce_sum([bad], self.ctx)[0]
        if bad:
            self.unchecked_loss = None
            raise self._diverged(f"{where}: the loss is {float(loss):g}")

    def _diverged(self, where: str) -> TrainingDiverged:
        return TrainingDiverged(f"training diverged {where}; try a lower lr (now {self.cfg.lr:g}) or "
                                "--set clip_grad_norm=1.0; no checkpoint or model from this point on was saved.")

    def _check_epoch_finite(self, epoch: int, row: dict[str, Any]) -> None:
        """After an epoch: finite losses and state (weights can stay finite while BatchNorm statistics overflow)."""
        bad = [k for k in (Key.TRAIN_LOSS, Key.TEST_LOSS, Key.EMA_TEST_LOSS) if k in row and not math.isfinite(row[k])]
        bad += [name for name, t in self.model.state_dict().items()
                if t.is_floating_point() and not bool(torch.isfinite(t).all())][:3]
        if bad:
            raise self._diverged(f"in epoch {epoch + 1}: {', '.join(bad)} not finite")

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Soft-target cross-entropy for mixed targets (label smoothing is in them), else hard-label CE."""
        if targets.ndim == 2:
            from timm.loss import SoftTargetCrossEntropy

            return SoftTargetCrossEntropy()(logits.float(), targets)
        return F.cross_entropy(logits.float(), targets, label_smoothing=self.cfg.label_smoothing)

    def _learning_rates(self) -> dict[str, float]:
        """lr: the pretrained parameters' rate; lr_new: the rate of parameters a pass created (when any)."""
        base = [g["lr"] for g in self.optimizer.param_groups if not g.get("netsurgeon_new")]
        new = [g["lr"] for g in self.optimizer.param_groups if g.get("netsurgeon_new")]
        rates = {Key.LR: base[0] if base else new[0]}
        if base and new:
            rates[Key.LR_NEW] = new[0]
        return rates

    def _end_epoch(self, epoch: int, sums: _Sums, elapsed: float) -> None:
        """Reduce across ranks, evaluate when due, append the metrics row and reset the position."""
        cfg, ctx, state = self.cfg, self.ctx, self.state
        self._check_finite()  # the epoch's last batch
        broadcast_buffers(self.model, ctx)
        total_loss, total_correct, total_seen = all_reduce_sum([float(sums.loss), float(sums.correct), sums.seen],
                                                               ctx)
        row: dict[str, Any] = {Key.EPOCH: epoch + 1, **self._learning_rates(),
                               Key.TRAIN_LOSS: total_loss / max(total_seen, 1),
                               Key.TRAIN_TOP1: 100 * total_correct / max(total_seen, 1), Key.SECONDS: round(elapsed, 3),
                               Key.IMAGES_PER_S: round(total_seen / max(elapsed, 1e-9), 1)}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            row.update(self._evaluation_row())
        self._check_epoch_finite(epoch, row)
        state.metrics.append(row)
        state.epoch, state.batch, state.loss_sum, state.correct, state.seen = epoch + 1, 0, 0.0, 0.0, 0.0
        test = f", test top-1 {row[Key.TEST_TOP1]:.2f}%" if Key.TEST_TOP1 in row else ""
        test += f" (EMA {row[Key.EMA_TEST_TOP1]:.2f}%)" if Key.EMA_TEST_TOP1 in row else ""
        self.log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row[Key.TRAIN_LOSS]:.4f}{test} "
                 f"({row[Key.IMAGES_PER_S]:.0f} images/s)")

    def _backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _step(self) -> None:
        clip = self.cfg.clip_grad_norm
        if self.scaler is not None:
            if clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            return
        if clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()

    def _stop_requested(self, stop: _StopRequest) -> bool:
        if not self.ctx.distributed:
            return stop.requested
        return all_reduce_sum([float(stop.requested)], self.ctx)[0] > 0  # every rank stops at the same batch

    def _chosen(self) -> tuple[nn.Module, str]:
        """The weights the run returns (and its export holds): raw, or the EMA's (ema_export; best: the better
        top-1 on the last evaluation, raw on a tie; EMA when nothing was evaluated)."""
        if self.ema is None:
            return self.model, "raw"
        choice = self.cfg.ema_export
        if choice == "best":
            last = next((r for r in reversed(self.state.metrics) if Key.EMA_TEST_TOP1 in r), None)
            choice = "ema" if last is None or last[Key.EMA_TEST_TOP1] > last[Key.TEST_TOP1] else "raw"
        return (self.ema.module if choice == "ema" else self.model), choice

    def _open_trackers(self, resume: bool) -> None:
        if self.out is not None and self.ctx.is_main:
            self.trackers = Trackers(self.out, self.cfg.log, config=self.cfg.to_dict(), project=self.cfg.wandb_project,
                                     name=self.out.name, fresh=not resume, labels=self.labels)

    def run(self, resume: bool) -> FinetuneResult:
        try:
            with _StopRequest() as stop:  # from the first evaluation on
                if resume:
                    self.restore()
                    self._open_trackers(resume)
                else:
                    self.start(stop)
                    self._open_trackers(resume)
                    self.trackers.log(self.state.metrics[0])
                for epoch in range(self.state.epoch, self.cfg.epochs):
                    self.train_epoch(epoch, stop)
                    self._save()
                    self._write_curves()
                    self.trackers.log(self.state.metrics[-1])
        finally:
            self.trackers.close()
            self.batches = self.test_batches = None  # persistent DataLoader workers end here
        self.ctx.barrier()  # every rank has finished, and rank 0 has written the last checkpoint
        if self.out is not None and self.ctx.is_main:
            self.files = sorted(set(self.files) | {str(self.out / CHECKPOINT)})
            if self.trackers.writer is not None:
                self.files = sorted(set(self.files) | {str(self.out / TENSORBOARD_DIR)})
        chosen, weights = self._chosen()
        chosen.eval()
        return FinetuneResult(chosen, self.state.metrics, self.files, weights=weights, config=self.cfg,
                              data=self.data_label, amp=self.amp, world_size=self.ctx.world_size, rank=self.ctx.rank,
                              tracked=dict(self.trackers.runs))


def _without_stray(indices: list[int], batch_size: int) -> list[int]:
    """The indices without a last batch of one image (BatchNorm cannot train on it): that image is left out of
    the epoch, as timm's loader drops a last partial batch (``drop_last``); the next epoch's order differs."""
    if batch_size > 1 and len(indices) > 1 and len(indices) % batch_size == 1:
        return indices[:-1]
    return indices


def _progress(any_left: bool, epoch: int, cfg: FinetuneConfig, ctx: Context, *, initial: int, total: int):
    if not (cfg.progress and ctx.is_main and sys.stderr.isatty() and any_left):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                leave=False, file=sys.stderr, dynamic_ncols=True)
