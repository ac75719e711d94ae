"""Limits on YAML input: a small file must not expand into a huge value (the "billion laughs" alias bomb)."""

from __future__ import annotations

import yaml

__all__ = ["MAX_NODES", "MAX_RECIPE_BYTES", "MAX_SCALAR_CHARS", "expanded_size"]

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
