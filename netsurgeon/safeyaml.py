"""Reading YAML safely: limits (a small file must not expand into a huge value, the "billion laughs" alias
bomb), and YAML 1.2 core-schema scalars (no octal ``010``, base-60 ``1:04`` or ``yes`` booleans)."""

from __future__ import annotations

import re

import yaml

__all__ = ["MAX_NODES", "MAX_RECIPE_BYTES", "MAX_SCALAR_CHARS", "CoreDumper", "CoreLoader", "core_load",
           "expanded_size"]

#: the most values (mappings, lists and scalars, counted after expanding aliases) a recipe may hold
MAX_NODES = 20_000
#: the largest recipe file read
MAX_RECIPE_BYTES = 1 << 20
#: the longest ``--set`` value parsed as YAML
MAX_SCALAR_CHARS = 10_000


def expanded_size(node: yaml.Node | None, limit: int = MAX_NODES) -> int:
    """The number of values ``node`` stands for once its aliases are expanded, counted in time linear in the
    document (shared nodes are memoised); stops counting a little past ``limit``."""
    memo: dict[int, int] = {}

    def size(n: yaml.Node, depth: int) -> int:
        key = id(n)
        if key in memo:
            return memo[key]
        if depth > 200:  # deeper than any recipe; also keeps recursion bounded
            return limit + 1
        memo[key] = 1  # a self-referencing alias counts once while being measured
        total = 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += size(k, depth + 1) + size(v, depth + 1)
                if total > limit:
                    break
        elif isinstance(n, yaml.SequenceNode):
            for v in n.value:
                total += size(v, depth + 1)
                if total > limit:
                    break
        memo[key] = total
        return total

    return 0 if node is None else size(node, 0)


# ------------------------------------------------------------------ YAML 1.2 core schema
# PyYAML resolves plain scalars with YAML 1.1 rules, which turn ``epochs: 010`` into 8 (octal),
# ``batch_size: 1:04`` into 64 (base 60), ``yes``/``on`` into booleans and ``2024-12-01`` into a date.
# Recipes and ``--set`` values are read with the YAML 1.2 core schema instead (what YAML 1.2 parsers
# and most people expect): decimal integers (leading zeros allowed, still decimal), ``0o`` octal and
# ``0x`` hex, ``1.5``/``1e-3``/``.inf``/``.nan`` floats, ``true``/``false``, ``null``/``~``; anything
# else is a string (so ``1:04`` is refused by an integer field rather than read as 64).

_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_REPLACED = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
             "tag:yaml.org,2002:null", "tag:yaml.org,2002:timestamp"}


def _core_resolvers() -> dict:
    resolvers = {first: [(tag, rx) for tag, rx in items if tag not in _REPLACED]
                 for first, items in yaml.resolver.Resolver.yaml_implicit_resolvers.items()}
    for tag, rx, first in (("tag:yaml.org,2002:bool", _BOOL, "tTfF"),
                           ("tag:yaml.org,2002:int", _INT, "-+0123456789"),
                           ("tag:yaml.org,2002:float", _FLOAT, "-+0123456789."),
                           ("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""])):
        for ch in first:
            resolvers.setdefault(ch, []).append((tag, rx))
    return resolvers


class CoreLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 core-schema scalars (see above); merge keys (``<<``) still work."""

    yaml_implicit_resolvers = _core_resolvers()

    def construct_yaml_int(self, node: yaml.Node) -> int:
        text = self.construct_scalar(node)
        if text[:2] in ("0o", "0x"):
            return int(text[2:], 8 if text[1] == "o" else 16)
        return int(text)

    def construct_yaml_float(self, node: yaml.Node) -> float:
        text = self.construct_scalar(node).lower()
        if text.lstrip("+-") == ".inf":
            return float("-inf") if text[0] == "-" else float("inf")
        return float("nan") if text == ".nan" else float(text)


CoreLoader.add_constructor("tag:yaml.org,2002:int", CoreLoader.construct_yaml_int)
CoreLoader.add_constructor("tag:yaml.org,2002:float", CoreLoader.construct_yaml_float)


class CoreDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes exactly the strings :class:`CoreLoader` would read as non-strings."""

    yaml_implicit_resolvers = _core_resolvers()


def core_load(text: str):  # noqa: ANN201
    """One YAML document read with :class:`CoreLoader`."""
    return yaml.load(text, Loader=CoreLoader)  # noqa: S506 (CoreLoader is a SafeLoader)
