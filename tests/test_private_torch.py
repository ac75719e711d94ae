"""Only the code generator (``graph/codegen.py``) and the ONNX exporter's registry cache (``export/onnx.py``) use
torch's private names (``torch.*._*``), so a torch upgrade that moves one touches known files.

Every module of the package is read (AST): ``import``/``from`` lines naming a private torch module or name, and
attribute chains that start at a name bound to torch (``torch``, ``nn``, ``fx``, ``F``...) and pass a private
component (``nn.modules.conv._ConvNd``, ``torch._assert``).
"""

from __future__ import annotations

import ast
from collections import OrderedDict, deque, namedtuple
from pathlib import Path

import torch
from torch.utils import _pytree

from netsurgeon.validate import flatten_output

PACKAGE = Path(__file__).resolve().parent.parent / "netsurgeon"
ALLOWED = {"netsurgeon/graph/codegen.py", "netsurgeon/export/onnx.py"}


def _private(dotted: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in dotted.split("."))


def private_torch_names(source: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every torch private name ``source`` uses."""
    tree = ast.parse(source)
    bound: dict[str, str] = {}  # local name -> the torch path it names
    found: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "torch":
                    bound[alias.asname or "torch"] = alias.name if alias.asname else "torch"
                    if _private(alias.name):
                        found.add((node.lineno, alias.name))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "torch":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                bound[alias.asname or alias.name] = full
                if _private(full):
                    found.add((node.lineno, full))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, base = [], node
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in bound:
                full = ".".join([bound[base.id], *reversed(chain)])
                if _private(full):
                    found.add((node.lineno, full))
    return sorted(found)


def test_the_scan_finds_private_names():
    source = ("import torch\nfrom torch import nn\nimport torch.nn.functional as F\n"
              "from torch.fx._symbolic_trace import _assert_is_none\nfrom torch.utils import _pytree\n"
              "x = nn.modules.conv._ConvNd\ny = torch._assert\nz = F.relu\nw = torch.nn.Module\n")
    names = {name for _, name in private_torch_names(source)}
    assert {"torch.fx._symbolic_trace._assert_is_none", "torch.utils._pytree", "torch._assert"} <= names
    assert any(name.startswith("torch.nn.modules.conv._ConvNd") for name in names)
    assert not any(name.startswith(("torch.nn.functional.relu", "torch.nn.Module")) for name in names)


def test_only_the_code_generator_and_the_onnx_registry_cache_use_torch_private_names():
    used, outside = set(), []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE.parent))
        for line, name in private_torch_names(path.read_text()):
            used.add(rel)
            if rel not in ALLOWED:
                outside.append(f"{rel}:{line} uses {name}")
    assert not outside, ("torch private names outside graph/codegen.py and export/onnx.py; use a public API, or "
                         "move the code there:\n" + "\n".join(outside))
    assert used == ALLOWED, f"the allowed modules changed: {sorted(used)} use torch private names"


def test_flatten_output_walks_outputs_as_torch_pytree_does():
    """``validate.flatten_output`` (public code in place of torch's private pytree) gives pytree's leaves, and
    equal structures exactly where pytree's specs are equal."""
    t = torch.zeros(1)
    pair = namedtuple("pair", "a b")
    outputs = [t, [t, t], (t, None, t), {"x": t, "y": [t, (t,)]}, OrderedDict(a=t), deque([t, t]), pair(t, t),
               torch.max(torch.zeros(2, 3), 1), [t, {"k": None}], None, (t, [t, t]), ([t, t], t)]
    for out in outputs:
        leaves, _ = flatten_output(out)
        assert [id(x) for x in leaves] == [id(x) for x in _pytree.tree_leaves(out)], out
    for a in outputs:
        for b in outputs:
            same_spec = _pytree.tree_structure(a) == _pytree.tree_structure(b)
            assert (flatten_output(a)[1] == flatten_output(b)[1]) == same_spec, (a, b)
