"""One-line progress messages for long steps, shared by the CLI, the loop, the demo and recipe runs."""

from __future__ import annotations

import sys

__all__ = ["status"]


def status(message: str, enabled: bool = True) -> None:
    """Print ``· message`` on stderr (so --json output stays clean), from rank 0 only under torchrun."""
    if not enabled:
        return
    from netsurgeon.train.distributed import is_main_process

    if is_main_process():
        print(f"· {message}", file=sys.stderr, flush=True)
