"""netsurgeon's exceptions and warnings.

Every error a user can cause is a :class:`NetsurgeonError`. The CLI prints its message as one line and
exits with code 1; the Python API lets it propagate. Subclasses also derive from the builtin a caller
would naturally catch (``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib

__all__ = [
    "ArtifactError",
    "CheckpointError",
    "ConfigError",
    "ContractViolationError",
    "DiskFullError",
    "ExportError",
    "ModelLoadError",
    "NetsurgeonError",
    "NoEffectWarning",
    "NoMatchError",
    "PretrainedUnavailableError",
    "RecipeError",
    "StatisticsWarning",
    "SurgeryError",
    "TraceError",
    "TrainingDiverged",
    "TrainingInterrupted",
    "UnknownNameError",
    "suggest",
]


class NetsurgeonError(Exception):
    """Base class of every error netsurgeon raises on purpose.

    Raised in a DataLoader worker, it comes back as ``type(err)("Caught ... Original Traceback ...")``;
    the constructor keeps only the original one-line message."""

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str) and "\nOriginal Traceback" in args[0]:
            last = [line for line in args[0].splitlines() if line.strip()][-1]
            _, sep, original = last.partition(f"{type(self).__name__}: ")
            args = (original if sep else last,)
        super().__init__(*args)


class ConfigError(NetsurgeonError, ValueError):
    """A pass or command was given an invalid parameter."""


class RecipeError(ConfigError):
    """A recipe has problems; ``problems`` lists every one (with its file, line and column)."""

    def __init__(self, source: str, problems: list) -> None:
        self.source, self.problems = source, list(problems)
        count = len(self.problems)
        if count == 1:  # one problem, one line
            only = str(self.problems[0])
            super().__init__(only if only.startswith(source) else f"{source}: {only}")
            return
        lines = "".join(f"\n  - {p}" for p in self.problems)
        super().__init__(f"{source}: {count} problems{lines}")


class UnknownNameError(NetsurgeonError, KeyError):
    """A model or pass name that does not exist; the message suggests close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelLoadError(NetsurgeonError, ValueError):
    """A model could not be built or its weights could not be loaded into it."""


class CheckpointError(ModelLoadError):
    """A checkpoint file is missing, unreadable, unsafe, or does not match the model."""


class PretrainedUnavailableError(ModelLoadError):
    """Pretrained weights were requested but the hub cannot be reached."""


class TraceError(NetsurgeonError, RuntimeError):
    """torch.fx could not trace the model and the pass needs a graph."""


class SurgeryError(NetsurgeonError, RuntimeError):
    """A pass cannot be applied safely to this model (it refuses rather than edit partially)."""


class NoMatchError(SurgeryError, LookupError):
    """The user named explicit targets and the pass matched none of them."""


class ContractViolationError(SurgeryError):
    """The modified model broke the contract its passes declared (``apply(..., allow_violation=True)``
    keeps the result anyway); ``result`` holds the SurgeryResult for inspection."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class ExportError(NetsurgeonError, RuntimeError):
    """Writing an artifact failed, or an exported model disagrees with the eager one."""


class DiskFullError(ExportError, OSError):
    """The disk filled up while writing; the message says where and about how much was needed."""


class ArtifactError(NetsurgeonError, ValueError):
    """A file is not a netsurgeon artifact, or its provenance cannot be replayed."""


class TrainingInterrupted(NetsurgeonError):
    """Fine-tuning was stopped with Ctrl-C after saving a checkpoint; the CLI exits with 130."""

    exit_code = 130


class TrainingDiverged(NetsurgeonError, ArithmeticError):
    """Fine-tuning met a non-finite loss (or weights, or test loss): it stops there, before the step that
    met it is saved or exported; the message names the step and what to try."""


class NoEffectWarning(UserWarning):
    """A pass ran and changed nothing."""


class PluginWarning(UserWarning):
    """An installed plug-in (a ``netsurgeon.plugins`` entry point) failed to load; netsurgeon goes on without it."""


class StatisticsWarning(UserWarning):
    """A comparison cannot reach a verdict as planned (e.g. too few seeds for the exact test to reach alpha)."""


def suggest(name: str, choices: list[str], n: int = 3) -> str:
    """A ' Did you mean ...?' suffix, or '' when nothing is close."""
    choices = list(dict.fromkeys(choices))  # the same name may come from two libraries
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
    if not close:
        close = [c for c in choices if name.lower() in c.lower()][:n]
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
