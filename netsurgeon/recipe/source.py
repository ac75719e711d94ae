"""Reading recipe text: YAML values with the line and column of every key, merging, ``--set`` overrides.

Everything here collects :class:`Problem` records instead of raising, so that the loader can report
every problem of a file (and of several files) at once.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import yaml

from netsurgeon.errors import RecipeError
from netsurgeon.safeyaml import MAX_NODES, CoreLoader, expanded_size

__all__ = ["Location", "Positions", "Problem", "apply_overrides", "merge", "parse_yaml"]

Path_ = tuple[Any, ...]


@dataclass(frozen=True)
class Location:
    source: str
    line: int = 0  # 1-based; 0 when the value did not come from a file (--set, Python)
    column: int = 0

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}" if self.line else self.source


@dataclass(frozen=True)
class Problem:
    path: Path_
    message: str
    location: Location | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        dotted = ".".join(str(p) for p in self.path)
        return f"{where}{dotted + ': ' if dotted else ''}{self.message}"


class Positions:
    """Where each key (and each value) of a merged recipe was written."""

    def __init__(self) -> None:
        self.keys: dict[Path_, Location] = {}
        self.values: dict[Path_, Location] = {}

    def key(self, path: Path_) -> Location | None:
        return self.keys.get(path) or self._nearest(path)

    def value(self, path: Path_) -> Location | None:
        return self.values.get(path) or self.key(path)

    def _nearest(self, path: Path_) -> Location | None:
        for cut in range(len(path) - 1, -1, -1):
            found = self.values.get(path[:cut]) or self.keys.get(path[:cut])
            if found:
                return found
        return None

    def shifted(self, prefix: Path_, offset: int) -> Positions:
        """These positions with list indices under ``prefix`` moved by ``offset`` (appended surgery steps)."""
        out = Positions()
        for src, dst in ((self.keys, out.keys), (self.values, out.values)):
            for path, loc in src.items():
                if path[: len(prefix)] == prefix and len(path) > len(prefix) and isinstance(path[len(prefix)], int):
                    path = (*prefix, path[len(prefix)] + offset, *path[len(prefix) + 1:])
                dst[path] = loc
        return out

    def update(self, other: Positions) -> None:
        self.keys.update(other.keys)
        self.values.update(other.values)


def _mark(node: yaml.Node, source: str) -> Location:
    return Location(source, node.start_mark.line + 1, node.start_mark.column + 1)


def parse_yaml(text: str, source: str) -> tuple[Any, Positions, list[Problem]]:
    """The document's value, the positions of its keys and values, and problems (duplicate keys).

    Scalars follow the YAML 1.2 core schema (:class:`netsurgeon.safeyaml.CoreLoader`). A merge key
    (``<<: *common``) brings the anchor's keys in; keys written beside it override them.
    Raises RecipeError for text that is not YAML at all (with the parser's line and column).
    """
    loader = None
    positions, problems = Positions(), []
    try:
        loader = CoreLoader(text)
        node = loader.get_single_node()
        if expanded_size(node) > MAX_NODES:
            raise RecipeError(source, [Problem((), f"expands to more than {MAX_NODES:,} values (YAML aliases "
                                               "repeating anchors?); write the recipe out plainly", Location(source))])
        if node is not None:  # before constructing: that flattens merge keys into the nodes
            _walk(node, (), source, positions, problems)
        value = loader.construct_document(node) if node is not None else None
    except RecipeError:
        raise
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        loc = Location(source, mark.line + 1, mark.column + 1) if mark else Location(source)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RecipeError(source, [Problem((), f"not valid YAML: {problem}", loc)]) from None
    except (TypeError, ValueError, RecursionError) as err:  # e.g. absurd scalars the constructor rejects
        raise RecipeError(source, [Problem((), f"not valid YAML: {err}", Location(source))]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return value, positions, problems


_MERGE = "tag:yaml.org,2002:merge"


def _merged(value_node: yaml.Node) -> list[yaml.MappingNode]:
    """The mappings a merge key brings in (``<<: *a`` or ``<<: [*a, *b]``, earlier ones winning)."""
    if isinstance(value_node, yaml.MappingNode):
        return [value_node]
    if isinstance(value_node, yaml.SequenceNode):
        return [n for n in reversed(value_node.value) if isinstance(n, yaml.MappingNode)]
    return []


def _walk(node: yaml.Node, path: Path_, source: str, positions: Positions, problems: list[Problem],
          depth: int = 0) -> None:
    positions.values[path] = _mark(node, source)
    if depth > 200:  # deeper than any recipe (expanded_size refuses such documents anyway)
        return
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:  # merged keys first: the keys written here override them
            if key_node.tag == _MERGE:
                for merged in _merged(value_node):
                    for k_node, v_node in merged.value:
                        if k_node.tag != _MERGE and isinstance(k_node, yaml.ScalarNode):
                            positions.keys[(*path, k_node.value)] = _mark(k_node, source)
                            _walk(v_node, (*path, k_node.value), source, positions, problems, depth + 1)
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            child = (*path, key)
            if key in seen:
                problems.append(Problem(child, "given twice; keep one", _mark(key_node, source)))
            seen.add(key)
            positions.keys[child] = _mark(key_node, source)
            _walk(value_node, child, source, positions, problems, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            positions.keys[(*path, i)] = _mark(item, source)
            _walk(item, (*path, i), source, positions, problems, depth + 1)


def merge(base: dict[str, Any], extra: dict[str, Any], append: frozenset[str] = frozenset({"surgery"})) -> dict:
    """``extra`` over ``base``: mappings merge key by key, lists under ``append`` keys are appended (an empty
    one, ``surgery:`` with nothing, appends nothing), and any other value of ``extra`` wins."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if key in append and isinstance(out.get(key), list) and value is None:
            continue  # an empty ``surgery:`` adds no steps; it never drops the earlier files' steps
        if key in append and isinstance(out.get(key), list) and isinstance(value, list):
            out[key] = out[key] + copy.deepcopy(value)
        elif isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = merge(out[key], value, frozenset())
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(raw: dict[str, Any], overrides: dict[str, str], positions: Positions) -> list[Problem]:
    """Set ``dotted.key=value`` overrides in place (values parsed as YAML scalars); list indices are numbers
    (``surgery.0.proportion``). Returns the overrides that could not be placed."""
    from netsurgeon.config import parse_scalar

    problems = []
    for dotted, text in overrides.items():
        parts = [p for p in dotted.split(".")]
        where = Location(f"--set {dotted}")
        if not all(parts):
            problems.append(Problem((), f"--set {dotted!r}: expected a dotted key such as finetune.epochs", where))
            continue
        target: Any = raw
        path: list[Any] = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(target, list):
                if not part.isdigit() or int(part) >= len(target):
                    problems.append(Problem(tuple(path), f"--set {dotted}: no item {part} (the list has "
                                            f"{len(target)} items, numbered from 0)", where))
                    break
                key: Any = int(part)
            elif isinstance(target, dict):
                key = part
            else:
                problems.append(Problem(tuple(path), f"--set {dotted}: {'.'.join(map(str, path))} is not a "
                                        "mapping or list", where))
                break
            path.append(key)
            if last:
                target[key] = parse_scalar(text)
                positions.keys[tuple(path)] = positions.values[tuple(path)] = where
            else:
                if isinstance(target, dict) and not isinstance(target.get(key), (dict, list)):
                    target[key] = {}
                target = target[key]
    return problems
