"""Experiment logging: TensorBoard event files in ``--out`` (and Weights & Biases when asked), rank 0 only.

Each metrics row (one per epoch, epoch 0 being the evaluation before fine-tuning) becomes scalars at
step = epoch: ``train/loss``, ``train/top1``, ``lr/base`` (the pretrained parameters' rate),
``lr/new_params`` (the rate of parameters a pass created, when there are any), ``test/{loss,top1,top5}``,
``ema/{loss,top1,top5}`` (the EMA weights), ``speed/images_per_s``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from netsurgeon.errors import ConfigError
from netsurgeon.train.schema import Key

__all__ = ["SCALARS", "TENSORBOARD_DIR", "Trackers", "check_loggers", "tensorboard_on"]

TENSORBOARD_DIR = "tensorboard"
#: metrics-row key -> scalar tag
SCALARS = {Key.TRAIN_LOSS: "train/loss", Key.TRAIN_TOP1: "train/top1", Key.LR: "lr/base", Key.LR_NEW: "lr/new_params",
           Key.TEST_LOSS: "test/loss", Key.TEST_TOP1: "test/top1", Key.TEST_TOP5: "test/top5",
           Key.EMA_TEST_LOSS: "ema/loss", Key.EMA_TEST_TOP1: "ema/top1", Key.EMA_TEST_TOP5: "ema/top5",
           Key.IMAGES_PER_S: "speed/images_per_s"}


def tensorboard_on(log: str) -> bool:
    """Whether a run with ``log`` writes TensorBoard events (auto: when tensorboard is installed)."""
    if log == "none":
        return False
    installed = importlib.util.find_spec("tensorboard") is not None
    if log == "tensorboard" and not installed:
        raise ConfigError("log=tensorboard needs the tensorboard package: pip install 'netsurgeon[tensorboard]' "
                          "(or --set log=none).")
    return installed


def check_loggers(log: str) -> None:
    """Refuse a ``log`` whose package is missing, before any work (not after the first evaluation)."""
    tensorboard_on(log)
    if log == "wandb" and importlib.util.find_spec("wandb") is None:
        raise ConfigError("log=wandb needs the wandb package: pip install 'netsurgeon[wandb]' (then wandb login), "
                          "or use log=tensorboard.")


class Trackers:
    """The run's loggers; ``log(row)`` after each epoch, ``close()`` at the end."""

    def __init__(self, out: Path | None, log: str, *, config: dict[str, Any], project: str, name: str,
                 fresh: bool) -> None:
        self.writer = self.wandb = None
        if out is None or log == "none":
            return
        if tensorboard_on(log):
            from torch.utils.tensorboard import SummaryWriter

            directory = out / TENSORBOARD_DIR
            if fresh and directory.is_dir():  # --overwrite: the old run's curves go
                for old in directory.glob("events.out.tfevents.*"):
                    old.unlink()
            self.writer = SummaryWriter(log_dir=str(directory))
        if log == "wandb":
            check_loggers(log)
            import wandb

            self.wandb = wandb.init(project=project, name=name, config=config, dir=str(out), resume="allow")

    def log(self, row: dict[str, Any]) -> None:
        step = int(row[Key.EPOCH])
        values = {tag: float(row[key]) for key, tag in SCALARS.items() if row.get(key) is not None}
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)
            self.writer.flush()
        if self.wandb is not None:
            self.wandb.log({**values, Key.EPOCH: step}, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()
