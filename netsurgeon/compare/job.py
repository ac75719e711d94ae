"""One (arm, seed) job: build the seed's starting model, apply the arm's passes, fine-tune, predict.

Every executor runs exactly this function (in this process, in a child process, or as a SLURM array
task through submitit): ``run_job(out, arm_slug, seed)`` reads the experiment from
``out/compare-config.json``, so a job needs nothing but the directory.

The job's directory (``out/jobs/ARM/seed-S/``) is an ordinary ``finetune`` output directory
(checkpoint, metrics, curves, the exported artifact) plus ``predictions.csv`` (per test image: its
index, label, top-1 prediction and whether the label is in the top 5) and ``job.json``, written last
and atomically with the predictions: a job is finished exactly when ``job.json`` exists. A job that
finds ``checkpoint.pt`` but no ``job.json`` was interrupted and resumes from it (``finetune(resume=True)``).

Pairing: for one seed every arm starts from the same weights (``torch.manual_seed(seed)`` before the
model is built, as ``netsurgeon finetune`` does, so a random initialisation is the same too), and
``finetune`` with the same seed draws the same sample order (a pure function of seed, epoch and rank)
and evaluates on the same test images. ``job.json`` keeps a digest of every starting tensor, so the
pairing can be checked after the fact.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsurgeon.compare.spec import Arm, CompareSpec
from netsurgeon.errors import ConfigError

__all__ = ["JOB_FILE", "PREDICTIONS", "read_job", "read_predictions", "run_job", "start_model"]

JOB_FILE = "job.json"
PREDICTIONS = "predictions.csv"


def read_job(job_dir: Path) -> dict[str, Any] | None:
    """The finished job's record, or None when it has not finished."""
    path = job_dir / JOB_FILE
    return json.loads(path.read_text()) if path.exists() else None


def read_predictions(job_dir: Path) -> dict[str, list[int]]:
    """Columns of ``predictions.csv``: index, label, prediction, top5 (1 when the label is in the top 5)."""
    with open(job_dir / PREDICTIONS, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {key: [int(r[key]) for r in rows] for key in ("index", "label", "prediction", "top5")}


def _find_arm(spec: CompareSpec, slug: str) -> Arm:
    for arm in spec.arms:
        if arm.slug == slug:
            return arm
    raise ConfigError(f"no arm {slug!r} in this comparison; arms: {', '.join(a.slug for a in spec.arms)}.")


def _digests(model: nn.Module) -> dict[str, str]:
    return {k: hashlib.sha256(v.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
            for k, v in model.state_dict().items()}


def build_base(spec: CompareSpec, seed: int) -> nn.Module:
    """The seed's base model: ``torch.manual_seed(seed)`` first, so a random initialisation is the same in every arm."""
    from netsurgeon.loading import load_model

    torch.manual_seed(seed)
    return load_model(spec.model, checkpoint=spec.checkpoint, num_classes=spec.num_classes,
                      input_size=spec.input_size, pretrained=spec.pretrained)


def operate(spec: CompareSpec, arm: Arm, base: nn.Module, train: torch.utils.data.Dataset) -> tuple[nn.Module, int]:
    """The arm's passes applied to (a copy of) ``base``, and the number of sites they changed."""
    from netsurgeon.api import apply
    from netsurgeon.data import make_loader
    from netsurgeon.errors import NoEffectWarning
    from netsurgeon.train.distributed import IndexSampler

    if not arm.passes:
        return base, 0
    data = None
    if any(p.uses_data() for p in arm.passes):  # a few training batches, as in the demo
        cfg = spec.finetune
        limit = cfg.limit_train_batches
        count = len(train) if limit is None else min(len(train), limit * cfg.batch_size)
        data = make_loader(train, cfg.batch_size, shuffle=False, sampler=IndexSampler(range(count)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoEffectWarning)
        result = apply(base, list(arm.passes), data=data)
    return result.model, result.report.changed


def start_model(spec: CompareSpec, arm: Arm, seed: int) -> tuple[nn.Module, nn.Module, int]:
    """(the model this job fine-tunes from, the seed's base model, sites changed)."""
    from netsurgeon.train import resolve_data

    base = build_base(spec, seed)
    train, _, _ = resolve_data(spec.data, base)
    model, sites = operate(spec, arm, base, train)
    return model, base, sites


def _device(spec: CompareSpec) -> torch.device:
    want = spec.finetune.device
    return torch.device("cuda" if want != "cpu" and torch.cuda.is_available() else "cpu")


def _test_indices(spec: CompareSpec, test: torch.utils.data.Dataset) -> range:
    cfg = spec.finetune
    count = len(test) if cfg.limit_eval_batches is None else min(len(test), cfg.limit_eval_batches * cfg.batch_size)
    return range(count)


@torch.no_grad()
def predict(model: nn.Module, test: torch.utils.data.Dataset, spec: CompareSpec) -> dict[str, list[int]]:
    """Per-image top-1 prediction and top-5 hit on the test images ``finetune`` evaluates on."""
    from netsurgeon.data import make_loader
    from netsurgeon.train.distributed import IndexSampler

    device = _device(spec)
    model = model.to(device).eval()
    indices = list(_test_indices(spec, test))
    loader = make_loader(test, spec.finetune.batch_size, shuffle=False, sampler=IndexSampler(indices))
    labels, preds, top5 = [], [], []
    for x, y in loader:
        logits = model(x.to(device)).float().cpu()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        labels += y.tolist()
        preds += top[:, 0].tolist()
        top5 += top.eq(y[:, None]).any(dim=1).int().tolist()
    return {"index": indices, "label": labels, "prediction": preds, "top5": top5}


def _evaluate_top1(model: nn.Module, test: torch.utils.data.Dataset, spec: CompareSpec) -> float:
    p = predict(model, test, spec)
    return 100 * sum(a == b for a, b in zip(p["label"], p["prediction"], strict=True)) / max(1, len(p["label"]))


def run_job(out: str | Path, arm_slug: str, seed: int) -> dict[str, Any]:
    """Run (or resume, or just read) one job of the comparison in ``out``; returns its ``job.json`` record."""
    from netsurgeon.export.atomic import claim_output_dir

    out = Path(out)
    spec = CompareSpec.read(out)
    arm = _find_arm(spec, arm_slug)
    job_dir = spec.job_dir(out, arm, seed)
    done = read_job(job_dir)
    if done is not None:
        return done
    with claim_output_dir(job_dir, flag="the job directory"):  # one writer per job, even across executors
        return _run_claimed(spec, arm, seed, job_dir)


def _run_claimed(spec: CompareSpec, arm: Arm, seed: int, job_dir: Path) -> dict[str, Any]:
    from netsurgeon.export.atomic import staged_files
    from netsurgeon.loading import load_model
    from netsurgeon.models.info import probe_input
    from netsurgeon.train import CHECKPOINT, export_finetuned, resolve_data, run_training
    from netsurgeon.train.tracking import RunLabels

    started = time.perf_counter()
    base = build_base(spec, seed)
    train, test, _ = resolve_data(spec.data, base)
    model, sites = operate(spec, arm, base, train)
    after_surgery = _evaluate_top1(model, test, spec)
    digests = _digests(model)
    cfg = dataclasses.replace(spec.finetune, seed=seed)
    resume = (job_dir / CHECKPOINT).exists()
    out = job_dir.parent.parent.parent
    labels = RunLabels(name=f"{arm.slug}/seed-{seed}", group=spec.tracking_group(out), store=out,
                       tags={"netsurgeon.arm": arm.name, "netsurgeon.seed": str(seed)})
    result = run_training(model, (train, test), cfg, out_dir=job_dir, resume=resume, overwrite=not resume,
                          labels=labels)
    export_finetuned(result, job_dir, spec.formats)
    predictions = predict(result.model, test, spec)
    reload_diff = None
    if "safetensors" in spec.formats:
        probe = probe_input(result.model)
        reloaded = load_model(job_dir)
        with torch.no_grad():
            reload_diff = float((reloaded(probe) - result.model.cpu().eval()(probe)).abs().max())
    params = sum(p.numel() for p in result.model.parameters())
    record = {
        "arm": arm.name, "slug": arm.slug, "seed": seed, "sites_changed": sites, "params": params,
        "params_delta": params - sum(p.numel() for p in base.parameters()), "top1_after_surgery": after_surgery,
        "metrics": result.metrics, "final": result.final,
        "onnx_max_abs_diff": result.export.onnx_max_abs_diff if result.export else None,
        "reload_max_abs_diff": reload_diff, "start_digests": digests, "resumed": resume,
        "seconds": round(time.perf_counter() - started, 1),
    }
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["index", "label", "prediction", "top5"])
    writer.writerows(zip(*(predictions[k] for k in ("index", "label", "prediction", "top5")), strict=True))
    with staged_files([job_dir / PREDICTIONS, job_dir / JOB_FILE]) as (pred_tmp, job_tmp):
        pred_tmp.write_text(text.getvalue())
        job_tmp.write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(argv: list[str] | None = None) -> None:
    """``python -m netsurgeon.compare.job OUT ARM_SLUG SEED`` (what ``--jobs N`` starts per job)."""
    from netsurgeon.errors import NetsurgeonError

    out, slug, seed = (argv if argv is not None else sys.argv[1:])
    try:
        run_job(out, slug, int(seed))
    except NetsurgeonError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
