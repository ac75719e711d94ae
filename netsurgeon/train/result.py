"""What a fine-tuning run returns: the trained model, its metrics, its files and what the run was."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from netsurgeon.export import ExportResult
from netsurgeon.train.config import FinetuneConfig

__all__ = ["FinetuneResult"]


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
