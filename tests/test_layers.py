"""The layers import one way, as CONTRIBUTING.md's layer table says, and no module imports itself back; and the
import rules of CONTRIBUTING.md: no private name across modules, stdlib imports at the top, no test imports from
`benchmarks/`.

Every ``import`` in the package is read from the source (function-level imports and imports under
``if TYPE_CHECKING:`` included: a type named across layers is a dependency too), so neither a lazy import nor a
type-only one can hide a circle.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "netsurgeon"
TESTS = Path(__file__).resolve().parent

#: top to bottom: a module may import modules of its own layer or below, never above
LAYERS: list[tuple[str, ...]] = [
    ("netsurgeon", "netsurgeon.__main__", "netsurgeon.cli"),
    ("netsurgeon.recipe", "netsurgeon.demo", "netsurgeon.compare", "netsurgeon.workflows"),
    ("netsurgeon.train",),
    ("netsurgeon.loading",),
    ("netsurgeon.export",),
    ("netsurgeon.api",),
    ("netsurgeon.passes",),
    ("netsurgeon.workspace", "netsurgeon.hooks", "netsurgeon.outcome", "netsurgeon.registry", "netsurgeon.surgery"),
    ("netsurgeon.models.load", "netsurgeon.models.head", "netsurgeon.models.checkpoint", "netsurgeon.models",
     "netsurgeon.data", "netsurgeon.testing"),
    ("netsurgeon.graph", "netsurgeon.layers"),
    ("netsurgeon.config", "netsurgeon.contract", "netsurgeon.report", "netsurgeon.validate", "netsurgeon.safeyaml",
     "netsurgeon.history", "netsurgeon.models.info", "netsurgeon.modes", "netsurgeon.progress", "netsurgeon.atomic",
     "netsurgeon.plugins"),
    ("netsurgeon.errors",),
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    def owner(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] == "netsurgeon" and (dep := owner(target)) and dep != name:
                    edges[name].add(dep)
    return edges


def _layer(module: str) -> int:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or (prefix != "netsurgeon" and module.startswith(prefix + ".")):
                if best is None or len(prefix) > best[1]:
                    best = (i, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to LAYERS and CONTRIBUTING.md"
    return best[0]


def test_every_import_goes_down_the_layers():
    modules = _modules()
    upward = [f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
              for a, deps in _imports(modules).items() for b in deps if _layer(b) < _layer(a)]
    assert not upward, "\n".join(upward)


def test_no_import_circles():
    edges = _imports(_modules())
    circles = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                circles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not circles, "\n".join(circles)


def test_the_layer_table_is_the_one_in_contributing():
    """CONTRIBUTING.md's layer table lists exactly these layers, in this order, each with these modules."""
    text = (PACKAGE.parent / "CONTRIBUTING.md").read_text().split("## Layers", 1)[1]
    rows = [line.split("|") for line in text.splitlines() if re.match(r"\|\s*\d+\s*\|", line)]
    table = [(int(cells[1]), tuple(re.findall(r"`([\w.]+)`", cells[2]))) for cells in rows]
    assert table == list(enumerate(LAYERS)), "CONTRIBUTING.md's layer table differs from LAYERS"


def test_type_checking_imports_are_imports():
    """A type-only import is a dependency: the layer and circle checks see it."""
    assert "netsurgeon.workspace" in _imports(_modules())["netsurgeon.registry"]  # under TYPE_CHECKING only


def test_one_default_input_size():
    hits = [str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py") if "(3, 224, 224)" in p.read_text()]
    assert hits == ["netsurgeon/models/info.py"], hits


def test_no_private_name_is_imported_across_modules():
    """A leading underscore means "this module only": a helper another module needs is made public."""
    found = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "netsurgeon":
                found += [f"{name}: from {node.module} import {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__") and node.module != name]
    assert not found, "\n".join(found)


def _imported_modules(node: ast.AST) -> list[str]:
    """The absolute modules an import statement names (``import a.b`` -> ``a.b``; relative imports: none)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module]
    return []


def test_stdlib_imports_are_at_module_top():
    """A stdlib module costs nothing worth deferring: it is imported at the top, where a reader looks for it.
    Function-level imports are for the package's own heavy or circular modules and optional dependencies."""
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for func in ast.walk(ast.parse(path.read_text())):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                stdlib = [m for m in _imported_modules(node) if m.split(".")[0] in sys.stdlib_module_names]
                if stdlib:  # a nested function's imports are walked twice: a set
                    found.add((str(path.relative_to(PACKAGE.parent)), node.lineno, ", ".join(stdlib)))
    assert not found, "stdlib imports inside functions; move them to the module top:\n" + "\n".join(
        f"{file}:{line} imports {names}" for file, line, names in sorted(found))


def test_tests_import_nothing_from_benchmarks():
    """Benchmarks are scripts that may change or go; what a test shares with one lives in netsurgeon.testing."""
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            named = _imported_modules(node)
            if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in ("import_module", "__import__"):
                named = [a.value for a in node.args[:1] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if any(m.split(".")[0] == "benchmarks" for m in named):
                found.append(f"{path.relative_to(TESTS.parent)}:{node.lineno} imports {', '.join(named)}")
    assert not found, "tests import from benchmarks/; move the shared code to netsurgeon.testing:\n" + "\n".join(found)


def test_a_plug_in_pass_needs_at_most_four_netsurgeon_modules():
    """The plug-in test is a pass file as an author writes one: what it needs comes from few places
    (``netsurgeon.surgery`` for the pass, the package for the rest), and no pass repeats its own name into
    the workspace (``ws.index()``, ``ws.editor()``, ``ws.shapes()``, ``ws.gm()`` take none)."""
    tree = ast.parse((TESTS / "test_plugin.py").read_text())
    used = {m for node in ast.walk(tree) for m in _imported_modules(node) if m.split(".")[0] == "netsurgeon"}
    assert len(used) <= 4, f"tests/test_plugin.py imports {len(used)} netsurgeon modules: {sorted(used)}"
    named = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
             for path in [TESTS / "test_plugin.py", *sorted((PACKAGE / "passes").glob("*.py"))]
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr in ("index", "editor", "shapes", "gm") and ast.unparse(node.func.value) == "ws"
             and (node.args or node.keywords)]
    assert not named, "a pass names itself to its workspace (run_pass tells it):\n" + "\n".join(named)
