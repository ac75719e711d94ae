"""Atomic output: files are written under temporary names and renamed only when all succeeded."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from netsurgeon.errors import ExportError

__all__ = ["check_not_inputs", "staged_files"]


def check_not_inputs(outputs: list[Path], inputs: list[str], overwrite: bool) -> None:
    """Refuse to write over an input file, or over an existing output unless ``overwrite``."""
    resolved_inputs = {str(Path(p).resolve()) for p in inputs}
    for out in outputs:
        if str(out.resolve()) in resolved_inputs:
            raise ExportError(f"{out} is an input of this run; choose another output directory (--out).")
        if out.exists() and not overwrite:
            raise ExportError(f"{out} already exists; pass --overwrite (overwrite=True) or choose another --out.")


@contextlib.contextmanager
def staged_files(finals: list[Path]) -> Iterator[list[Path]]:
    """Yield temporary paths beside ``finals``; on success rename them all, on any failure delete them."""
    temps: list[Path] = []
    try:
        for final in finals:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
            os.close(fd)
            temps.append(Path(name))
        yield temps
        for temp, final in zip(temps, finals, strict=True):
            os.replace(temp, final)
    finally:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
