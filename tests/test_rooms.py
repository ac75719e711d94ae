"""Each idea in its own room (issue 28): no module of the package over 450 lines, and the two rooms the issue
split each open with the one sentence that names their idea."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "netsurgeon"
MAX_LINES = 450


def test_no_module_is_over_450_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules by idea (at most {MAX_LINES} lines each): {long}"


@pytest.mark.parametrize(("module", "idea"), [("train/loop.py", "The training loop"),
                                              ("graph/scoped.py", "The scoped editor")])
def test_the_split_rooms_name_their_one_idea_in_one_sentence(module, idea):
    doc = ast.get_docstring(ast.parse((PACKAGE / module).read_text()))
    first = doc.split("\n\n")[0]
    assert first.startswith(idea) and first.rstrip().endswith(".") and first.count(". ") == 0, first
