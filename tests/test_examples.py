"""Every example script runs, shortened with --quick, from the repository root: each in this process, and each in
a fresh interpreter as a user starts it (the default run starts one so, as a fresh interpreter spends most of its
time importing torch; the slow set, -m slow, the others)."""

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
FRESH_BY_DEFAULT = "apply_and_export"  # reaches ns.models.info by attribute: only a fresh interpreter shows it works


def test_there_is_one_example_per_workflow():
    assert {p.stem for p in EXAMPLES} == {"apply_and_export", "finetune_after_surgery", "recipe_from_python"}


@pytest.mark.parametrize("script", [pytest.param(p, id=p.stem, marks=[] if p.stem == FRESH_BY_DEFAULT
                                                 else [pytest.mark.slow]) for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    proc = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_in_this_process(script, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", [str(script), "--quick", "--out", str(tmp_path / "out")])
    runpy.run_path(str(script), run_name="__main__")  # raises where the script would exit non-zero
    assert (tmp_path / "out" / "model.safetensors").exists()
