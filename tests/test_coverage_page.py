"""docs/coverage.md cannot drift: a sample of its rows is recomputed from the code (issue 14)."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import coverage  # noqa: E402

SAMPLE = ["torchvision:resnet18", "torchvision:squeezenet1_1", "timm:dla46x_c", "timm:mobilenetv3_small_050"]


@pytest.fixture(scope="module")
def page() -> dict:
    return json.loads((ROOT / "docs" / "coverage.json").read_text())


def test_page_covers_the_zoo(page):
    specs = {r["model"] for r in page["rows"]}
    assert sum(s.startswith("timm:") for s in specs) >= 45
    assert (ROOT / "docs" / "coverage.md").read_text().startswith("# Coverage")


@pytest.mark.parametrize("spec", SAMPLE)
def test_sampled_rows_match_the_code(page, spec):
    row = next(r for r in page["rows"] if r["model"] == spec)
    size = (3, *map(int, row["input"].split("x")))
    for name, (status, sites) in coverage.recheck(spec, size).items():
        cell = row["passes"][name]
        assert cell["status"] == status, (spec, name, cell.get("reason"))
        if status == "changed":
            assert cell["sites"] == sites, (spec, name)


def test_a_fresh_clone_seeds_the_cache_from_the_page(page, tmp_path, monkeypatch):
    """A partial run (--only) on a clone without .coverage-cache must rewrite the page with every row."""
    monkeypatch.setattr(coverage, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(coverage, "DOCS", ROOT / "docs")
    assert coverage.seed_cache_from_page() == len(page["rows"])
    models = [(r["model"], r["family"]) for r in page["rows"]]
    assert [r["model"] for r in coverage.load_rows(models)] == [m for m, _ in models]
    assert coverage.seed_cache_from_page() == 0  # rows already cached are never overwritten
