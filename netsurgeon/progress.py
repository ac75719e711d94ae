"""Progress on stderr: one-line messages for long steps (the CLI, the loop, the demo and recipe runs) and the loop's
per-epoch bar."""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["is_main_process", "progress_bar", "status"]


#: a tqdm bar (imported lazily)
Bar = Any


def is_main_process() -> bool:
    """False on the non-zero ranks of a torchrun job, which train but print and write nothing."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def status(message: str, enabled: bool = True) -> None:
    """Print ``· message`` on stderr (so --json output stays clean), from rank 0 only under torchrun."""
    if enabled and is_main_process():
        print(f"· {message}", file=sys.stderr, flush=True)


def progress_bar(total: int, *, initial: int, desc: str, enabled: bool = True) -> Bar | None:
    """A tqdm bar of batches on stderr, only when ``enabled`` and stderr is a terminal (else None)."""
    if not (enabled and sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False, file=sys.stderr,
                dynamic_ncols=True)
