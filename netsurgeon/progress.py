"""One-line progress messages for long steps, shared by the CLI, the loop, the demo and recipe runs."""

from __future__ import annotations

import os
import sys

__all__ = ["is_main_process", "status"]


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
