"""``netsurgeon export-hub ARTIFACT --out DIR [--push REPO_ID]``: an artifact as a Hugging Face hub folder.

The folder is what timm's ``push_to_hf_hub`` writes, ``config.json`` (``architecture``, ``num_classes``,
``pretrained_cfg``: timm's own ``save_config_for_hf`` for a timm base model) and ``model.safetensors`` (the
artifact's file, byte for byte, so netsurgeon's provenance header stays), plus ``model.onnx`` when the
artifact has one, and a ``README.md`` model card built with ``huggingface_hub.ModelCard``/``ModelCardData``:
YAML metadata (library, base model, tags with the passes, the dataset, the top-1 as model-index) and a body
that says what was done (each pass with its parameters and its paper, the fine-tune settings, top-1 before
and after fine-tuning, the ONNX parity, the weight digest, and a ``compare`` job's comparison table and
verdicts). The folder is an artifact directory: ``load_model(DIR)`` and ``netsurgeon verify DIR`` read it.

A separate command rather than ``--format hub`` on ``apply``/``finetune``: it publishes any finished
artifact (a compare job's included, whose comparison is only known once every job has run), verified
first, and leaves the training commands' outputs alone. ``--push`` uploads the folder with
``huggingface_hub`` (``create_repo``, ``upload_folder``); a failed upload (offline, no token) is one line
and the folder stays.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from netsurgeon.atomic import check_not_inputs, staged_files
from netsurgeon.config import plain_values
from netsurgeon.errors import ConfigError, ExportError
from netsurgeon.export import VerifyResult, verify_artifact
from netsurgeon.export.artifact import load_artifact, read_provenance
from netsurgeon.train.schema import Key, top1_key

__all__ = ["HUB_FILES", "HubResult", "HubSettings", "export_hub", "model_card", "push_folder"]

#: what a hub folder holds (model.onnx too when the artifact has one)
HUB_FILES = ("config.json", "model.safetensors", "README.md")


@dataclass(frozen=True)
class HubSettings:
    """What ``netsurgeon export-hub`` is given (its options, by the same names)."""

    artifact: str | Path
    out: str | Path
    push: str | None = None  # a hub repository id (user/name) to upload the folder to
    private: bool = False  # --push: create the repository private
    overwrite: bool = False  # replace the hub files already in --out


@dataclass
class HubResult:
    """The folder, its files, the verification of the artifact, and the pushed repository's URL."""

    folder: str
    files: list[str]
    verify: VerifyResult
    url: str | None = None
    messages: list[str] = field(default_factory=list)


def export_hub(settings: HubSettings) -> HubResult:
    """Verify the artifact, write the hub folder, and push it when asked (see the module docstring)."""
    source = Path(settings.artifact).expanduser()
    weights = source / "model.safetensors" if source.is_dir() else source
    if weights.suffix != ".safetensors":
        raise ConfigError(f"{source} is not an artifact; give an export directory or its model.safetensors.")
    record = read_provenance(weights)
    checked = verify_artifact(weights)
    if not checked.ok:
        raise ExportError(f"{weights}: ONNX parity failed ({checked.onnx_max_abs_diff:.3g}); re-export the artifact "
                          "before publishing it.")
    model = load_artifact(weights, record)
    out = Path(settings.out).expanduser()
    onnx = weights.with_suffix(".onnx")
    names = [*HUB_FILES, *(["model.onnx"] if onnx.is_file() else [])]
    finals = [out / name for name in names]
    check_not_inputs(finals, [weights, onnx], overwrite=settings.overwrite)
    comparison = _comparison(weights.parent)
    out.mkdir(parents=True, exist_ok=True)
    with staged_files(finals) as temps:
        staged = dict(zip(names, temps, strict=True))
        shutil.copyfile(weights, staged["model.safetensors"])
        if "model.onnx" in staged:
            shutil.copyfile(onnx, staged["model.onnx"])
        staged["config.json"].write_text(json.dumps(hub_config(model, record), indent=2) + "\n")
        model_card(record, checked, comparison, repo_id=settings.push, name=out.name).save(staged["README.md"])
    result = HubResult(str(out), [str(f) for f in finals], checked)
    if settings.push:
        result.url = push_folder(out, settings.push, private=settings.private)
    return result


def push_folder(folder: Path, repo_id: str, *, private: bool = False) -> str:
    """Upload ``folder`` to the hub repository ``repo_id`` (created when missing); its URL. Any failure is one
    line that says the folder is kept."""
    from huggingface_hub import create_repo, upload_folder

    try:
        repo = create_repo(repo_id, private=private, exist_ok=True)
        commit = upload_folder(repo_id=repo.repo_id, folder_path=str(folder), commit_message="netsurgeon export-hub")
    except Exception as err:  # offline, no token, no permission, a network error: all end the same way
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise ExportError(f"could not push {folder} to {repo_id} ({type(err).__name__}: {first}); the folder is "
                          f"kept: run export-hub again with --push, or hf upload {repo_id} {folder}.") from None
    return str(getattr(commit, "repo_url", None) or repo.url)


# ---------------------------------------------------------------------------------------------- config.json
def _num_classes(model: nn.Module) -> int:
    import torch

    from netsurgeon.models.info import probe_input

    with torch.no_grad():
        logits = model.eval()(probe_input(model, batch=1))
    return int(logits.shape[-1])


def hub_config(model: nn.Module, record: dict[str, Any]) -> dict[str, Any]:
    """timm's ``config.json``: timm's own ``save_config_for_hf`` for a timm model; the same keys otherwise
    (the model's preprocessing as ``pretrained_cfg``), and a ``netsurgeon`` block saying how to load it."""
    from netsurgeon.data import model_data_config

    spec = record["model"]["spec"]
    library, _, name = spec.partition(":")
    config: dict[str, Any] | None = None
    if library == "timm" and hasattr(model, "pretrained_cfg"):
        from timm.models import save_for_hf

        with tempfile.TemporaryDirectory() as tmp:
            try:  # timm's own writer (its weights file, without netsurgeon's header, is not used)
                save_for_hf(model, tmp, safe_serialization=True)
                config = json.loads((Path(tmp) / "config.json").read_text())
            except (ValueError, TypeError, KeyError, AttributeError):  # arguments timm cannot write: ours below
                config = None
    if config is None:
        data = model_data_config(model)
        classes = _num_classes(model)
        config = {"architecture": name, "num_classes": classes, "pretrained_cfg": {
            "input_size": list(record["model"]["input_size"]), "mean": list(data.mean), "std": list(data.std),
            "interpolation": data.interpolation, "crop_pct": data.crop_pct, "crop_mode": data.crop_mode,
            "num_classes": classes}}
    config["pretrained_cfg"]["input_size"] = list(record["model"]["input_size"])  # the artifact's, not timm's default
    config["netsurgeon"] = {"base_model": spec, "passes": [step["pass"] for step in record["passes"]],
                            "load": "netsurgeon.load_model(DIR): the architecture above is the base model before "
                                    "surgery; timm alone would build it without the passes"}
    return config


# ---------------------------------------------------------------------------------------------- the card
def _comparison(job_dir: Path) -> dict[str, Any] | None:
    """A compare job's artifact (``OUT/jobs/ARM/seed-S``): its job record and the comparison's summary."""
    from netsurgeon.compare.job import read_job

    out = job_dir.parent.parent.parent
    if job_dir.parent.parent.name != "jobs" or not (out / "compare.json").is_file():
        return None
    job = read_job(job_dir)
    return None if job is None else {"job": job, "summary": json.loads((out / "compare.json").read_text())}


def _paper(pass_name: str) -> str:
    """The pass's paper: the first sentence of its module's docstring (where every pass cites it)."""
    from netsurgeon.registry import get_pass

    doc = sys.modules[get_pass(pass_name).fn.__module__].__doc__ or ""
    head = " ".join(doc.strip().split("\n\n")[0].split())
    return head.partition(": ")[2] or head


def _changed_params(step: dict[str, Any]) -> list[str]:
    from netsurgeon.registry import get_pass

    defaults = plain_values(get_pass(step["pass"]).config_cls().to_dict())
    return [f"{k}={json.dumps(v)}" for k, v in step["config"].items() if defaults.get(k) != v]


def _dataset(label: str) -> str:
    from netsurgeon.data import DataSpec

    try:
        spec = DataSpec.parse(label.rstrip(":"))
    except ConfigError:
        return label
    return spec.data_kind.card_name(spec)


def _pct(value: Any) -> str:
    return f"{value:.2f}%" if isinstance(value, (int, float)) else "-"


def model_card(record: dict[str, Any], checked: VerifyResult, comparison: dict[str, Any] | None = None, *,
               repo_id: str | None = None, name: str = "model") -> Any:
    """The ``README.md`` card (a ``huggingface_hub.ModelCard``) of an artifact's provenance record."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    spec = record["model"]["spec"]
    passes = record["passes"]
    tune = record.get("finetune")
    library, _, base = spec.partition(":")
    tag = (record.get("weights") or {}).get("tag")
    hub_base = f"timm/{tag.partition(':')[2]}" if library == "timm" and tag and tag.startswith("timm:") else None
    dataset = _dataset(tune["data"]) if tune else None
    final = tune["metrics"][-1] if tune and tune["metrics"] else {}
    first = tune["metrics"][0] if tune and tune["metrics"] else {}
    top1 = top1_key(tune["weights"]) if tune else Key.TEST_TOP1  # the exported weights' (EMA when it was chosen)
    results = [EvalResult(task_type="image-classification", dataset_type=dataset, dataset_name=dataset,
                          metric_type="accuracy", metric_name="test top-1 (%)", metric_value=final[top1])] \
        if dataset and final.get(top1) is not None else None
    data = ModelCardData(
        library_name="netsurgeon", pipeline_tag="image-classification", base_model=hub_base,
        tags=["netsurgeon", "image-classification", *dict.fromkeys(step["pass"] for step in passes)],
        datasets=[dataset] if dataset else None, metrics=["accuracy"] if results else None,
        model_name=(repo_id or name) if results else None, eval_results=results,
        netsurgeon={"base_model": spec, "weights": record.get("weights"),
                    "passes": [{"pass": s["pass"], "changed": _changed_params(s), "sites": len(s.get("sites", []))}
                               for s in passes],
                    "weights_sha256": (record.get("tensors") or {}).get("sha256")})
    lines = [f"# {repo_id or name}", "",
             f"`{spec}` after {len(passes)} surgery pass(es) by netsurgeon"
             + (f", then fine-tuned on `{tune['data'].rstrip(':')}`." if tune else " (not fine-tuned)."), "",
             "## What was done", ""]
    if not passes:
        lines.append("No pass: the base model as loaded (a fine-tune-only control).")
    for i, step in enumerate(passes, start=1):
        changed = ", ".join(_changed_params(step)) or "its defaults"
        lines.append(f"{i}. **{step['pass']}** with {changed}; {len(step.get('sites', []))} site(s) changed "
                     f"({step.get('contract', '?')}). Paper: {_paper(step['pass'])}")
    if tune:
        c = tune["config"]
        limit = f", at most {c['limit_train_batches']} batches per epoch" if c.get("limit_train_batches") else ""
        lines += ["", "## Fine-tuning", "",
                  f"{c['epochs']} epoch(s) of batch {c['batch_size']}{limit} on `{tune['data'].rstrip(':')}`: "
                  f"{c['optimizer']}, lr {c['lr']} ({c['schedule']}, warm-up {c['warmup_epochs']} epochs), "
                  f"weight decay {c['weight_decay']}, label smoothing {c['label_smoothing']}, augment "
                  f"{c['augment']}, seed {c['seed']}, AMP {tune['amp']}, {tune['world_size']} process(es); "
                  f"the {tune['weights']} weights are exported.", "",
                  "| test top-1 | |", "| --- | ---: |",
                  f"| after surgery, before fine-tuning | {_pct(first.get(top1))} |",
                  f"| after fine-tuning | {_pct(final.get(top1))} |"]
    parity = (f"ONNX parity: max |diff| {checked.onnx_max_abs_diff:.3g} (tolerance {checked.onnx_tolerance:.3g})"
              if checked.onnx_max_abs_diff is not None else "no ONNX file was exported")
    lines += ["", "## Verification", "", f"- {parity}, checked by `netsurgeon verify` when this folder was written.",
              f"- weights sha256 `{(record.get('tensors') or {}).get('sha256')}` (the tensor digest in "
              "model.safetensors' netsurgeon header; `netsurgeon verify DIR` checks it)."]
    if comparison:
        from netsurgeon.compare.report import format_table, verdict_lines

        summary, job = comparison["summary"], comparison["job"]
        lines += ["", "## Comparison", "",
                  f"This model is the `{job['arm']}` arm, seed {job['seed']}, of a `netsurgeon compare` of "
                  f"{len(summary['arms'])} arms over seeds {summary['complete_seeds']} (alpha {summary['alpha']}):",
                  "", format_table(summary), "", *verdict_lines(summary)]
    lines += ["", "## How to load", "", "```python", "import netsurgeon",
              "model = netsurgeon.load_model(DIR)  # this folder; from the hub: snapshot_download(REPO) first",
              "```", "", "`config.json` names the base architecture as timm does; `timm.create_model` alone would "
              "build it without the surgery, so load the folder with netsurgeon, which replays the passes from the "
              "header of model.safetensors.", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
