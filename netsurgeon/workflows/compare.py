"""``netsurgeon compare`` as a library call: the experiment from options and, with ``recipe``, from a
recipe's model, finetune, export and compare sections (an option given wins), then run."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netsurgeon.compare import CompareResult, CompareSpec, SlurmOptions, run_spec
from netsurgeon.errors import ConfigError
from netsurgeon.export import parse_formats
from netsurgeon.recipe import Recipe
from netsurgeon.train import FinetuneConfig
from netsurgeon.workflows.options import SetValues, parse_input_size, set_values

__all__ = ["DEFAULT_FORMATS", "DEFAULT_SEEDS", "CompareSettings", "compare_from_settings", "parse_seeds"]

#: the defaults of ``seeds`` and ``formats``: left at them, a recipe's values are used
DEFAULT_SEEDS, DEFAULT_FORMATS = "3", "safetensors"


@dataclass(frozen=True)
class CompareSettings:
    """What ``netsurgeon compare`` is given (its options, by the same names)."""

    model: str | None = None
    data: str | None = None
    arms: Sequence[str] = ()  # passes in order, with :key=value parameters; the control is always included
    seeds: str | int | Sequence[int] = DEFAULT_SEEDS  # K (seeds 0..K-1), a list ("0,1,2"), or "auto" (max_seeds)
    out: str | Path | None = None
    epochs: int | None = None
    config: SetValues = ()  # every job's FinetuneConfig fields: --set key=value items, or a dict
    recipe: str | Path | None = None
    checkpoint: str | Path | None = None
    num_classes: int | None = None
    input_size: str | Sequence[int] | None = None
    pretrained: bool = False
    formats: str | Sequence[str] = DEFAULT_FORMATS  # each job's export ('none': none)
    executor: str = "local"  # a registered executor: local, parallel, slurm
    jobs: int = 1  # local: jobs at once (more than 1: the parallel executor)
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    sbatch: SetValues = ()  # more #SBATCH parameters: key=value items (--sbatch), or a dict; join slurm.sbatch
    executor_options: SetValues = ()  # the executor's options: --executor-opt key=value items, or a dict
    dry_run: bool = False  # plan every arm on the base model and print the plans; train and write nothing
    max_seeds: int | None = None  # with seeds="auto": the most seeds to run
    margin: float | None = None  # equivalence margin, points of top-1


def compare_from_settings(settings: CompareSettings) -> CompareResult:
    """Resolve the experiment (options over the recipe's sections), check it, and run it."""
    s = settings
    values: dict[str, Any] = set_values(s.config)
    if s.epochs is not None:
        values["epochs"] = s.epochs
    no_export = isinstance(s.formats, str) and s.formats.strip().lower() == "none"
    fmt_list = [] if no_export or (not isinstance(s.formats, str) and not s.formats) else parse_formats(s.formats)
    seed_list = parse_seeds(s.seeds)
    model, data, out, arms, alpha = s.model, s.data, s.out, list(s.arms), 0.05
    max_seeds, margin = s.max_seeds, s.margin
    checkpoint, num_classes, pretrained, input_size = s.checkpoint, s.num_classes, s.pretrained, s.input_size
    if s.recipe is not None:
        r = Recipe.from_yaml(s.recipe)
        if r.compare is None or r.finetune is None:
            raise ConfigError(f"{s.recipe} needs a compare section (arms, seeds) and a finetune section (data).")
        if r.surgery:
            raise ConfigError(f"{s.recipe}: a compare recipe lists its passes as compare.arms; leave surgery empty.")
        model = model or r.model.name
        data = data or r.data
        checkpoint = checkpoint or (Path(r.model.checkpoint) if r.model.checkpoint else None)
        num_classes = num_classes if num_classes is not None else r.model.num_classes
        pretrained = pretrained or r.model.pretrained
        if input_size is None and r.model.input_size:
            input_size = ",".join(map(str, r.model.input_size))
        values = {**r.finetune.to_dict(), "seed": r.seed, **values}
        arms = list(r.compare.arms) + arms
        if s.seeds == DEFAULT_SEEDS:
            seed_list = r.compare.seeds
            max_seeds = max_seeds if max_seeds is not None else r.compare.max_seeds
        margin = margin if margin is not None else r.compare.margin
        alpha = r.compare.alpha
        out = out or Path(r.export.dir)
        if s.formats == DEFAULT_FORMATS:
            fmt_list = list(r.export.formats)
    if model is None or data is None or (out is None and not s.dry_run):
        raise ConfigError("give --model, --data and --out (or a --recipe that has them).")
    if not arms:
        raise ConfigError("give at least one --arm (the control, 'fine-tune only', is always included).")
    spec = CompareSpec.build(model, data, arms, seed_list, FinetuneConfig.from_dict(values),
                             checkpoint=checkpoint, pretrained=pretrained, num_classes=num_classes,
                             input_size=parse_input_size(input_size), formats=fmt_list, alpha=alpha, margin=margin,
                             max_seeds=max_seeds)
    slurm = dataclasses.replace(s.slurm, sbatch={**s.slurm.sbatch, **set_values(s.sbatch)})
    return run_spec(spec, out if out is not None else ".", executor=s.executor, jobs=s.jobs, slurm=slurm,
                    executor_options=set_values(s.executor_options), progress=spec.finetune.progress,
                    dry_run=s.dry_run)


def parse_seeds(seeds: str | int | Sequence[int]) -> int | list[int] | str:
    """``--seeds``: K (an int, seeds 0..K-1), a comma-separated list, or ``auto`` (adaptive, with max_seeds)."""
    if not isinstance(seeds, str):
        return seeds if isinstance(seeds, int) else list(seeds)
    if seeds.strip().lower() == "auto":
        return "auto"
    try:
        if "," in seeds:
            return [int(v) for v in seeds.split(",") if v.strip()]
        return int(seeds)
    except ValueError:
        raise ConfigError(f"--seeds takes K, a list like 0,1,2, or auto, got {seeds!r}.") from None
