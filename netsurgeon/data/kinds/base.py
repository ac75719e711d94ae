"""The registry of data kinds, and the data spec they parse.

A data spec is one string, ``KIND`` or ``KIND:REST``; its kind is a :class:`DataKind` registered once by the module
that defines it (``netsurgeon/data/kinds/``: one module per kind, its grammar, parser, loader, help line and
offline advice). Everything that lists the kinds (the CLI's ``--data`` help, the unknown-spec error, a recipe's
missing-data problem, the README's list, checked by a test) reads them from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from netsurgeon.errors import ConfigError, UnknownNameError
from netsurgeon.validate import NotRegularFileError

if TYPE_CHECKING:
    from torch.utils.data import Dataset

__all__ = ["DataKind", "DataSpec", "cannot_read", "data_grammar", "data_help", "data_kind", "data_kinds",
           "register_data_kind", "unreadable_errors", "unregister_data_kind"]

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec. ``kind`` is a registered :class:`DataKind`'s name (it is recorded in checkpoints'
    run identity, :meth:`label`); ``path`` and ``name`` hold what its grammar reads (the kind decides)."""

    kind: str
    path: str = ""
    name: str = ""
    skip_unreadable: bool = False  # a kind with image_tree: check every image up front, leave out unreadable ones

    @classmethod
    def parse(cls, text: str) -> DataSpec:
        """The spec ``text`` names (``KIND`` or ``KIND:REST``: the kind's own grammar reads REST); a
        :class:`~netsurgeon.errors.ConfigError` listing the registered kinds for anything else."""
        word, _, rest = text.strip().partition(":")
        kind = _KINDS.get(word.lower())
        spec = kind.parse(rest) if kind is not None else None
        if spec is None:
            examples = [k.example for k in _KINDS.values() if k.example]
            example = f" (for example {', '.join(examples)})" if examples else ""
            raise ConfigError(f"unknown data spec {text!r}; use {data_grammar()}{example}.")
        return spec

    def label(self) -> str:
        """The spec as the run identity of a checkpoint records it: ``KIND:[NAME:]PATH`` (``digits:``)."""
        return f"{self.kind}:{self.name + ':' if self.name else ''}{self.path}"

    @property
    def data_kind(self) -> DataKind:
        """This spec's registered kind."""
        return data_kind(self.kind)


#: a kind's loader: (spec, split 'train' or 'test', download allowed) -> (a Dataset of (image, int label) pairs,
#: the class count); an image is a PIL image or a float C,H,W tensor in [0, 1]
Loader = Callable[[DataSpec, str, bool], "tuple[Dataset, int]"]


@dataclass(frozen=True)
class DataKind:
    """One kind of data spec. Register it once with :func:`register_data_kind`."""

    name: str  # the spec's first word (lowercase words joined by '-'): DataSpec.kind
    grammar: str  # how a spec of this kind is written, placeholders in capitals: "digits", "toy:N"
    help: str  # one line: what the data is (the README's list and ``data_help()``)
    parse: Callable[[str], DataSpec | None]  # the text after "NAME:" ("" for none) -> its spec, or None: malformed
    load: Loader
    offline: str = ""  # what to do when the data is not on this machine: ends the kind's not-found error
    example: str = ""  # a spec shown by the unknown-spec error ("torchvision:CIFAR10:~/data")
    image_tree: bool = False  # the spec's path is a tree of class folders: --out must lie outside it, and
    #                           skip_unreadable (--skip-unreadable-images) leaves unreadable images out
    dataset_name: Callable[[DataSpec], str] | None = field(default=None, compare=False)  # the model card's dataset
    #                                                       (default: the kind's name, '-' as '_')

    def missing(self, what: str) -> ConfigError:
        """The kind's one-line not-found error: ``WHAT; OFFLINE``."""
        return ConfigError(f"{what}; {self.offline}")

    def card_name(self, spec: DataSpec) -> str:
        """The dataset a model card names for ``spec``."""
        return self.dataset_name(spec) if self.dataset_name is not None else self.name.replace("-", "_")


_KINDS: dict[str, DataKind] = {}


def register_data_kind(kind: DataKind) -> DataKind:
    """Add ``kind`` to the registry (a second kind of the same name is refused); returns it."""
    if not _NAME_RE.match(kind.name):
        raise ValueError(f"data kind name {kind.name!r} must be lowercase words joined by '-'")
    if re.split(r"[:\[]", kind.grammar)[0] != kind.name:
        raise ValueError(f"data kind {kind.name!r}: its grammar {kind.grammar!r} must start with its name")
    if kind.name in _KINDS:
        raise ValueError(f"data kind {kind.name!r} is already registered (by {_KINDS[kind.name].load.__module__})")
    _KINDS[kind.name] = kind
    return kind


def unregister_data_kind(name: str) -> DataKind:
    """Remove data kind ``name`` from the registry (a test's or a notebook's own kind)."""
    return _KINDS.pop(data_kind(name).name)


def data_kind(name: str) -> DataKind:
    """The registered data kind called ``name``."""
    key = name.strip().lower()
    if key not in _KINDS:
        raise UnknownNameError(f"unknown data kind {name!r}; registered: {', '.join(_KINDS)}.")
    return _KINDS[key]


def data_kinds() -> list[DataKind]:
    """Every registered data kind, in registration order (the built-ins first)."""
    return list(_KINDS.values())


def _listed(items: list[str], last: str = "or") -> str:
    return f" {last} ".join(items) if len(items) < 3 else f"{', '.join(items[:-1])} {last} {items[-1]}"


def data_grammar() -> str:
    """The registered kinds' grammars as one phrase (``A, B, C or D``), in registration order."""
    return _listed([k.grammar for k in _KINDS.values()])


def data_help() -> str:
    """Each registered kind's grammar with its help line, as one sentence (the README's list)."""
    return _listed([f"{k.grammar} ({k.help})" for k in _KINDS.values()], "and") + "."


#: what PIL raises for an unreadable image: UnidentifiedImageError (an OSError), truncated files, bad
#: chunks, and DecompressionBombError (a plain Exception) for absurd sizes declared in a tiny file
def unreadable_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image

    return OSError, ValueError, SyntaxError, Image.DecompressionBombError


def cannot_read(where: object, err: BaseException) -> ConfigError:
    """The one-line error for an image that cannot be read."""
    if isinstance(err, NotRegularFileError):  # a FIFO named .png: never opened for reading
        return ConfigError(f"{err}; remove it, or pass --skip-unreadable-images (Python: DataSpec(..., "
                           "skip_unreadable=True)) to leave it out.")
    return ConfigError(f"image {where} cannot be read ({type(err).__name__}: {' '.join(str(err).split())[:100]}); "
                       "remove or replace it, or pass --skip-unreadable-images (Python: DataSpec(..., "
                       "skip_unreadable=True)) to leave unreadable images out.")

