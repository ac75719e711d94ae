"""The executor protocol and its registry: what runs a comparison's jobs.

An executor is one class with a ``run(grid)`` method and an options dataclass (a
:class:`~netsurgeon.config.Config`, so ``--executor-opt key=value`` items are parsed and checked like
``--set``), registered under a name with :func:`register_executor`. Every executor runs each job through
:func:`netsurgeon.compare.job.run_job` (``out``, arm, seed) and nothing else, so a job gives the same result
wherever it ran; ``run`` yields the jobs as they finish so the caller can report progress.

A new executor is one file::

    @register_executor("mine", MineOptions)
    class MineExecutor:
        def __init__(self, options: MineOptions) -> None: ...
        def run(self, grid: Grid) -> Iterator[tuple[Job, dict | Exception]]: ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from netsurgeon.compare.spec import Arm, CompareSpec
from netsurgeon.config import Config, parse_set_options
from netsurgeon.errors import ConfigError, NetsurgeonError

__all__ = ["EXECUTORS", "Executor", "Grid", "Job", "JobFailed", "JobResult", "make_executor", "parse_executor_options",
           "register_executor"]

Job = tuple[Arm, int]
JobResult = tuple[Job, "dict[str, Any] | Exception"]


class JobFailed(NetsurgeonError, RuntimeError):
    """A job of the comparison failed (the others went on)."""


@dataclass(frozen=True)
class Grid:
    """What an executor is given: the comparison's directory and spec, the jobs to run, and how to report."""

    out: Path
    spec: CompareSpec
    jobs: Sequence[Job]
    say: Callable[[str], None] = print  # one status line (stderr, when progress is on)
    starting: Callable[[Job], None] | None = None  # called just before a job runs here (sequential executors)
    on_submit: Callable[[list[str]], None] | None = None  # scheduler job ids, once submitted

    def job_dir(self, arm: Arm, seed: int) -> Path:
        return self.spec.job_dir(self.out, arm, seed)


class Executor(Protocol):
    """Runs the grid's jobs; yields ``((arm, seed), its job.json record or the exception)`` as each finishes."""

    def run(self, grid: Grid) -> Iterator[JobResult]: ...


#: name -> (executor class, options class)
EXECUTORS: dict[str, tuple[Callable[[Any], Executor], type[Config]]] = {}


def register_executor(name: str, options: type[Config]) -> Callable[[type], type]:
    """Class decorator: make ``cls(options_instance)`` the executor ``--executor NAME`` runs."""
    if not isinstance(options, type) or not issubclass(options, Config):
        raise TypeError(f"executor {name!r}: its options must be a netsurgeon.config.Config dataclass")

    def add(cls: type) -> type:
        if name in EXECUTORS and EXECUTORS[name][0] is not cls:
            raise ValueError(f"executor {name!r} is already registered ({EXECUTORS[name][0].__name__})")
        EXECUTORS[name] = (cls, options)
        return cls

    return add


def parse_executor_options(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``--executor-opt key=value`` items (or a mapping) as a dict."""
    if isinstance(items, Mapping):
        return dict(items)
    return dict(parse_set_options(list(items or [])))


def make_executor(name: str, options: Config | Mapping[str, Any] | Sequence[str] | None = None) -> Executor:
    """The executor registered as ``name``, with its options: an instance of its options class, or
    ``key=value`` items / a mapping parsed into one (unknown keys and bad values are one-line errors)."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r} is not an executor; choose one of: {', '.join(sorted(EXECUTORS))}.")
    cls, options_cls = EXECUTORS[name]
    if isinstance(options, Config):
        if not isinstance(options, options_cls):
            raise ConfigError(f"--executor {name} takes {options_cls.__name__}, not {type(options).__name__}.")
        return cls(options)
    values = parse_executor_options(options)
    try:
        made = options_cls.from_dict(values)
    except ConfigError as err:
        raise ConfigError(f"--executor-opt for {name}: {err}") from None
    return cls(made)
