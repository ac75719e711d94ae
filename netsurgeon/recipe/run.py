"""Running a validated recipe: load, surgery, fine-tune, export, and the recipe written beside the outputs.

The resolved recipe (every default filled in, ``--set`` overrides applied) is written as
``recipe.yaml`` with its digest in ``recipe.sha256`` next to the model, and both go into the
artifact's provenance (``record["recipe"]``), so a model can be traced back to the recipe that made it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from netsurgeon.api import apply, plan
from netsurgeon.atomic import check_not_inputs, expand_out, staged_files
from netsurgeon.data import surgery_loader
from netsurgeon.errors import ExportError
from netsurgeon.export import artifact_files, export
from netsurgeon.loading import load_model
from netsurgeon.models.load import is_artifact_path
from netsurgeon.progress import status
from netsurgeon.recipe.schema import RecipeSpec
from netsurgeon.report import SurgeryReport
from netsurgeon.train import FinetuneConfig, export_finetuned, run_output_files, run_training
from netsurgeon.train.distributed import is_main_process
from netsurgeon.train.outputs import check_out_dir, one_finetune_run

#: what an interrupted recipe fine-tune says to do next (a recipe run has no --resume)
RECIPE_RESUME_HINT = ("a recipe run cannot continue it (netsurgeon run has no --resume): run the recipe again with "
                      "--set export.overwrite=true to start over")

__all__ = ["RecipeResult", "check_outputs", "output_dir", "plan_recipe", "run_recipe"]


@dataclass
class RecipeResult:
    model: nn.Module
    report: SurgeryReport | None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    sha256: str = ""


def _expand(path: str | None) -> str | None:
    return os.path.expanduser(path) if path else path


def _load(recipe: RecipeSpec) -> nn.Module:
    m = recipe.model
    return load_model(_expand(m.name), checkpoint=_expand(m.checkpoint), num_classes=m.num_classes,
                      pretrained=m.pretrained, input_size=m.input_size)


def output_dir(recipe: RecipeSpec, out_dir: str | Path | None = None) -> Path:
    """Where the recipe's outputs go: ``out_dir`` or ``export.dir`` (``~`` expanded, never empty)."""
    return expand_out(out_dir, "--out") if out_dir is not None else expand_out(recipe.export.dir, "export.dir")


def check_outputs(recipe: RecipeSpec, out: Path) -> None:
    """Before any work: no output is one of the run's inputs (its recipe files, checkpoint or artifact),
    whatever export.overwrite says; without it, none exists yet."""
    recipe_files = [out / "recipe.yaml", out / "recipe.sha256"]
    outputs = recipe_files + (run_output_files(out, recipe.finetune) if recipe.finetune is not None else
                              list(artifact_files(out).values()))
    inputs: list[str | Path] = list(recipe.paths)
    if recipe.model.checkpoint:
        inputs.append(_expand(recipe.model.checkpoint))
    name = _expand(recipe.model.name)
    if is_artifact_path(name):
        inputs.append(Path(name) / "model.safetensors" if Path(name).is_dir() else name)
    check_not_inputs(outputs, inputs, overwrite=True)
    present = [p.name for p in outputs if p.exists() or p.is_symlink()]
    if not recipe.export.overwrite and present:
        what = "a recipe run" if any(p.exists() for p in recipe_files) else "files this run would write"
        raise ExportError(f"{out} already holds {what} ({', '.join(present)}); set export.overwrite: true "
                          "(--set export.overwrite=true) or choose another --out.")


def _surgery_data(recipe: RecipeSpec, model: nn.Module) -> DataLoader | None:
    """Training batches for data-driven passes, only when a pass can use them."""
    if recipe.data is None or not any(c.uses_data() for c in recipe.surgery):
        return None
    return surgery_loader(recipe.data, model, batch_size=recipe.finetune.batch_size if recipe.finetune else 64,
                          seed=recipe.seed)


def plan_recipe(recipe: RecipeSpec) -> SurgeryReport | None:
    """The report of the recipe's surgery without verification, training or output (``--dry-run``)."""
    torch.manual_seed(recipe.seed)
    model = _load(recipe)
    if not recipe.surgery:
        return None
    return plan(model, list(recipe.surgery), data=_surgery_data(recipe, model), allow_reapply=bool(recipe.reapply))


def run_recipe(recipe: RecipeSpec, *, out_dir: str | Path | None = None, progress: bool = True) -> RecipeResult:
    """Run every step of ``recipe``; outputs go to ``out_dir`` or the recipe's ``export.dir``."""
    out = output_dir(recipe, out_dir)
    finals = [out / "recipe.yaml", out / "recipe.sha256"]
    check_outputs(recipe, out)
    text, digest = recipe.to_yaml(), recipe.sha256
    provenance = {"recipe": {"sha256": digest, "yaml": text, "source": recipe.source}}
    torch.manual_seed(recipe.seed)
    model = _load(recipe)
    report = None
    if recipe.surgery:
        status(f"applying {', '.join(c.pass_name for c in recipe.surgery)}", progress)
        result = apply(model, list(recipe.surgery), data=_surgery_data(recipe, model),
                       allow_reapply=bool(recipe.reapply))  # validation refused unmarked repeats
        model, report = result.model, result.report
    metrics: list[dict[str, Any]] = []
    if recipe.finetune is not None:
        cfg = recipe.finetune if progress else _quiet(recipe)
        check_out_dir(out, model, cfg, resume=False, overwrite=recipe.export.overwrite)
        with one_finetune_run(out, resume=False, more=[p.name for p in finals]):  # one run: all, or as it was
            tuned = run_training(model, recipe.data, cfg, out_dir=out, overwrite=recipe.export.overwrite,
                                 resume_hint=RECIPE_RESUME_HINT)
            export_finetuned(tuned, out, recipe.export.formats, extra=provenance)
            model, metrics, files = tuned.model, tuned.metrics, tuned.files
            if is_main_process():
                _write_recipe_files(finals, text, digest)
        if not is_main_process():
            return RecipeResult(model, report, metrics, [], digest)
        return RecipeResult(model, report, metrics, sorted({*files, *(str(p) for p in finals)}), digest)
    if is_main_process():
        status(f"exporting to {out}", progress)
        files = export(model, out, formats=recipe.export.formats, report=report, seed=recipe.seed,
                       overwrite=recipe.export.overwrite, extra=provenance).files
    else:
        files = []
    if not is_main_process():  # under torchrun only rank 0 writes
        return RecipeResult(model, report, metrics, [], digest)
    _write_recipe_files(finals, text, digest)
    return RecipeResult(model, report, metrics, sorted({*files, *(str(p) for p in finals)}), digest)


def _write_recipe_files(finals: list[Path], text: str, digest: str) -> None:
    with staged_files(finals) as (yaml_tmp, sha_tmp):
        yaml_tmp.write_text(text)  # exactly the hashed text: `sha256sum -c recipe.sha256` checks it
        sha_tmp.write_text(f"{digest}  recipe.yaml\n")


def _quiet(recipe: RecipeSpec) -> FinetuneConfig:
    return dataclasses.replace(recipe.finetune, progress=False)
