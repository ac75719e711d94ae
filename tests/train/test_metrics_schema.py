"""One metrics-row schema (``netsurgeon.train.schema``): no module of the package reads or writes a metrics key by a
string spelled outside it.

The rule is read from the source (``ast``), so it is grep-able and fails on the first new ``row["test_top1"]``:

* a key with an underscore (``test_top1``, ``ema_test_top1``, ``images_per_s``, ...) may not appear as a string
  literal, nor as a keyword argument (``row.update(test_top1=...)``), anywhere outside the schema;
* nor a string that looks like one but is none (``"test_ema_top1"``, what the compare report read while the loop
  wrote ``ema_test_top1``);
* the one-word keys (``epoch``, ``lr``, ``seconds``) are common words, so only their use as a key is checked:
  ``x["epoch"]``, ``x.get("epoch")``, ``"epoch" in x``, ``{"epoch": ...}``, ``dict(epoch=...)``, except the
  few subjects below that are not metrics rows (torch's optimizer param groups, a compare job's record).
"""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

from netsurgeon.train.schema import KEYS, Key, MetricsRow

PACKAGE = Path(__file__).resolve().parents[2] / "netsurgeon"
SCHEMA = PACKAGE / "train" / "schema.py"
GENERIC = {k for k in KEYS if "_" not in k}
DISTINCT = set(KEYS) - GENERIC
#: a string that looks like a metrics key but is none (``"test_ema_top1"``: the loop writes ``ema_test_top1``)
LOOKALIKE = re.compile(r"^(test|train|ema)_\w*(top1|top5|loss)$")
#: (module, the subscripted expression, key): keys of other dicts that happen to share a one-word name
NOT_METRICS = {("netsurgeon/train/loop.py", "group", "lr"),  # torch's optimizer param group
               ("netsurgeon/train/components.py", "g", "lr"),
               ("netsurgeon/demo.py", "job", "seconds"),  # a compare job's record (job.json): its wall time
               ("netsurgeon/cli/demo.py", "dict", "seconds"),  # the demo's --json output
               ("netsurgeon/workflows/hub.py", "c", "lr")}  # a fine-tune config's learning rate (the model card)


def violations(rel: str, text: str) -> list[str]:
    """Where the module ``rel`` (path from the repository root), whose source is ``text``, spells a metrics key."""
    found = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{rel}:{node.lineno}: {what}")

    def allowed(subject: ast.AST, key: str) -> bool:
        return (rel, ast.unparse(subject), key) in NOT_METRICS

    def allowed_dict(key: str) -> bool:  # a dict literal with "params" is a torch param group
        return (rel, "dict", key) in NOT_METRICS

    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Constant) and node.value in DISTINCT:
            flag(node, f"the metrics key {node.value!r} as a string: use Key.{node.value.upper()}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and LOOKALIKE.match(node.value):
            flag(node, f"{node.value!r} looks like a metrics key but is none: use Key (netsurgeon/train/schema.py)")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            for kw in node.keywords:
                if kw.arg in DISTINCT or (kw.arg in GENERIC and name in ("dict", "update")):
                    flag(node, f"the metrics key {kw.arg!r} as a keyword: use {{Key.{kw.arg.upper()}: ...}}")
            if (name == "get" and isinstance(func, ast.Attribute) and node.args
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value in GENERIC
                    and not allowed(func.value, node.args[0].value)):
                flag(node, f"{ast.unparse(node)}: use Key.{node.args[0].value.upper()}")
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value in GENERIC:
            if not allowed(node.value, node.slice.value):
                flag(node, f"{ast.unparse(node)}: use Key.{node.slice.value.upper()}")
        elif (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) and node.left.value in GENERIC
              and isinstance(node.ops[0], (ast.In, ast.NotIn))):
            flag(node, f"{ast.unparse(node)}: use Key.{node.left.value.upper()}")
        elif isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if keys & GENERIC and "params" not in keys and not any(allowed_dict(k) for k in keys & GENERIC):
                flag(node, f"a dict with the metrics key(s) {sorted(keys & GENERIC)}: use Key")
    return found


def test_no_module_spells_a_metrics_key_outside_the_schema():
    found = [v for path in sorted(PACKAGE.rglob("*.py")) if path != SCHEMA
             for v in violations(str(path.relative_to(PACKAGE.parent)), path.read_text())]
    assert not found, "\n".join(found)


def test_the_rule_catches_each_spelling():
    """Each form the rule reads fails on a module that uses it (the rule can fail), and the exceptions pass."""
    for text in ('row["test_top1"]', 'row.get("ema_test_top1")', "row.update(test_top5=1)", 'row["epoch"]',
                 'row.get("lr")', '"seconds" in row', '{"epoch": 0}', "dict(r, epoch=1)", 'g["lr"]',
                 'final["test_ema_top1"]'):
        assert violations("netsurgeon/train/metrics.py", text), text
    clean = 'group["lr"]\nstate = ("epoch", "batch")\nrow[Key.TEST_TOP1]\n{"params": p, "lr": 1}\n'
    assert violations("netsurgeon/train/loop.py", clean) == []
    assert violations("netsurgeon/train/components.py", 'g.get("lr")\n') == []


def test_the_typed_row_and_the_names_are_the_same_fields():
    assert set(typing.get_type_hints(MetricsRow)) == set(KEYS)
    assert len(KEYS) == len(set(KEYS)) and Key.EMA_TEST_TOP1 == "ema_test_top1"
