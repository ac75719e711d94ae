"""The per-epoch metrics files (CSV and JSON lines) and the PNG plot of the curves."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netsurgeon.atomic import staged_files
from netsurgeon.train.schema import Key

__all__ = ["plot_curves", "write_metrics"]


def write_metrics(rows: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Rewrite ``metrics.csv`` and ``metrics.jsonl`` in ``out_dir`` atomically; returns their paths."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    finals = [out_dir / "metrics.csv", out_dir / "metrics.jsonl"]
    with staged_files(finals) as temps:
        temps[0].write_text(text.getvalue())
        temps[1].write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
    return finals


def plot_curves(series: dict[str, Sequence[dict[str, Any]]], path: Path, *, title: str = "") -> Path:
    """Loss and top-1 accuracy per epoch, one line per named run (and its EMA weights' when evaluated), saved as
    a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for name, rows in series.items():
        trained = [r for r in rows if r.get(Key.TRAIN_LOSS) is not None]
        if trained:
            ax_loss.plot([r[Key.EPOCH] for r in trained], [r[Key.TRAIN_LOSS] for r in trained], marker="o",
                         label=name)
        evaluated = [r for r in rows if r.get(Key.TEST_TOP1) is not None]
        if evaluated:
            ax_acc.plot([r[Key.EPOCH] for r in evaluated], [r[Key.TEST_TOP1] for r in evaluated], marker="o",
                        label=name)
        averaged = [r for r in rows if r.get(Key.EMA_TEST_TOP1) is not None]
        if averaged:  # weight EMA on: its accuracy beside the raw weights'
            ax_acc.plot([r[Key.EPOCH] for r in averaged], [r[Key.EMA_TEST_TOP1] for r in averaged], marker="s",
                        linestyle="--", label=f"{name} (EMA)")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="training loss")
    ax_acc.set(xlabel="epoch (0: before fine-tuning)", ylabel="test top-1 (%)", title="test accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if len(series) > 1 or ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with staged_files([path]) as (temp,):
        fig.savefig(temp, format="png", dpi=100)
    plt.close(fig)
    return path
