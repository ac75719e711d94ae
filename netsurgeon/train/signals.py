"""Stopping a run from outside: Ctrl-C, SIGTERM or SIGHUP set a flag that the loop reads between batches."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

__all__ = ["StopRequest"]


class StopRequest:
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

    def __enter__(self) -> StopRequest:
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
