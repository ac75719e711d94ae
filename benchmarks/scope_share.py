"""Where surgery edits land: the share of changes applied as module swaps, block rewrites and root rewrites.

Every registered pass with its defaults over the models of the kept-class test (the torchvision and
timm families of issue 12), at small inputs on the CPU. A change is one row of a pass report: a swap
replaces a module in place; a block rewrite regenerates the ``forward`` of the one module that makes the
call (a shared ``nn.ReLU``, ``F.relu``); a root rewrite regenerates the model's own ``forward`` (the class
and every other method are kept). gru-fc edits weights in place and is counted apart.

    python benchmarks/scope_share.py            # prints the table (about a minute on 2 cores)
    python benchmarks/scope_share.py --markdown # the same as a Markdown table, for the README
"""

from __future__ import annotations

import argparse
import warnings
from collections import Counter

import torch

import netsurgeon as ns
from netsurgeon.registry import list_passes
from netsurgeon.testing.model_lists import KEPT_CLASS_MODELS

MODELS = KEPT_CLASS_MODELS
KINDS = ("swap", "block", "root", "weights")


def measure() -> dict[str, Counter]:
    """Changes per scope kind, per model."""
    table: dict[str, Counter] = {}
    for spec, kwargs, side in MODELS:
        torch.manual_seed(0)
        model = ns.load_model(spec, num_classes=10, input_size=(3, side, side), **kwargs)
        g = torch.Generator().manual_seed(1)
        data = [(torch.randn(4, 3, side, side, generator=g), torch.arange(4) % 10)]
        counts: Counter = Counter()
        for spec_pass in list_passes():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ns.NoEffectWarning)
                report = ns.plan(model, spec_pass.name, data=data)
            counts.update(c.scope.partition(":")[0] for p in report.passes for c in p.changes)
        table[spec] = counts
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    table = measure()
    total = sum(table.values(), Counter())
    structural = sum(total[k] for k in ("swap", "block", "root"))
    rows = [(spec, *(str(c[k]) for k in KINDS)) for spec, c in table.items()]
    rows.append(("all", *(str(total[k]) for k in KINDS)))
    rows.append(("share of structural changes", *(f"{100 * total[k] / structural:.1f}%" for k in KINDS[:3]), "-"))
    header = ("model", "module swaps", "block rewrites", "root rewrites", "weights in place")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + " --- |" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
