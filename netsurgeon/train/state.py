"""Training checkpoints: everything a resumed run needs to continue bit for bit, written atomically.

A checkpoint holds the model and optimizer state, the weight EMA (when on), the AMP scaler, the position
in the run (epoch and batch), the partial sums of the running epoch, the RNG states, the state of each pass's
training hooks (``netsurgeon.hooks``: masks kept as non-persistent buffers, say), the metrics so far, and what
determines the run besides its config (model, surgery, data: ``--resume`` checks it). It is
written with ``torch.save`` to a temporary file that is then renamed, and read back with
``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from netsurgeon.atomic import staged_files
from netsurgeon.errors import CheckpointError
from netsurgeon.models.checkpoint import describe_load_error

__all__ = ["FORMAT", "EpochSums", "TrainState", "load_state", "restore_rng", "save_state"]

FORMAT = "netsurgeon.train.v2"  # v2: the passes' training-hook states replace v1's fixed mask entry


@dataclass
class TrainState:
    """The loop's position; ``epoch`` counts completed epochs, ``batch`` the batches done in the next one."""

    epoch: int = 0
    batch: int = 0
    step: int = 0  # optimizer steps in the whole run
    loss_sum: float = 0.0  # partial sums of the running epoch
    correct: float = 0.0
    seen: float = 0.0
    metrics: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class EpochSums:
    """The running epoch's partial sums, on the device (saved in checkpoints for a bit-identical resume)."""

    loss: torch.Tensor
    correct: torch.Tensor
    seen: float

    @classmethod
    def resume(cls, state: TrainState, device: torch.device) -> EpochSums:
        return cls(torch.tensor(state.loss_sum, dtype=torch.float64, device=device),
                   torch.tensor(state.correct, dtype=torch.float64, device=device), state.seen)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        with torch.no_grad():
            self.loss += loss.detach().double() * len(y)
            self.correct += (logits.argmax(dim=1) == y).sum()
        self.seen += len(y)

    def store(self, state: TrainState) -> None:
        state.loss_sum, state.correct, state.seen = float(self.loss), float(self.correct), self.seen


def save_state(path: Path, state: TrainState, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler | None, config: dict[str, Any], hooks: list[dict[str, Any]],
               run: dict[str, Any] | None = None, ema: dict[str, Any] | None = None) -> None:
    """``run``: what determines the run besides its config (the model, its surgery, the data), for resume;
    ``ema``: the weight EMA's state dict (None without EMA)."""
    payload = {
        "format": FORMAT,
        "state": asdict(state),
        "config": config,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "hooks": hooks,
        "run": run or {},
        "ema": ema or {},  # the weight EMA's state dict (empty without EMA)
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }
    with staged_files([path]) as (temp,):
        torch.save(payload, temp)


def load_state(path: Path) -> dict[str, Any]:
    """Read a checkpoint (tensors and plain values only); a clear error for anything else."""
    if not path.exists():
        raise CheckpointError(f"no checkpoint to resume from at {path}; run without --resume to start a new run.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or unsafe content
        raise CheckpointError(describe_load_error(err, f"training checkpoint {path}") +
                              " Start over with --overwrite, or restore the file.") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a netsurgeon training checkpoint ({FORMAT}).")
    problems = _check_payload(payload)
    if problems:
        raise CheckpointError(f"{path} is damaged ({'; '.join(problems[:3])}); start over with --overwrite.")
    payload["state"] = TrainState(**payload["state"])
    return payload


def _check_payload(payload: dict[str, Any]) -> list[str]:
    problems = []
    state = payload.get("state")
    fields = TrainState.__dataclass_fields__
    if not isinstance(state, dict) or set(state) != set(fields):
        problems.append("state has the wrong keys")
    else:
        for key in ("epoch", "batch", "step"):
            if not isinstance(state[key], int) or isinstance(state[key], bool) or state[key] < 0:
                problems.append(f"state.{key} is not a non-negative integer")
        if not isinstance(state["metrics"], list):
            problems.append("state.metrics is not a list")
    for key in ("config", "model", "optimizer", "scaler", "rng"):
        if not isinstance(payload.get(key), dict):
            problems.append(f"{key} is missing")
    hooks = payload.get("hooks")
    if not isinstance(hooks, list) or not all(isinstance(h, dict) for h in hooks):
        problems.append("hooks is missing")
    rng = payload.get("rng")
    if isinstance(rng, dict) and not isinstance(rng.get("torch"), torch.Tensor):
        problems.append("rng.torch is missing")
    return problems


def restore_rng(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
