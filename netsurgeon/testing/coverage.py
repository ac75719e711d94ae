"""The coverage page's row cache, shared by ``benchmarks/coverage.py`` (which fills it and writes the pages)
and ``tests/test_coverage_page.py`` (tests import nothing from ``benchmarks/``).

The cache holds one JSON row per model under ``CACHE/models/``; on a fresh clone it is seeded from the
published ``docs/coverage.json``. An n/a reason is grouped under a short category (``CATEGORIES``),
recomputed when rows are loaded, so the page follows the current categories, not those of the run that
cached a row.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["CATEGORIES", "cache_path", "load_rows", "reason_category", "seed_cache_from_page"]

#: n/a reasons, by what the message says -> a short category; the page lists the full reason
CATEGORIES: list[tuple[str, str]] = [
    (r"cannot be traced|needs a torch\.fx graph", "untraceable"),
    (r"owning 0 ReLU", "no counted conv owns a ReLU"),
    (r"no ReLU site|no site in scope|matched nothing", "no ReLU site in scope"),
    (r"no basic modules", "no basic module found"),
    (r"min_keep=\d+ kept extra", "min_keep keeps every ReLU"),
    (r"already end linearly", "blocks end linearly"),
    (r"another activation type", "blocks end with another activation"),
    (r"no nn\.Linear|not an nn\.Linear|1x1 convolution after global pooling", "no FC head"),
    (r"reads a \d-D tensor", "head reads a feature map"),
    (r"called more than once|called \d+ times", "head layer shared"),
    (r"in place and its input is read again", "in-place guard"),
    (r"needs data", "needs data"),
]


def reason_category(message: str) -> str:
    """The short category of an n/a reason (``"other"`` when no pattern matches)."""
    return next((name for pattern, name in CATEGORIES if re.search(pattern, message)), "other")


def cache_path(cache: Path, spec: str) -> Path:
    """Where the row of model ``spec`` is cached under ``cache``."""
    return cache / "models" / (spec.replace(":", "__").replace("/", "_") + ".json")


def seed_cache_from_page(cache: Path, docs: Path) -> int:
    """Put the published rows (``docs/coverage.json``) into the cache where it has none, with the fingerprint
    they ran on: on a fresh clone a partial run (``--only``) then rewrites the pages with every other row
    kept, never with its own rows alone. Returns how many rows were seeded."""
    page = docs / "coverage.json"
    if not page.exists():
        return 0
    seeded = 0
    for row in json.loads(page.read_text()).get("rows", []):
        path = cache_path(cache, row["model"])
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(row, indent=1))
            seeded += 1
    return seeded


def load_rows(cache: Path, models: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The cached rows of ``models`` ((spec, family) pairs, in that order; models without a row are left
    out), each with its family and its n/a categories recomputed."""
    rows = []
    for spec, family in models:
        path = cache_path(cache, spec)
        if path.exists():
            row = json.loads(path.read_text())
            row["family"] = family
            for cell in row.get("passes", {}).values():
                if "reason" in cell:  # categories follow this file, not the run that cached the row
                    cell["category"] = reason_category(cell["reason"])
                    if cell["category"] == "no ReLU site in scope" and row.get("relu_sites", 0) > 0:
                        cell["category"] = "ReLUs only outside basic modules"
            rows.append(row)
    return rows
