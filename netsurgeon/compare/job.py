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
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsurgeon.compare.spec import Arm, CompareSpec
from netsurgeon.config import plain_values
from netsurgeon.errors import ConfigError
from netsurgeon.train.config import FinetuneConfig

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


def operate(spec: CompareSpec, arm: Arm, base: nn.Module, seed: int) -> tuple[nn.Module, int]:
    """The arm's passes applied to (a copy of) ``base`` as ``netsurgeon apply --data`` and a recipe apply them
    (data-driven passes measure on :func:`~netsurgeon.data.surgery_loader`'s unaugmented batches), and the
    number of sites they changed. An arm whose passes change nothing was refused before any job ran
    (:func:`netsurgeon.compare.plan.plan_arms`)."""
    from netsurgeon.api import apply

    if not arm.passes:
        return base, 0
    result = apply(base, list(arm.passes), data=surgery_data(spec, arm, base, seed))
    return result.model, result.report.changed


def surgery_data(spec: CompareSpec, arm: Arm, base: nn.Module, seed: int) -> torch.utils.data.DataLoader | None:
    """The batches a data-driven pass of ``arm`` measures on (None when none uses data): the training split,
    unaugmented, in the fine-tune's batch size, as a recipe gives them."""
    from netsurgeon.data import surgery_loader

    if not any(p.uses_data() for p in arm.passes):
        return None
    return surgery_loader(spec.data, base, batch_size=spec.finetune.batch_size, seed=seed)


def job_config(spec: CompareSpec, seed: int) -> FinetuneConfig:
    """The fine-tune config of seed ``seed``'s jobs: the comparison's, with its seed (what ``netsurgeon finetune
    --set seed=S`` with the same settings trains with)."""
    return dataclasses.replace(spec.finetune, seed=seed)


def start_model(spec: CompareSpec, arm: Arm, seed: int) -> tuple[nn.Module, nn.Module, int]:
    """(the model this job fine-tunes from, the seed's base model, sites changed)."""
    base = build_base(spec, seed)
    model, sites = operate(spec, arm, base, seed)
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
    from netsurgeon.atomic import claim_output_dir

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
    from netsurgeon.atomic import staged_files
    from netsurgeon.loading import load_model
    from netsurgeon.models.info import probe_input
    from netsurgeon.train import CHECKPOINT, finetune, resolve_data
    from netsurgeon.train.tracking import RunLabels

    started = time.perf_counter()
    cfg = job_config(spec, seed)
    model, base, sites = start_model(spec, arm, seed)
    # the datasets the loop builds from the spec (the same call on the same model and config): the test split
    # for the predictions, and both transforms for the record
    train, test, _ = resolve_data(spec.data, model, cfg)
    after_surgery = _evaluate_top1(model, test, spec)
    digests = _digests(model)
    resume = (job_dir / CHECKPOINT).exists()
    out = job_dir.parent.parent.parent
    labels = RunLabels(name=f"{arm.slug}/seed-{seed}", group=spec.tracking_group(out), store=out,
                       tags={"netsurgeon.arm": arm.name, "netsurgeon.seed": str(seed)})
    # exactly `netsurgeon finetune` from here: the same function with the data spec, config and seed
    result = finetune(model, spec.data, cfg, out_dir=job_dir, resume=resume, overwrite=not resume,
                      formats=spec.formats, labels=labels,
                      resume_hint="run the same compare command again to continue (finished jobs are kept, "
                                  "this one resumes from its checkpoint)")
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
        "metrics": result.metrics, "final": result.final, "weights": result.weights,  # what the export holds
        "config": plain_values(cfg.to_dict()), "data": spec.data,
        "transforms": {"train": repr(getattr(train, "transform", None)),
                       "test": repr(getattr(test, "transform", None))},
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
