"""The training loop: ``run_training`` fine-tunes a copy of a model, epoch by epoch, step by step.

What a run does, in order, is in :mod:`netsurgeon.train`'s docstring; the parts it is built from are in
:mod:`~netsurgeon.train.components`, its output directory and resume policy in :mod:`~netsurgeon.train.outputs`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from netsurgeon.atomic import expand_out
from netsurgeon.data import draw_seed, seeded
from netsurgeon.errors import CheckpointError, ConfigError, TrainingDiverged, TrainingInterrupted
from netsurgeon.hooks import EpochStart, hooks_for
from netsurgeon.models.info import copy_model, get_info
from netsurgeon.progress import progress_bar, status
from netsurgeon.train.batches import DataArg, run_data, without_stray
from netsurgeon.train.components import (
    AUX_LOSS_WEIGHT,
    build_parts,
    chosen_weights,
    learning_rates,
    needs_bn_recalibration,
    split_auxiliary,
    training_loss,
)
from netsurgeon.train.config import FinetuneConfig, as_config
from netsurgeon.train.distributed import Context, all_reduce_sum, broadcast_buffers, epoch_indices, setup
from netsurgeon.train.evaluate import EvalResult, check_classes, check_labels, evaluate, recalibrate_bn
from netsurgeon.train.metrics import plot_curves, write_metrics
from netsurgeon.train.optimizers import check_available
from netsurgeon.train.outputs import (
    CHECKPOINT,
    RESUME_HINT,
    check_out_dir,
    check_resumable,
    one_finetune_run,
    run_identity,
)
from netsurgeon.train.result import FinetuneResult
from netsurgeon.train.schema import Key
from netsurgeon.train.signals import StopRequest
from netsurgeon.train.state import EpochSums, TrainState, load_state, restore_rng, save_state
from netsurgeon.train.tracking import TENSORBOARD_DIR, RunLabels, Trackers, check_loggers
from netsurgeon.validate import check_model_tensors

__all__ = ["FinetuneResult", "run_training"]


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
        data: a data spec string or :class:`~netsurgeon.data.DataSpec` (the kinds: :mod:`netsurgeon.data.kinds`),
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
    check_available(cfg.optimizer)
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


class _Run:
    """One fine-tuning run's state (kept in one place so ``finetune`` reads top to bottom)."""

    def __init__(self, model: nn.Module, data: DataArg, cfg: FinetuneConfig, ctx: Context, out: Path | None, *,
                 resume_hint: str = RESUME_HINT, labels: RunLabels | None = None) -> None:
        self.cfg, self.ctx, self.out, self.resume_hint, self.labels = cfg, ctx, out, resume_hint, labels
        self.data = run_data(data, model, cfg, ctx)
        self.identity = run_identity(model, data, self.data.train, self.data.test)
        self.model = copy_model(model).to(ctx.device)
        self.channels_last = cfg.channels_last if cfg.channels_last is not None else ctx.device.type == "cuda"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        info = get_info(model)
        history = info.history if info else []
        self.hooks = hooks_for(self.model, history)
        # the optimizer, AMP, EMA (around the unwrapped model) and mixup
        self.parts = build_parts(self.model, cfg, ctx.device, {n for step in history for n in step.new_params},
                                 self.data.num_classes)
        self.trackers = Trackers(None, "none", config={}, project="", name="", fresh=True)
        for hook in self.hooks:
            hook.on_optimizer(self.model, self.parts.optimizer)
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
        if self.data.test_batches is None:
            return None
        return evaluate(model or self.model, self.data.test_batches, ctx=self.ctx, num_classes=self.data.num_classes,
                        autocast=self.parts.autocast, limit=self.cfg.limit_eval_batches,
                        channels_last=self.channels_last, should_stop=should_stop)

    def _stop_before_training(self, stop: StopRequest, during: str) -> None:
        if self._stop_requested(stop):
            raise TrainingInterrupted(f"interrupted during {during}, before training started: nothing of this run "
                                      "was kept (--out is as it was); run the same command again to start over.")

    def _evaluation_row(self, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        """test_loss/top1/top5 of the raw weights, and ema_test_* of the EMA weights when on."""
        row: dict[str, Any] = {}
        result = self._evaluate(should_stop=should_stop)
        if result is not None:
            row.update({Key.TEST_LOSS: result.loss, Key.TEST_TOP1: result.top1, Key.TEST_TOP5: result.top5})
            if self.parts.ema is not None:
                ema = self._evaluate(self.parts.ema.module, should_stop=should_stop)
                row.update({Key.EMA_TEST_LOSS: ema.loss, Key.EMA_TEST_TOP1: ema.top1, Key.EMA_TEST_TOP5: ema.top5})
        return row

    def _train_batches(self, epoch: int, indices: Sequence[int]):
        """The training batches of ``indices`` in ``epoch`` (augmentation drawn from the (epoch, index) keys)."""
        self.data.keys.set(epoch, indices)
        yield from self._as_input(self.data.batches)

    def _train_indices(self, epoch: int) -> list[int]:
        indices = epoch_indices(self.data.train, self.ctx, seed=self.cfg.seed, epoch=epoch)
        if self.cfg.limit_train_batches is not None:
            indices = indices[: self.cfg.limit_train_batches * self.cfg.batch_size]
        return without_stray(indices, self.cfg.batch_size)

    def _save(self) -> None:
        if self.out is not None and self.ctx.is_main:
            save_state(self.out / CHECKPOINT, self.state, model=self.model, optimizer=self.parts.optimizer,
                       scaler=self.parts.scaler, config=self.cfg.to_dict(),
                       hooks=[hook.state_dict() for hook in self.hooks], run=self.identity,
                       ema=self.parts.ema.module.state_dict() if self.parts.ema is not None else None)

    def _write_curves(self) -> None:
        if self.out is None or not self.ctx.is_main:
            return
        files = write_metrics(self.state.metrics, self.out)
        files.append(plot_curves({"fine-tune": self.state.metrics}, self.out / "curves.png",
                                 title=f"{getattr(get_info(self.model), 'spec', 'model')} on {self.data.label}"))
        self.files = sorted(set(self.files) | {str(f) for f in files})

    # ------------------------------------------------------------------ phases
    def start(self, stop: StopRequest) -> None:
        """Fresh run: BN recalibration after function-changing surgery, then the epoch-0 evaluation (a stop
        request ends either at its next batch: nothing is written)."""
        torch.manual_seed(self.cfg.seed + self.ctx.rank)
        recalibrated = 0
        stop.doing = stop.STARTING
        if needs_bn_recalibration(self.model, self.cfg):
            order = epoch_indices(self.data.train, Context(device=self.ctx.device), seed=self.cfg.seed, epoch=-1)
            n_batches = min(self.cfg.bn_batches, self.cfg.limit_train_batches or self.cfg.bn_batches)
            order = without_stray(order[: n_batches * self.cfg.batch_size], self.cfg.batch_size)
            recalibrated = recalibrate_bn(self.model, self._train_batches(-1, order), n_batches,
                                          should_stop=lambda: stop.requested)
            self._stop_before_training(stop, "the BatchNorm re-estimation")
            if self.parts.ema is not None:  # the EMA starts from the recalibrated weights
                self.parts.ema.module.load_state_dict(self.model.state_dict())
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
        check_resumable(payload["config"], self.cfg, self.out / CHECKPOINT, self.identity, payload.get("run"))
        try:
            self.model.load_state_dict(payload["model"], strict=True)
            self.parts.optimizer.load_state_dict(payload["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(f"{self.out / CHECKPOINT} does not match this model: "
                                  f"{str(err).splitlines()[0]}") from None
        if self.parts.ema is not None:
            if not payload.get("ema"):
                raise CheckpointError(f"{self.out / CHECKPOINT} holds no EMA weights; resume with the same settings.")
            self.parts.ema.module.load_state_dict(payload["ema"], strict=True)
        if self.parts.scaler is not None and payload["scaler"]:
            self.parts.scaler.load_state_dict(payload["scaler"])
        if len(payload["hooks"]) != len(self.hooks):
            raise CheckpointError(f"{self.out / CHECKPOINT} holds {len(payload['hooks'])} pass hook state(s), "
                                  f"this model's history {len(self.hooks)}; it belongs to another model.")
        for hook, saved in zip(self.hooks, payload["hooks"], strict=True):
            hook.load_state_dict(saved, self.ctx.device)
            hook.on_optimizer(self.model, self.parts.optimizer)
        self.state = payload["state"]
        restore_rng(payload["rng"])
        self.log(f"resuming at epoch {self.state.epoch + 1}, batch {self.state.batch}")

    def train_epoch(self, epoch: int, stop: StopRequest) -> None:
        """One epoch in named steps: the passes' epoch hooks, the batches, then the epoch's metrics row."""
        cfg, state = self.cfg, self.state
        indices = self._train_indices(epoch)
        if state.batch == 0:
            self._epoch_start_hooks(epoch, indices)
        n_batches = math.ceil(len(indices) / cfg.batch_size)
        steps_per_epoch = math.ceil(n_batches / cfg.accumulate_steps)
        remaining = indices[state.batch * cfg.batch_size:]
        sums = EpochSums.resume(state, self.ctx.device)
        self.train_model.train()
        started = time.perf_counter()
        bar = progress_bar(n_batches, initial=state.batch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                           enabled=cfg.progress and self.ctx.is_main and bool(remaining))
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
        event = EpochStart(epoch, self.parts.optimizer, lambda: self._train_batches(epoch, indices))
        for hook in self.hooks:
            message = hook.on_epoch_start(self.model, event)
            if message:
                self.log(message)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int, n_images: int, steps_per_epoch: int,
                    sums: EpochSums) -> bool:
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
            for group in self.parts.optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor
            self.parts.optimizer.zero_grad(set_to_none=True)
        targets = y
        if self.parts.mixup is not None and len(y) % 2 == 0:  # timm's Mixup pairs images: an odd last one is not mixed
            with seeded(draw_seed(cfg.seed, epoch, position, self.ctx.rank, stream="mixup")):
                x, targets = self.parts.mixup(x, y)
        sync = self.train_model.no_sync() if self.ctx.distributed and not last else contextlib.nullcontext()
        with sync:
            with self.parts.autocast:
                logits, aux = split_auxiliary(self.train_model(x))
            if state.step == 0 and first:
                check_classes(logits, self.data.num_classes)
            if self.data.num_classes is None:  # a Dataset's labels, unknown up front
                check_labels(logits, y)
            loss = self._loss(logits, targets)
            for extra in aux:
                loss = loss + AUX_LOSS_WEIGHT * self._loss(extra, targets)
            self._backward(loss if group_images == len(y) else loss * (len(y) / group_images))
        self._check_finite((loss.detach(), f"at epoch {epoch + 1}, step {state.step + 1} (batch {state.batch + 1})"))
        if last:
            self._step()
            for hook in self.hooks:
                hook.after_step(self.model, self.parts.optimizer)
            state.step += 1
            if self.parts.ema is not None:
                self.parts.ema.update(self.model, step=state.step)
                for hook in self.hooks:
                    hook.after_ema_update(self.model, self.parts.ema.module)
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
        return training_loss(logits, targets, self.cfg.label_smoothing)

    def _end_epoch(self, epoch: int, sums: EpochSums, elapsed: float) -> None:
        """Reduce across ranks, evaluate when due, append the metrics row and reset the position."""
        cfg, ctx, state = self.cfg, self.ctx, self.state
        self._check_finite()  # the epoch's last batch
        broadcast_buffers(self.model, ctx)
        total_loss, total_correct, total_seen = all_reduce_sum([float(sums.loss), float(sums.correct), sums.seen],
                                                               ctx)
        row: dict[str, Any] = {Key.EPOCH: epoch + 1, **learning_rates(self.parts.optimizer),
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
        if self.parts.scaler is not None:
            self.parts.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _step(self) -> None:
        clip = self.cfg.clip_grad_norm
        if self.parts.scaler is not None:
            if clip is not None:
                self.parts.scaler.unscale_(self.parts.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.parts.scaler.step(self.parts.optimizer)
            self.parts.scaler.update()
            return
        if clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.parts.optimizer.step()

    def _stop_requested(self, stop: StopRequest) -> bool:
        if not self.ctx.distributed:
            return stop.requested
        return all_reduce_sum([float(stop.requested)], self.ctx)[0] > 0  # every rank stops at the same batch

    def _open_trackers(self, resume: bool) -> None:
        if self.out is not None and self.ctx.is_main:
            self.trackers = Trackers(self.out, self.cfg.log, config=self.cfg.to_dict(), project=self.cfg.wandb_project,
                                     name=self.out.name, fresh=not resume, labels=self.labels)

    def run(self, resume: bool) -> FinetuneResult:
        try:
            with StopRequest() as stop:  # from the first evaluation on
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
            self.data.close()  # persistent DataLoader workers end here
        self.ctx.barrier()  # every rank has finished, and rank 0 has written the last checkpoint
        if self.out is not None and self.ctx.is_main:
            self.files = sorted(set(self.files) | {str(self.out / CHECKPOINT)})
            if self.trackers.writer is not None:
                self.files = sorted(set(self.files) | {str(self.out / TENSORBOARD_DIR)})
        chosen, weights = chosen_weights(self.model, self.parts.ema, self.cfg.ema_export, self.state.metrics)
        chosen.eval()
        return FinetuneResult(chosen, self.state.metrics, self.files, weights=weights, config=self.cfg,
                              data=self.data.label, amp=self.parts.amp, world_size=self.ctx.world_size,
                              rank=self.ctx.rank, tracked=dict(self.trackers.runs))
