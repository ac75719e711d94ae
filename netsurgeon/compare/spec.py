"""What a comparison is: one base model, one data spec, one fine-tune config, arms and seeds.

:class:`CompareSpec` is plain data that round-trips through JSON (``compare-config.json`` in ``--out``),
so a second run can tell whether it is the same experiment (then it resumes) or another one (then it is
refused, naming what differs), and every job (local process, SLURM array task) reads the same file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netsurgeon.config import PassConfig, plain_values
from netsurgeon.errors import ConfigError
from netsurgeon.train.config import FinetuneConfig

__all__ = ["CONFIG_FILE", "CONTROL", "REPORT_ONLY", "SWEEP_SEPARATOR", "Arm", "CompareSpec", "Sweep",
           "describe_differences", "expand_arm", "parse_arm", "with_defaults"]

CONTROL = "fine-tune only"
CONFIG_FILE = "compare-config.json"
#: fine-tune settings that do not change a job's result (they may differ between a run and its resumption)
NOT_RESULTS = ("progress", "workers", "eval_every", "seed")
#: spec settings that change only the report (a rerun with another value rebuilds it)
REPORT_ONLY = ("margin",)
#: separates the values of a swept parameter: ``erase-relu:proportion=0.25|0.5|1.0``
SWEEP_SEPARATOR = "|"


@dataclass(frozen=True)
class Sweep:
    """Where an arm sits in a sweep: the swept parameter (``erase-relu.proportion``) and this arm's value."""

    parameter: str
    value: Any


@dataclass(frozen=True)
class Arm:
    """One treatment: passes applied in order to the base model before the shared fine-tune (none: the control)."""

    name: str
    passes: tuple[PassConfig, ...] = ()
    sweep: Sweep | None = None  # set on the arms a sweep expanded into

    @property
    def slug(self) -> str:
        """A directory name for the arm (``control``, ``erase-relu``, ``pd-relu_alpha=0.2``, ``erase-relu+gru-fc``)."""
        if not self.passes:
            return "control"
        return re.sub(r"[^A-Za-z0-9_.=+-]", "_", self.name.replace(",", "+").replace(":", "_"))

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name,
               "passes": [{"pass": p.pass_name, **plain_values(p.to_dict())} for p in self.passes]}
        if self.sweep is not None:  # only then, so a comparison without sweeps keeps its stored form
            out["sweep"] = {"parameter": self.sweep.parameter, "value": plain_values(self.sweep.value)}
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Arm:
        from netsurgeon.registry import get_pass

        passes = tuple(get_pass(step["pass"]).make_config({k: v for k, v in step.items() if k != "pass"})
                       for step in values["passes"])
        sweep = values.get("sweep")
        return cls(values["name"], passes, Sweep(sweep["parameter"], sweep["value"]) if sweep else None)


def expand_arm(text: str | Sequence[PassConfig] | Arm) -> list[Arm]:
    """One arm, or the arms of a sweep: ``"erase-relu:proportion=0.25|0.5|1.0"`` gives one arm per value of the
    one swept parameter (named ``erase-relu:proportion=0.25`` ...), ordered by the value when the values are
    numbers (as given otherwise). Other passes and parameters of the arm are shared by its values."""
    if not isinstance(text, str) or SWEEP_SEPARATOR not in text:
        return [parse_arm(text)]
    steps = [s.strip() for s in text.replace(" ", "").split(",")]
    swept = [(i, j) for i, step in enumerate(steps) for j, param in enumerate(step.split(":")[1:], start=1)
             if SWEEP_SEPARATOR in param]
    if len(swept) != 1 or SWEEP_SEPARATOR in steps[swept[0][0]].split(":")[0]:
        raise ConfigError(f"--arm {text!r}: a sweep varies one parameter, e.g. 'erase-relu:proportion=0.25|0.5|1.0'.")
    i, j = swept[0]
    parts = steps[i].split(":")
    key, sep, values = parts[j].partition("=")
    choices = values.split(SWEEP_SEPARATOR)
    if not sep or not all(choices) or len(set(choices)) != len(choices) or len(choices) < 2:
        raise ConfigError(f"--arm {text!r}: give two or more distinct values of {key or 'the parameter'} separated "
                          f"by {SWEEP_SEPARATOR!r}, e.g. 'erase-relu:proportion=0.25|0.5|1.0'.")
    arms = []
    for choice in choices:
        step = ":".join([*parts[:j], f"{key}={choice}", *parts[j + 1:]])
        arm = parse_arm(",".join([*steps[:i], step, *steps[i + 1:]]))
        config = arm.passes[i]
        arms.append(dataclasses.replace(arm, sweep=Sweep(f"{config.pass_name}.{key}", getattr(config, key))))
    if all(isinstance(a.sweep.value, (int, float)) and not isinstance(a.sweep.value, bool) for a in arms):
        arms.sort(key=lambda a: a.sweep.value)
    return arms


def parse_arm(text: str | Sequence[PassConfig] | Arm) -> Arm:
    """``"erase-relu"``, ``"pd-relu:alpha=0.2"``, ``"erase-relu,gru-fc"`` (passes in order; ``:key=value``
    parameters, values read like ``--set``), or a list of pass configs, or an :class:`Arm`."""
    from netsurgeon.config import parse_set_options
    from netsurgeon.registry import get_pass

    if isinstance(text, Arm):
        return text
    if not isinstance(text, str):
        passes = tuple(text)
        if not passes or not all(isinstance(p, PassConfig) for p in passes):
            raise ConfigError("an arm is a string like 'erase-relu,pd-relu:alpha=0.2' or a list of pass configs.")
        return Arm(",".join(_describe_pass(p) for p in passes), passes)
    steps = [s.strip() for s in text.split(",")]
    if not text.strip() or not all(steps):
        raise ConfigError(f"--arm {text!r} is empty or has an empty step; give passes like 'erase-relu,gru-fc'.")
    passes = []
    for step in steps:
        name, *params = step.split(":")
        passes.append(get_pass(name.strip()).make_config(parse_set_options(params)))
    return Arm(text.replace(" ", ""), tuple(passes))


def _describe_pass(config: PassConfig) -> str:
    defaults = type(config)()
    changed = [f"{k}={v}" for k, v in config.to_dict().items() if getattr(defaults, k) != getattr(config, k)]
    return ":".join([config.pass_name, *changed])


@dataclass(frozen=True)
class CompareSpec:
    """The experiment: every arm is fine-tuned from ``model`` with ``finetune`` once per seed."""

    model: str
    data: str
    arms: tuple[Arm, ...]  # the control first
    seeds: tuple[int, ...]
    finetune: FinetuneConfig
    checkpoint: str | None = None
    pretrained: bool = False
    num_classes: int | None = None
    input_size: tuple[int, ...] | None = None
    formats: tuple[str, ...] = ("safetensors",)
    alpha: float = 0.05
    weights_sha256: str | None = None  # of the checkpoint or the artifact's weights: a file replaced in place differs
    margin: float | None = None  # equivalence margin, points of top-1 (the report only: may change on a rerun)
    max_seeds: int | None = None  # adaptive seeds (--seeds auto): seeds 0..max_seeds-1 are run in looks

    @property
    def adaptive(self) -> bool:
        return self.max_seeds is not None

    def looks(self) -> tuple[tuple[int, ...], float]:
        """The seed counts the verdicts are computed at and the level of each (adaptive: several looks at
        ``alpha / looks``, :func:`netsurgeon.compare.stats.plan_looks`; fixed: one, at alpha)."""
        from netsurgeon.compare.stats import plan_looks

        if self.max_seeds is None:
            return (len(self.seeds),), self.alpha
        return plan_looks(self.max_seeds, len(self.arms) - 1, self.alpha)

    @classmethod
    def build(cls, model: str, data: str, arms: Sequence[str | Sequence[PassConfig] | Arm],
              seeds: int | Sequence[int] | str, finetune: FinetuneConfig | dict[str, Any] | None = None, *,
              checkpoint: str | Path | None = None, pretrained: bool = False, num_classes: int | None = None,
              input_size: Sequence[int] | None = None, formats: Sequence[str] = ("safetensors",),
              alpha: float = 0.05, margin: float | None = None, max_seeds: int | None = None) -> CompareSpec:
        """Validate and resolve (the control is added first; ``seeds=K`` means 0..K-1; ``seeds="auto"`` runs
        seeds 0..max_seeds-1 in looks until every arm is decided)."""
        if seeds == "auto":
            if max_seeds is None or max_seeds < 2:
                raise ConfigError(f"--seeds auto needs --max-seeds N (at least 2), got {max_seeds}.")
            seeds = max_seeds
        elif max_seeds is not None:
            raise ConfigError("--max-seeds goes with --seeds auto; give one or the other.")
        elif isinstance(seeds, str):
            raise ConfigError(f"seeds must be K, a list of seeds or auto, got {seeds!r}.")
        if margin is not None and not margin > 0:
            raise ConfigError(f"--margin must be a positive number of top-1 points, got {margin}.")
        from netsurgeon.data import DataSpec, count_classes
        from netsurgeon.export import parse_formats
        from netsurgeon.models.load import is_artifact_path

        cfg = finetune if isinstance(finetune, FinetuneConfig) else FinetuneConfig.from_dict(dict(finetune or {}))
        if isinstance(seeds, int):
            if seeds < 1:
                raise ConfigError(f"--seeds must be at least 1, got {seeds}.")
            seeds = tuple(range(seeds))
        seeds = tuple(int(s) for s in seeds)
        if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ConfigError(f"seeds must be distinct non-negative integers, got {list(seeds)}.")
        resolved = [Arm(CONTROL)] + [arm for a in arms for arm in expand_arm(a)]
        if any(not a.passes for a in resolved[1:]):
            raise ConfigError("the control ('fine-tune only') is always included; give only arms with passes.")
        names = [a.slug for a in resolved]
        if len(set(names)) != len(names):
            raise ConfigError(f"two arms are the same ({', '.join(sorted({n for n in names if names.count(n) > 1}))});"
                              " give each arm once.")
        if not 0 < alpha < 1:
            raise ConfigError(f"alpha must be between 0 and 1, got {alpha}.")
        DataSpec.parse(data)
        if checkpoint is not None and pretrained:
            raise ConfigError("give --checkpoint or --pretrained, not both.")
        if not is_artifact_path(model) and num_classes is None and checkpoint is None and not pretrained:
            num_classes = count_classes(data)
        fmts = tuple(parse_formats(",".join(formats))) if formats else ()
        ckpt = str(Path(checkpoint).expanduser().resolve()) if checkpoint is not None else None
        weights = ckpt
        if is_artifact_path(model):
            model = str(Path(model).expanduser().resolve())
            weights = model if model.endswith(".safetensors") else str(Path(model) / "model.safetensors")
        digest = _sha256(Path(weights)) if weights is not None and Path(weights).is_file() else None
        spec = cls(model, data, tuple(resolved), seeds, cfg, ckpt, pretrained, num_classes,
                   tuple(input_size) if input_size is not None else None, fmts, alpha, digest,
                   float(margin) if margin is not None else None, max_seeds)
        if spec.adaptive and not spec.looks()[0]:
            from netsurgeon.compare.stats import seeds_to_reach

            need = seeds_to_reach(alpha / max(1, len(resolved) - 1))
            raise ConfigError(f"--max-seeds {max_seeds} can never reach alpha {alpha:g} with {len(resolved) - 1} "
                              f"arm(s) (the exact sign-flip test needs {need} seeds); give --max-seeds {need} or more.")
        return spec

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        tune = {k: v for k, v in plain_values(self.finetune.to_dict()).items() if k not in NOT_RESULTS}
        return {"model": self.model, "checkpoint": self.checkpoint, "pretrained": self.pretrained,
                "num_classes": self.num_classes, "input_size": list(self.input_size) if self.input_size else None,
                "data": self.data, "finetune": tune, "arms": [a.to_dict() for a in self.arms],
                "seeds": list(self.seeds), "formats": list(self.formats), "alpha": self.alpha,
                "weights_sha256": self.weights_sha256, "margin": self.margin, "max_seeds": self.max_seeds}

    @classmethod
    def from_dict(cls, values: dict[str, Any], finetune_extra: dict[str, Any] | None = None) -> CompareSpec:
        cfg = FinetuneConfig.from_dict({**values["finetune"], **(finetune_extra or {})})
        size = tuple(values["input_size"]) if values.get("input_size") else None
        return cls(values["model"], values["data"], tuple(Arm.from_dict(a) for a in values["arms"]),
                   tuple(values["seeds"]), cfg, values.get("checkpoint"), values.get("pretrained", False),
                   values.get("num_classes"), size, tuple(values.get("formats", ())), values.get("alpha", 0.05),
                   values.get("weights_sha256"), values.get("margin"), values.get("max_seeds"))

    @classmethod
    def read(cls, out: Path) -> CompareSpec:
        stored = json.loads((out / CONFIG_FILE).read_text())
        return cls.from_dict(stored["spec"], stored.get("runtime"))

    def runtime(self) -> dict[str, Any]:
        """Settings that do not change results but that every job should use (progress, workers)."""
        return {k: getattr(self.finetune, k) for k in ("progress", "workers", "eval_every")}

    def tracking_group(self, out: Path) -> str:
        """The comparison's W&B group / MLflow parent tag: the directory's name and a digest of the experiment
        (a resumed comparison logs into the same group)."""
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        return f"{Path(out).resolve().name}-{digest}"

    def job_dir(self, out: Path, arm: Arm, seed: int) -> Path:
        return out / "jobs" / arm.slug / f"seed-{seed}"

    def jobs(self) -> list[tuple[Arm, int]]:
        """Seed-major order: a partial grid already holds every arm of the first seeds."""
        return [(arm, seed) for seed in self.seeds for arm in self.arms]

    def with_runtime(self, **values: Any) -> CompareSpec:
        return dataclasses.replace(self, finetune=dataclasses.replace(self.finetune, **values))


def with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """A fine-tune config as a record stored it, with the fields it lacks at their defaults: a comparison or job
    written before a field was added trained with its default (as ``finetune --resume`` reads old checkpoints)."""
    defaults = plain_values(FinetuneConfig().to_dict())
    return {**{k: v for k, v in defaults.items() if k not in NOT_RESULTS}, **config}


def describe_differences(stored: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every setting that differs (nested keys dotted)."""
    out = []
    for key in sorted(set(stored) | set(current), key=str):
        a, b = stored.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += describe_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            if key == "arms" and isinstance(a, list) and isinstance(b, list):
                a, b = [x["name"] for x in a], [x["name"] for x in b]
                if a == b:
                    a, b = "(same names, other parameters)", "(changed)"
            out.append(f"{prefix}{key}: {_short(a)} -> {_short(b)}")
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."

