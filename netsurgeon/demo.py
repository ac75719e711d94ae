"""``netsurgeon demo``: the whole workflow, offline, on a CPU, in a few minutes.

1. Train a baseline: torchvision ``resnet18`` adapted to small grey images (10 classes, the 8x8 grey
   digits resized to 32x32 and repeated to 3 channels, the weights' own normalisation).
2. For the control and each of the five passes (one ``netsurgeon.compare`` run, one seed: the same
   start, sample order and test images for every variant): apply it to the baseline, evaluate right
   after surgery, fine-tune for the same short budget, export (safetensors + ONNX with its parity
   check), reload the artifact from disk and check it computes the same logits.
3. Print one comparison table and save it (``results.md``, ``results.json``) with a plot of the curves.

The control row ("fine-tune only") gets the same extra fine-tuning without surgery: a pass helped only
if it beats that row, not the baseline.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from netsurgeon.compare import CONTROL, CompareSpec, run_spec
from netsurgeon.config import PassConfig
from netsurgeon.data import count_classes
from netsurgeon.errors import ConfigError, StatisticsWarning
from netsurgeon.loading import load_model
from netsurgeon.passes import EraseReLU, GradientRectifiedFC, ProportionalReLU, PseudoDerivativeReLU, SpinalHeadConfig
from netsurgeon.progress import status
from netsurgeon.train import FinetuneConfig, finetune, resolve_data
from netsurgeon.train.metrics import plot_curves
from netsurgeon.train.schema import Key

__all__ = ["DEFAULT_PASSES", "DemoResult", "DemoRow", "format_table", "run_demo"]

DEFAULT_PASSES: tuple[PassConfig, ...] = (EraseReLU(), ProportionalReLU(), PseudoDerivativeReLU(),
                                          SpinalHeadConfig(), GradientRectifiedFC())


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
    """Run the demo (see the module docstring); every output goes under ``out_dir``.

    ``out_dir`` is claimed first (checked writable and locked, so a second demo into it is refused at
    once); the baseline goes to ``out_dir/baseline``, the variants are one ``compare`` run with a single
    seed in ``out_dir/compare`` (``jobs/ARM/seed-S/``: each variant's checkpoint, metrics and artifact).
    """
    from netsurgeon.atomic import claim_output_dir

    started = time.perf_counter()
    out = Path(out_dir).expanduser()
    with claim_output_dir(out):
        if any(out.iterdir()) and not overwrite:
            raise ConfigError(f"{out} is not empty; pass --overwrite (overwrite=True) or choose another --out.")
        if overwrite:
            _remove_previous_comparison(out / "compare")
        common = {"batch_size": batch_size, "seed": seed, "progress": progress,  # augment=none: the README says why
                  "limit_train_batches": limit_train_batches, "limit_eval_batches": limit_eval_batches,
                  "augment": "none"}
        torch.manual_seed(seed)
        base = load_model(model, num_classes=count_classes(data), input_size=input_size)
        train, test, _ = resolve_data(data, base, FinetuneConfig(**common))
        status(f"training the baseline {model} on {data} ({len(train)} images) for {baseline_epochs} epochs", progress)
        baseline = finetune(base, (train, test), FinetuneConfig(epochs=baseline_epochs, lr=0.05, warmup_epochs=0.5,
                                                                **common),
                            out_dir=out / "baseline", overwrite=overwrite, formats=("safetensors",))
        base_top1 = baseline.final[Key.TEST_TOP1]
        spec = CompareSpec.build(str(out / "baseline"), data, [[p] for p in passes], [seed],
                                 FinetuneConfig(epochs=epochs, lr=0.01, **common), formats=("safetensors", "onnx"))
        with warnings.catch_warnings():  # one seed by design: the demo shows the variants; verdicts need seeds
            warnings.simplefilter("ignore", StatisticsWarning)
            compared = run_spec(spec, out / "compare", progress=progress)
        rows, series = [], {"baseline": baseline.metrics}
        for arm in spec.arms:
            job = json.loads((spec.job_dir(out / "compare", arm, seed) / "job.json").read_text())
            name = CONTROL if not arm.passes else arm.passes[0].pass_name
            rows.append(DemoRow(name, job["sites_changed"], job["params"], job["params_delta"], base_top1,
                                job["top1_after_surgery"], job["metrics"][0][Key.TEST_TOP1],
                                job["final"][Key.TEST_TOP1],
                                job["onnx_max_abs_diff"], job["reload_max_abs_diff"], job["seconds"]))
            series[name] = [{**r, Key.EPOCH: r[Key.EPOCH] + baseline_epochs} for r in job["metrics"]]
        files = _write_results(rows, series, out, f"{model} on {data}") + compared.files
    return DemoResult(rows, files, round(time.perf_counter() - started, 1))


def _remove_previous_comparison(path: Path) -> None:
    """--overwrite: an earlier demo's comparison is removed (only one this program wrote: it has its config)."""
    from netsurgeon.compare.spec import CONFIG_FILE

    if path.is_dir() and (path / CONFIG_FILE).is_file():
        shutil.rmtree(path)


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
    from netsurgeon.atomic import staged_files

    finals = [out / "results.md", out / "results.json"]
    with staged_files(finals) as (md, js):
        md.write_text(f"# netsurgeon demo: {title}\n\n{format_table(rows)}\n")
        js.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    plot = plot_curves(series, out / "curves.png", title=f"{title}: baseline, then each variant")
    return [str(p) for p in (*finals, plot)]
