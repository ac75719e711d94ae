"""``netsurgeon run`` as a library call: compose and validate recipe files, then plan (a dry run) or run
them. The output directory is checked against the data and the run's inputs, then claimed (rank 0),
before any work."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from netsurgeon.atomic import claim_output_dir
from netsurgeon.data import DataSpec
from netsurgeon.errors import ConfigError
from netsurgeon.progress import status
from netsurgeon.recipe import Recipe, RecipeResult
from netsurgeon.recipe.run import check_outputs, output_dir
from netsurgeon.report import SurgeryReport
from netsurgeon.train.distributed import is_main_process
from netsurgeon.workflows.options import SetValues, check_out_outside_data, out_path, set_values

__all__ = ["RunOutcome", "RunSettings", "run_from_settings"]


@dataclass(frozen=True)
class RunSettings:
    """What ``netsurgeon run`` is given: recipe files (each composed after the first), overrides, where."""

    recipes: Sequence[str | Path]  # RECIPE, then each --recipe
    overrides: SetValues = ()  # dotted.key=value items (--set), or a dict
    dry_run: bool = False  # validate and plan; train and write nothing
    out: str | Path | None = None  # default: the recipe's export.dir


@dataclass
class RunOutcome:
    """The resolved recipe, where its outputs go, and the plan (a dry run) or the run's result."""

    recipe: Recipe
    target: Path
    plan: SurgeryReport | None = None
    result: RecipeResult | None = None


def run_from_settings(settings: RunSettings) -> RunOutcome:
    """Resolve the recipe, check where it writes, then plan it (``dry_run``) or run it."""
    paths = list(settings.recipes)
    if not paths:
        raise ConfigError("give a recipe file, for example: netsurgeon run recipes/digits-offline.yaml")
    resolved = Recipe.from_yaml(*paths, overrides=set_values(settings.overrides))
    target = output_dir(resolved, out_path(settings.out))
    if resolved.data is not None:
        check_out_outside_data(target, DataSpec.parse(resolved.data))
    if settings.dry_run:
        status(f"validated {resolved.source} (sha256 {resolved.sha256[:12]}); planning")
        return RunOutcome(resolved, target, plan=resolved.plan())
    check_outputs(resolved, target)  # before claiming (and creating) the directory
    with claim_output_dir(target) if is_main_process() else contextlib.nullcontext():
        result = resolved.run(out_dir=target)
    return RunOutcome(resolved, target, result=result)
