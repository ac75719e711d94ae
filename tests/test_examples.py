"""Every example script runs, shortened with --quick, from the repository root."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_there_is_one_example_per_workflow():
    assert {p.stem for p in EXAMPLES} == {"apply_and_export", "finetune_after_surgery", "recipe_from_python"}


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(script, tmp_path):
    proc = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "out" / "model.safetensors").exists()
