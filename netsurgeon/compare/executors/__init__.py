"""Where a comparison's jobs run: a registry of executors behind one small protocol (``base``).

==========  ===========================================  ==========================
name        what                                         options
==========  ===========================================  ==========================
local       here, one after another (the default)        :class:`LocalOptions`
parallel    here, N child processes at a time (--jobs N)  :class:`ParallelOptions`
slurm       a SLURM job array through submitit           :class:`SlurmOptions`
==========  ===========================================  ==========================

A new executor is one file with one :func:`register_executor` (see ``base``).
"""

from netsurgeon.compare.executors.base import (
    EXECUTORS,
    Executor,
    Grid,
    Job,
    JobFailed,
    JobResult,
    make_executor,
    parse_executor_options,
    register_executor,
)
from netsurgeon.compare.executors.local import LocalExecutor, LocalOptions
from netsurgeon.compare.executors.parallel import ParallelExecutor, ParallelOptions
from netsurgeon.compare.executors.slurm import SlurmExecutor, SlurmOptions, SubmititJob

__all__ = ["EXECUTORS", "Executor", "Grid", "Job", "JobFailed", "JobResult", "LocalExecutor", "LocalOptions",
           "ParallelExecutor", "ParallelOptions", "SlurmExecutor", "SlurmOptions", "SubmititJob", "make_executor",
           "parse_executor_options", "register_executor"]
