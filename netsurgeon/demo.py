"""``netsurgeon demo``: the whole workflow, offline, on a CPU, in a few minutes.

1. Train a baseline: torchvision ``resnet18`` adapted to small grey images (10 classes, the 8x8 grey
   digits resized to 32x32 and repeated to 3 channels, the weights' own normalisation).
2. For the control and each of the five passes: apply it to a copy of the baseline, evaluate right
   after surgery, fine-tune for the same short budget, export (safetensors + ONNX with its parity
   check), reload the artifact from disk and check it computes the same logits.
3. Print one comparison table and save it (``results.md``, ``results.json``) with a plot of the curves.

The control row ("fine-tune only") gets the same extra fine-tuning without surgery: a pass helped only
if it beats that row, not the baseline.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from netsurgeon.api import apply, probe_input
from netsurgeon.config import PassConfig
from netsurgeon.data import count_classes, make_loader
from netsurgeon.errors import ConfigError, NoEffectWarning
from netsurgeon.loading import load_model
from netsurgeon.passes import EraseReLU, GradientRectifiedFC, ProportionalReLU, PseudoDerivativeReLU, SpinalHeadConfig
from netsurgeon.progress import status
from netsurgeon.train import FinetuneConfig, evaluate, finetune, resolve_data
from netsurgeon.train.distributed import Context, IndexSampler
from netsurgeon.train.metrics import plot_curves

__all__ = ["DEFAULT_PASSES", "DemoResult", "DemoRow", "format_table", "run_demo"]

DEFAULT_PASSES: tuple[PassConfig, ...] = (EraseReLU(), ProportionalReLU(), PseudoDerivativeReLU(),
                                          SpinalHeadConfig(), GradientRectifiedFC())
CONTROL = "fine-tune only"


@dataclass
class DemoRow:
    variant: str
    sites_changed: int
    params: int
    params_delta: int
    top1_baseline: float
    top1_after_surgery: float
    top1_recalibrated: float  # after BN recalibration (equal to after_surgery when none was needed)
    top1_finetuned: float
    onnx_max_abs_diff: float | None
    reload_max_abs_diff: float
    seconds: float


@dataclass
class DemoResult:
    rows: list[DemoRow]
    files: list[str]
    seconds: float


def run_demo(
    data: str = "digits",
    out_dir: str | Path = "demo-out",
    *,
    model: str = "torchvision:resnet18",
    input_size: Sequence[int] = (3, 32, 32),
    baseline_epochs: int = 4,
    epochs: int = 2,
    batch_size: int = 64,
    passes: Sequence[PassConfig] = DEFAULT_PASSES,
    limit_train_batches: int | None = None,
    limit_eval_batches: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> DemoResult:
    """Run the demo (see the module docstring); every output goes under ``out_dir``."""
    started = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} is not empty; pass --overwrite (overwrite=True) or choose another --out.")
    torch.manual_seed(seed)
    common = {"batch_size": batch_size, "seed": seed, "progress": progress, "limit_train_batches": limit_train_batches,
              "limit_eval_batches": limit_eval_batches, "augment": "none"}  # the README says why
    base = load_model(model, num_classes=count_classes(data), input_size=input_size)
    train, test, _ = resolve_data(data, base, FinetuneConfig(**common))
    status(f"training the baseline {model} on {data} ({len(train)} images) for {baseline_epochs} epochs", progress)
    baseline = finetune(base, (train, test), FinetuneConfig(epochs=baseline_epochs, lr=0.05, warmup_epochs=0.5,
                                                            **common),
                        out_dir=out / "baseline", overwrite=overwrite, formats=("safetensors",))
    trained = baseline.model
    base_top1 = baseline.final["test_top1"]
    tune = FinetuneConfig(epochs=epochs, lr=0.01, **common)
    test_loader = make_loader(test, batch_size, shuffle=False, seed=seed)
    probe = probe_input(trained)
    rows, series = [], {"baseline": baseline.metrics}
    for config in (None, *passes):
        name = CONTROL if config is None else config.pass_name
        t0 = time.perf_counter()
        if config is None:
            candidate, sites = trained, 0
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NoEffectWarning)
                surgery = apply(trained, config, data=_loader_for(train, batch_size, limit_train_batches))
            candidate, sites = surgery.model, len(surgery.report.passes[0].changes)
        after = evaluate(candidate, test_loader, ctx=Context(), num_classes=train.num_classes,
                         limit=limit_eval_batches).top1
        status(f"{name}: {sites} sites changed, test top-1 {after:.2f}% right after surgery; fine-tuning", progress)
        variant_dir = out / name.replace(" ", "-")
        tuned = finetune(candidate, (train, test), tune, out_dir=variant_dir, overwrite=overwrite)
        reloaded = load_model(variant_dir)
        with torch.no_grad():
            reload_diff = float((reloaded(probe) - tuned.model.eval()(probe)).abs().max())
        params = sum(p.numel() for p in tuned.model.parameters())
        rows.append(DemoRow(name, sites, params, params - sum(p.numel() for p in trained.parameters()), base_top1,
                            after, tuned.metrics[0]["test_top1"], tuned.final["test_top1"],
                            tuned.export.onnx_max_abs_diff if tuned.export else None, reload_diff,
                            round(time.perf_counter() - t0, 1)))
        series[name] = [dict(r, epoch=r["epoch"] + baseline_epochs) for r in tuned.metrics]
    files = _write_results(rows, series, out, f"{model} on {data}")
    return DemoResult(rows, files, round(time.perf_counter() - started, 1))


def _loader_for(train: torch.utils.data.Dataset, batch_size: int, limit: int | None):
    """A few training batches for data-driven passes (gru-fc GRU-FC-2L)."""
    count = len(train) if limit is None else min(len(train), limit * batch_size)
    return make_loader(train, batch_size, shuffle=False, sampler=IndexSampler(range(count)))


def format_table(rows: Sequence[DemoRow]) -> str:
    """A Markdown table: one row per variant."""
    head = ("| variant | sites changed | params (Δ) | top-1 baseline | after surgery | after BN recal. | "
            "after fine-tune | ONNX max abs diff | reload max abs diff |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    lines = [head]
    for r in rows:
        onnx = f"{r.onnx_max_abs_diff:.1e}" if r.onnx_max_abs_diff is not None else "-"
        lines.append(f"| {r.variant} | {r.sites_changed} | {r.params:,} ({r.params_delta:+,}) | {r.top1_baseline:.2f} "
                     f"| {r.top1_after_surgery:.2f} | {r.top1_recalibrated:.2f} | {r.top1_finetuned:.2f} | {onnx} "
                     f"| {r.reload_max_abs_diff:.1e} |")
    return "\n".join(lines)


def _write_results(rows: list[DemoRow], series: dict, out: Path, title: str) -> list[str]:
    from netsurgeon.export.atomic import staged_files

    finals = [out / "results.md", out / "results.json"]
    with staged_files(finals) as (md, js):
        md.write_text(f"# netsurgeon demo: {title}\n\n{format_table(rows)}\n")
        js.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    plot = plot_curves(series, out / "curves.png", title=f"{title}: baseline, then each variant")
    return [str(p) for p in (*finals, plot)]
