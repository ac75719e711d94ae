"""The base class of every pass config: a frozen, validated, serialisable dataclass.

A pass config is declared as a plain frozen dataclass whose fields carry type annotations. On
construction every field is checked against its annotation with pydantic (so ``proportion="abc"``
fails with a message naming the field, whichever way the config was built), then the subclass's
``validate()`` checks the cross-field rules. ``from_dict`` builds a config from user input: unknown
keys are errors that suggest the closest valid key, and string values (``--set key=value``) are parsed
as YAML scalars first, so ``proportion=0.5``, ``include_stem=true`` and ``act_types=[ReLU,ReLU6]`` work.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
import textwrap
import types
import typing
from typing import Any, ClassVar

import yaml
from pydantic import TypeAdapter, ValidationError

from netsurgeon.errors import ConfigError, suggest

__all__ = [
    "Config", "FieldDoc", "PassConfig", "describe_fields", "field_adapter", "parse_scalar", "parse_set_options",
    "plain_values",
]


#: the integer range every config value (and seed) must fit: what torch and numpy can hold
INT64_MIN, UINT64_MAX = -(1 << 63), (1 << 64) - 1


@functools.cache
def field_adapter(tp: Any) -> TypeAdapter:
    """The (cached) pydantic adapter that validates a value of type ``tp``; shared with the recipe schema."""
    return TypeAdapter(tp)


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    return first["msg"]


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class: subclasses are ``@dataclass(frozen=True)`` with typed fields and defaults."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            problem = _strict_scalars(value, hints[f.name])
            if problem:
                raise ConfigError(f"{self._label()}: {f.name}={value!r:.60} is invalid: {problem}.")
            try:
                checked = field_adapter(hints[f.name]).validate_python(value, strict=False)
            except ValidationError as err:
                raise ConfigError(
                    f"{self._label()}: {f.name}={value!r} is invalid: {_describe(err)}."
                ) from None
            if _strict_scalars(checked, Any):  # "nan"/"inf" strings become non-finite floats in lax mode
                raise ConfigError(f"{self._label()}: {f.name}={value!r:.60} is invalid: a finite number is expected.")
            if isinstance(checked, list):  # keep configs hashable and immutable
                checked = tuple(checked)
            object.__setattr__(self, f.name, checked)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; raise ConfigError (via ``self.fail``) on a bad combination."""

    def fail(self, message: str) -> typing.NoReturn:
        raise ConfigError(f"{self._label()}: {message}")

    @classmethod
    def _label(cls) -> str:
        return cls.__name__

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PassConfig:
        """Build from user-supplied values; unknown keys raise ConfigError with a suggestion."""
        names = cls.field_names()
        for key in values:
            if key not in names:
                raise ConfigError(
                    f"{cls._label()}: unknown parameter {key!r}.{suggest(key, names)} "
                    f"Valid parameters: {', '.join(names)}."
                )
        parsed = {k: parse_scalar(v) for k, v in values.items()}
        return cls(**parsed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly field values (tuples become lists)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def describe(self) -> str:
        """``erase-relu(position='last', proportion=1.0, ...)``."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"{self._label()}({args})"


@dataclasses.dataclass(frozen=True)
class PassConfig(Config):
    """Base class of pass configs; ``register_pass`` sets ``pass_name``."""

    pass_name: ClassVar[str] = ""  # set by register_pass
    version: ClassVar[int] = 1  # bump when a field's meaning changes; stored in artifacts

    @classmethod
    def _label(cls) -> str:
        return cls.pass_name or cls.__name__

    def uses_data(self) -> bool:
        """Whether the pass reads training batches when given some (``apply(data=...)``, ``--data``)."""
        return False

    def requires_data(self) -> str | None:
        """The field whose value makes data necessary (a recipe then needs a finetune section), else None."""
        return None


def _accepts(tp: Any, kind: type) -> bool:
    """Whether the annotation ``tp`` names ``kind`` itself (not through a cast)."""
    if tp is kind or tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return any(type(a) is kind for a in typing.get_args(tp))
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_accepts(a, kind) for a in typing.get_args(tp))
    return False


def _strict_scalars(value: Any, tp: Any) -> str | None:
    """Refuse what pydantic's lax mode would cast silently: a bool for a number (``proportion=true`` would
    become 1.0), non-finite floats (``tau=.inf``), and integers beyond 64 bits (``seed=10**23``, which torch
    cannot hold). Looks into lists and tuples."""
    if isinstance(value, bool):
        return None if _accepts(tp, bool) or not (_accepts(tp, int) or _accepts(tp, float)) else \
            "a number is expected, not true/false"
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number is expected"
    if isinstance(value, int) and not INT64_MIN <= value <= UINT64_MAX:
        return "out of range (integers are at most 64 bits)"
    if isinstance(value, (list, tuple)):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        inner = args[0] if len(args) == 1 else Any
        for a in typing.get_args(tp):  # Optional[tuple[...]]
            if typing.get_origin(a) in (tuple, list):
                inner = next((x for x in typing.get_args(a) if x is not Ellipsis), Any)
        for item in value:
            problem = _strict_scalars(item, inner)
            if problem:
                return problem
    return None


def parse_scalar(value: Any) -> Any:
    """Strings are read as YAML scalars/flow sequences; other values pass through."""
    if not isinstance(value, str):
        return value
    from netsurgeon.safeyaml import MAX_SCALAR_CHARS, CoreLoader, core_load, expanded_size

    if len(value) > MAX_SCALAR_CHARS:
        raise ConfigError(f"a --set value of {len(value):,} characters is too long (at most {MAX_SCALAR_CHARS:,}).")
    try:
        if "*" in value and expanded_size(yaml.compose(value, Loader=CoreLoader), 1000) > 1000:
            raise ConfigError("a --set value expands to more than 1,000 items (YAML aliases?); write it out plainly.")
        parsed = core_load(value)  # YAML 1.2 core scalars: 010 is ten, 1:04 a string
    except (yaml.YAMLError, RecursionError):
        return value
    if parsed is None or isinstance(parsed, dict):
        return value
    return parsed


def parse_set_options(options: list[str] | None) -> dict[str, str]:
    """Turn ``["a=1", "b=x"]`` into ``{"a": "1", "b": "x"}``; malformed items raise ConfigError."""
    out: dict[str, str] = {}
    for item in options or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r} (for example --set proportion=0.5).")
        if key in out:
            raise ConfigError(f"--set {key} given twice; give each parameter once.")
        out[key] = value.strip()
    return out


@dataclasses.dataclass(frozen=True)
class FieldDoc:
    """One parameter of a config, as ``netsurgeon passes NAME`` shows it."""

    name: str
    type: str
    default: Any
    allowed: list[Any] | None  # the values a Literal admits (None: any value of the type)
    help: str


def describe_fields(cls: type[Config]) -> list[FieldDoc]:
    """Every field of ``cls`` with its type, default, allowed values and the docstring written under it."""
    docs = _field_docstrings(cls)
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append(FieldDoc(f.name, _type_name(tp), list(default) if isinstance(default, tuple) else default,
                            _literal_values(tp), docs.get(f.name, "")))
    return out


def _field_docstrings(cls: type) -> dict[str, str]:
    """Attribute docstrings (a string right under a field) of ``cls`` and its bases, by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, following in zip(body, body[1:], strict=False):
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) \
                    and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant) \
                    and isinstance(following.value.value, str):
                docs[stmt.target.id] = " ".join(following.value.value.split())
    return docs


def _literal_values(tp: Any) -> list[Any] | None:
    """The allowed values when the type is a choice (a Literal, or an optional one), else None."""
    if typing.get_origin(tp) is typing.Literal:
        return list(typing.get_args(tp))
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else ()
    literals = [a for a in args if typing.get_origin(a) is typing.Literal]
    if literals and all(a in literals or a is type(None) for a in args):
        return [v for a in literals for v in typing.get_args(a)] + ([None] if type(None) in args else [])
    return None


def _type_name(tp: Any) -> str:
    """``int | None``, ``choice``, ``'auto' | tuple[str, ...]``: what a user may write."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "choice"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(" | ".join(map(repr, typing.get_args(a))) if typing.get_origin(a) is typing.Literal
                          else _type_name(a) for a in typing.get_args(tp))
    text = tp.__name__ if isinstance(tp, type) and not typing.get_args(tp) else str(tp)
    return text.replace("typing.", "").replace("collections.abc.", "").replace("NoneType", "None")


def plain_values(value: Any) -> Any:
    """``value`` with tuples as lists, recursively (a config's ``to_dict`` as YAML and JSON write it)."""
    if isinstance(value, dict):
        return {k: plain_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_values(v) for v in value]
    return value
