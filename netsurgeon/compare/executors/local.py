"""``--executor local`` (the default): the jobs in this process, one after another, in grid order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from netsurgeon.compare.executors.base import Grid, JobResult, register_executor
from netsurgeon.compare.job import run_job
from netsurgeon.config import Config

__all__ = ["LocalExecutor", "LocalOptions"]


@dataclass(frozen=True)
class LocalOptions(Config):
    """No options: the jobs run here, in order."""


@register_executor("local", LocalOptions)
class LocalExecutor:
    def __init__(self, options: LocalOptions) -> None:
        self.options = options

    def run(self, grid: Grid) -> Iterator[JobResult]:
        for arm, seed in grid.jobs:
            if grid.starting is not None:
                grid.starting((arm, seed))
            yield (arm, seed), run_job(grid.out, arm.slug, seed)
