"""Shared helpers of the benchmark scripts: medians of interleaved runs, and peak live memory.

Peak memory on a GPU is the allocator's ``max_memory_allocated``. On the CPU, PyTorch keeps no
allocator statistics, so :class:`HeapPeak` samples glibc's in-use heap (``mallinfo2``: arena bytes in
use plus mmap'd blocks) after every aten op through a ``TorchDispatchMode``. Allocations made and freed
inside one op (a convolution's scratch space) are missed; they are the same for every variant compared.
"""

from __future__ import annotations

import ctypes
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _heap_reader() -> Callable[[], int] | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None

    def read() -> int:
        info = libc.mallinfo2()
        return info.uordblks + info.hblkhd

    return read


class HeapPeak(TorchDispatchMode):
    """Peak in-use heap bytes above the level at entry, sampled after every aten op (CPU)."""

    def __init__(self) -> None:
        super().__init__()
        self._read = _heap_reader()
        if self._read is None:
            raise RuntimeError("CPU peak memory needs glibc's mallinfo2 (Linux, glibc >= 2.33)")
        self.base = self.peak = 0

    def __enter__(self):
        self.base = self.peak = self._read()
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, self._read())
        return out

    @property
    def bytes(self) -> int:
        return self.peak - self.base


def peak_bytes(step: Callable[[], None], device: torch.device) -> int:
    """Peak memory of one call of ``step`` above what was live before it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with HeapPeak() as tracker:
        step()
    return tracker.bytes


def timed(step: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_medians(steps: dict[str, Callable[[], None]], device: torch.device, runs: int,
                        warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each step, run round-robin so drift hits every variant alike."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(runs):
        for name, step in steps.items():
            samples[name].append(timed(step, device))
    return {name: statistics.median(v) for name, v in samples.items()}


def environment(device: torch.device) -> str:
    import platform

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return (f"torch {torch.__version__}, device {device.type} ({name}), "
            f"{torch.get_num_threads()} CPU threads")
