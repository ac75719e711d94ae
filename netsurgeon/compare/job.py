"""One (arm, seed) job: build the seed's starting model, apply the arm's passes, fine-tune, predict.

Every executor runs exactly this function (in this process, in a child process, or as a SLURM array
task through submitit): ``run_job(out, arm_slug, seed)`` reads the experiment from
``out/compare-config.json``, so a job needs nothing but the directory.

The job's directory (``out/jobs/ARM/seed-S/``) is an ordinary ``finetune`` output directory
(checkpoint, metrics, curves, the exported artifact) plus ``predictions.csv`` (per test image: its
index, label, top-1 prediction and whether the label is in the top 5) and ``job.json``, written last
and atomically with the predictions: a job is finished exactly when ``job.json`` exists. A job that
finds ``checkpoint.pt`` but no ``job.json`` was interrupted and resumes from it (``finetune(resume=True)``).
``job.json`` records the digest of its ``predictions.csv`` and of the settings it ran under (the fine-tune config
and, digested, the model, data, formats and the arm's passes); :func:`finished_job` checks both against the files
and the comparison's ``compare-config.json``, so a hand-edited or damaged job is refused by name, never pooled.

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

from netsurgeon.compare.spec import CONFIG_FILE, NOT_RESULTS, Arm, CompareSpec, describe_differences, with_defaults
from netsurgeon.config import plain_values
from netsurgeon.errors import ConfigError
from netsurgeon.train.config import FinetuneConfig

__all__ = ["JOB_FILE", "PREDICTIONS", "comparison_identity", "finished_job", "read_job", "read_predictions", "run_job",
           "settings_digest", "start_model"]

JOB_FILE = "job.json"
PREDICTIONS = "predictions.csv"
#: what a finished job's record must hold (the report reads these)
RECORD_KEYS = ("arm", "slug", "seed", "sites_changed", "params_delta", "top1_after_surgery", "metrics", "final",
               "config")
#: the spec's settings that make a job's result, besides the fine-tune config and the arm (digested in job.json)
JOB_SETTINGS = ("model", "checkpoint", "pretrained", "num_classes", "input_size", "data", "formats", "weights_sha256")


def read_job(job_dir: Path) -> dict[str, Any] | None:
    """The finished job's record, or None when it has not finished."""
    path = job_dir / JOB_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def settings_digest(spec: CompareSpec, arm: Arm) -> str:
    """A digest of what the comparison says one of ``arm``'s jobs runs with besides its fine-tune config (the model,
    its weights, the data, the export formats and the arm's passes): recorded in ``job.json``, checked on reruns."""
    stored = spec.to_dict()
    values = {**{k: stored[k] for k in JOB_SETTINGS}, "arm": arm.to_dict()}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def _result_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in NOT_RESULTS}


def finished_job(spec: CompareSpec, out: Path, arm: Arm, seed: int) -> dict[str, Any] | None:
    """The job's record when it has finished (None when it has not), checked against its files and ``spec``: a
    ``job.json`` that is not a job record, a ``predictions.csv`` that differs from the one the job wrote, or a job
    trained with other settings than ``compare-config.json`` states is refused in one line naming the job (its
    folder is removed to rerun it), so no edited or damaged job reaches the report."""
    job_dir = spec.job_dir(out, arm, seed)
    path = job_dir / JOB_FILE
    if not path.exists():
        return None
    fix = f"remove the folder {job_dir} and run the same compare command again to rerun that job"
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{path} is damaged (not JSON); {fix}.") from None
    missing = [k for k in RECORD_KEYS if k not in record] if isinstance(record, dict) else list(RECORD_KEYS)
    if missing or not isinstance(record["final"], dict) or not isinstance(record["metrics"], list) \
            or not isinstance(record["config"], dict):
        what = f"missing {', '.join(missing)}" if missing else "wrong types"
        raise ConfigError(f"{path} is not a finished job's record ({what}); {fix}.")
    if record["slug"] != arm.slug or record["seed"] != seed:
        raise ConfigError(f"{path} is the record of {record['slug']} seed {record['seed']}, not of this job; {fix}.")
    predictions = job_dir / PREDICTIONS
    if not predictions.is_file():
        raise ConfigError(f"{predictions} is missing; {fix}.")
    digest = record.get("predictions_sha256")
    if digest is not None and _file_sha256(predictions) != digest:
        raise ConfigError(f"{predictions} differs from the one its job wrote (edited or damaged); {fix}.")
    if digest is None:  # a job from before the digest: at least readable
        try:
            read_predictions(job_dir)
        except (ValueError, KeyError, TypeError, csv.Error):
            raise ConfigError(f"{predictions} is damaged; {fix}.") from None
    differ = describe_differences(_result_config(with_defaults(record["config"])),
                                  _result_config(plain_values(job_config(spec, seed).to_dict())), "finetune.")
    settings = record.get("settings_sha256")
    if not differ and settings is not None and settings != settings_digest(spec, arm):
        differ = ["the model, data, formats or the arm's passes"]
    if differ:
        raise ConfigError(f"{path} was trained with other settings than {out / CONFIG_FILE} states "
                          f"({'; '.join(differ)}); {fix}, or restore {CONFIG_FILE}.")
    return record


def comparison_identity(spec: CompareSpec, base: nn.Module | None = None) -> dict[str, Any]:
    """What the comparison's runs are on, as ``finetune --resume`` records it
    (:func:`netsurgeon.train.outputs.run_identity` of the first seed's base model and the data: the data spec, the
    training and test image counts, the class count): kept in ``compare-config.json``; a rerun must match it.
    ``base``: that model when the caller has built it already."""
    from netsurgeon.train import resolve_data
    from netsurgeon.train.outputs import run_identity

    seed = spec.seeds[0]
    base = build_base(spec, seed) if base is None else base
    train, test, _ = resolve_data(spec.data, base, job_config(spec, seed))
    return run_identity(base, spec.data, train, test)


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
    done = finished_job(spec, out, arm, seed)
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
    # what the report cross-checks on every rerun (finished_job)
    record["predictions_sha256"] = hashlib.sha256(text.getvalue().encode()).hexdigest()
    record["settings_sha256"] = settings_digest(spec, arm)
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
