"""docs/coverage.md cannot drift: a sample of its rows is recomputed from the code (issue 14)."""

import json
import warnings
from pathlib import Path

import pytest
import torch

import netsurgeon as ns
from netsurgeon.testing.coverage import load_rows, seed_cache_from_page

ROOT = Path(__file__).resolve().parents[1]

SAMPLE = ["torchvision:resnet18", "torchvision:squeezenet1_1", "timm:dla46x_c", "timm:mobilenetv3_small_050"]


def recheck(spec: str, size: tuple[int, ...]) -> dict[str, tuple[str, list[int] | None]]:
    """(status, [sites before, after]) of every pass on ``spec``, from ``plan`` (no probe check): what a
    row of the page says, recomputed from the code."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ns.load_model(spec)
    x = torch.randn(2, *size, generator=torch.Generator().manual_seed(0))
    data = [(x, torch.tensor([0, 1]))]
    out: dict[str, tuple[str, list[int] | None]] = {}
    for spec_pass in ns.list_passes():
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                report = ns.plan(model, spec_pass.name, example_input=x, data=data)
        except ns.NetsurgeonError:
            out[spec_pass.name] = ("n/a", None)
            continue
        noeffect = any(issubclass(w.category, ns.NoEffectWarning) for w in caught)
        out[spec_pass.name] = ("n/a" if noeffect else "changed", [report.relu_sites_before, report.relu_sites_after])
    return out


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
    for name, (status, sites) in recheck(spec, size).items():
        cell = row["passes"][name]
        assert cell["status"] == status, (spec, name, cell.get("reason"))
        if status == "changed":
            assert cell["sites"] == sites, (spec, name)


def test_a_fresh_clone_seeds_the_cache_from_the_page(page, tmp_path):
    """A partial run (--only) on a clone without .coverage-cache must rewrite the page with every row."""
    cache, docs = tmp_path / "cache", ROOT / "docs"
    assert seed_cache_from_page(cache, docs) == len(page["rows"])
    models = [(r["model"], r["family"]) for r in page["rows"]]
    assert [r["model"] for r in load_rows(cache, models)] == [m for m, _ in models]
    assert seed_cache_from_page(cache, docs) == 0  # rows already cached are never overwritten
