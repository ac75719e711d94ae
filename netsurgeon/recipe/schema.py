"""The recipe schema and its validation, which reports every problem of a recipe at once.

A recipe has five top-level keys::

    model:    {name, checkpoint, num_classes, input_size, pretrained}     required: name
    surgery:  [{pass: NAME, PARAM: VALUE, ...}, ...]                     passes, in order (a step repeating
                                                                         a pass needs allow_reapply: true)
    finetune: {data: SPEC, epochs: N, ...every FinetuneConfig field}      optional
    export:   {dir: out, formats: [safetensors, onnx], overwrite: false}   formats: export.FORMATS
    seed:     0                                                          seeds surgery and fine-tuning
    compare:  {arms: [erase-relu, "pd-relu:alpha=0.2"], seeds: 3}         optional: netsurgeon compare --recipe
              (seeds: auto with max_seeds: N; alpha; margin: top-1 points)

Each section is a frozen :class:`~netsurgeon.config.Config` dataclass (pass configs are the passes' own),
so a recipe accepts exactly what the Python API and the CLI accept, with the same defaults; the allowed values
(export formats, optimizers, augmentation presets, data kinds) are read from the modules that define them.
Field types are checked with pydantic, field by field, so that one run reports every unknown key (with the
closest valid one), every wrong type and every bad value, each with its line and column. Pass names
resolve only through the registry: a recipe can never import code.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from netsurgeon.config import Config, PassConfig, field_adapter, plain_values
from netsurgeon.errors import ConfigError, NetsurgeonError, RecipeError, UnknownNameError
from netsurgeon.export import DEFAULT_FORMATS, FORMATS
from netsurgeon.history import parse_history
from netsurgeon.recipe.source import Location, Positions, Problem, apply_overrides, merge, parse_yaml
from netsurgeon.registry import get_pass, registered_contract, suggest
from netsurgeon.train.config import FinetuneConfig

__all__ = ["CompareSection", "ExportSection", "ModelSection", "RecipeSpec", "check_fields"]

TOP_KEYS = ("model", "surgery", "finetune", "export", "seed", "compare")


@dataclass(frozen=True)
class ModelSection(Config):
    """Which model to start from: a timm/torchvision name (or an artifact) and its weights."""

    name: str
    checkpoint: str | None = None
    num_classes: int | None = None
    input_size: tuple[int, int, int] | None = None
    pretrained: bool = False

    def validate(self) -> None:
        if self.checkpoint and self.pretrained:
            self.fail("give checkpoint or pretrained: true, not both.")
        from netsurgeon.validate import MODEL_KWARGS

        _, low, high = MODEL_KWARGS["num_classes"]
        if self.num_classes is not None and not low <= self.num_classes <= high:
            self.fail(f"num_classes must be from {int(low)} to {int(high):,}, got {self.num_classes}.")
        if self.input_size is not None and min(self.input_size) < 1:
            self.fail(f"input_size must be three positive integers (C, H, W), got {list(self.input_size)}.")


@dataclass(frozen=True)
class ExportSection(Config):
    """Where the results go and in which formats."""

    dir: str = "out"
    formats: tuple[Literal[FORMATS], ...] = DEFAULT_FORMATS  # the formats export() takes, from their one list
    overwrite: bool = False

    def validate(self) -> None:
        if not self.dir.strip():
            self.fail("dir is empty; give a directory (. for the one the run starts in).")
        if not self.formats or len(set(self.formats)) != len(self.formats):
            self.fail(f"formats must name {', '.join(FORMATS[:-1])} and/or {FORMATS[-1]} once each, got "
                      f"{list(self.formats)}.")


@dataclass(frozen=True)
class CompareSection(Config):
    """``netsurgeon compare --recipe``: the arms (each passes in order, as ``--arm`` takes them) and the seeds;
    the model, the finetune section (data and settings) and export (dir, formats) are the recipe's."""

    arms: tuple[str, ...] = ()
    seeds: int | tuple[int, ...] | Literal["auto"] = 3  # auto: adaptive seeds, up to max_seeds
    max_seeds: int | None = None
    alpha: float = 0.05
    margin: float | None = None  # equivalence margin, points of top-1

    def validate(self) -> None:
        if not self.arms:
            self.fail("arms must list at least one arm, e.g. arms: [erase-relu, 'pd-relu:alpha=0.2'].")


def check_fields(cls: type[Config], values: Any, path: tuple, positions: Positions,
                 skip: Sequence[str] = ()) -> tuple[Config | None, list[Problem]]:
    """Build ``cls`` from ``values``, collecting every problem (unknown, missing, mistyped, conflicting)."""
    label = cls._label()
    if values is None:
        values = {}
    if not isinstance(values, dict):
        return None, [Problem(path, f"expected a mapping of {label} settings, got {_kind(values)}",
                              positions.value(path))]
    fields_ = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    hints = typing.get_type_hints(cls)
    problems: list[Problem] = []
    for key, value in values.items():
        where = (*path, key)
        if key not in fields_:
            problems.append(Problem(where, f"unknown key.{suggest(str(key), list(fields_))} Valid keys: "
                                    f"{', '.join(fields_)}.", positions.key(where)))
            continue
        try:
            field_adapter(hints[key]).validate_python(value, strict=False)
        except ValidationError as err:
            problems.append(Problem(where, f"{_short(value)} is invalid: {err.errors()[0]['msg']}.",
                                    positions.value(where)))
    for name, f in fields_.items():
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(Problem((*path, name), "missing (required).", positions.value(path)))
    if problems:
        return None, problems
    try:
        return cls(**values), []
    except (ConfigError, ValueError, TypeError, ArithmeticError) as err:
        message = str(err).removeprefix(f"{label}: ")
        first = message.split(" ", 1)[0]
        where = (*path, first) if first in values else path  # "epochs must be ..." points at epochs
        return None, [Problem(where, message, positions.value(where))]


def _lower_formats(export: Any) -> Any:
    """``formats: [ONNX, Safetensors]`` read as the names ``--format`` takes (case does not matter there either)."""
    if isinstance(export, dict):
        formats = export.get("formats")
        if isinstance(formats, (list, tuple)) and all(isinstance(f, str) for f in formats):
            return {**export, "formats": [f.strip().lower() for f in formats]}
    return export


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"a {type(value).__name__} ({_short(value)})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class RecipeSpec:
    """A validated recipe, as data. Build it with :meth:`from_yaml` (or :meth:`from_text` / :meth:`from_dict`);
    :class:`netsurgeon.recipe.Recipe` adds ``plan()`` and ``run()``."""

    model: ModelSection
    surgery: tuple[PassConfig, ...] = ()
    finetune: FinetuneConfig | None = None
    data: str | None = None  # finetune.data: also feeds passes that use data (PassConfig.uses_data)
    export: ExportSection = field(default_factory=ExportSection)
    seed: int = 0
    source: str = field(default="<recipe>", compare=False)
    reapply: frozenset[int] = frozenset()  # surgery steps marked ``allow_reapply: true``
    paths: tuple[str, ...] = field(default=(), compare=False)  # the recipe files read: inputs, never outputs
    compare: CompareSection | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_yaml(cls, *paths: str | Path, overrides: dict[str, str] | None = None) -> RecipeSpec:
        """Load one recipe file, or compose several: later files append surgery steps and win elsewhere."""
        if not paths:
            raise RecipeError("recipe", [Problem((), "no recipe file given")])
        raw: dict[str, Any] = {}
        positions, problems = Positions(), []
        for p in paths:
            path = Path(p)
            text = _read_recipe(path)
            value, pos, found = parse_yaml(text, str(path))
            problems += found
            _require_mapping(value, str(path), "the file")
            steps = raw.get("surgery")
            positions.update(pos.shifted(("surgery",), len(steps) if isinstance(steps, list) else 0))
            raw = merge(raw, value)
        source = " + ".join(str(p) for p in paths)
        built = cls._build(raw, positions, problems, source, overrides)
        return dataclasses.replace(built, paths=tuple(str(p) for p in paths))

    @classmethod
    def from_text(cls, text: str, source: str = "<recipe>", overrides: dict[str, str] | None = None) -> RecipeSpec:
        value, positions, problems = parse_yaml(text, source)
        _require_mapping(value, source, "the text")
        return cls._build(value, positions, problems, source, overrides)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "<dict>") -> RecipeSpec:
        if not isinstance(values, dict):
            raise RecipeError(source, [Problem((), f"a recipe is a mapping, got {_kind(values)}")])
        return cls._build(values, Positions(), [], source, None)

    @classmethod
    def _build(cls, raw: dict[str, Any], positions: Positions, problems: list[Problem], source: str,
               overrides: dict[str, str] | None) -> RecipeSpec:
        raw = copy.deepcopy(raw)
        problems = list(problems) + apply_overrides(raw, overrides or {}, positions)
        for key in raw:
            if key not in TOP_KEYS:
                problems.append(Problem((key,), f"unknown key.{suggest(str(key), list(TOP_KEYS))} Valid keys: "
                                        f"{', '.join(TOP_KEYS)}.", positions.key((key,))))
        model, found = check_fields(ModelSection, raw.get("model"), ("model",), positions)
        problems += found
        if "model" not in raw:
            problems.append(Problem(("model",), "missing (required): the model to start from, e.g. "
                                    "model: {name: torchvision:resnet18}", Location(source, 1, 1)))
        surgery, reapply = _check_surgery(raw.get("surgery", []), positions, problems, raw.get("model"))
        finetune, data = _check_finetune(raw.get("finetune"), "finetune" in raw, positions, problems)
        export, found = check_fields(ExportSection, _lower_formats(raw.get("export")), ("export",), positions)
        problems += found
        seed = raw.get("seed", 0)
        from netsurgeon.config import UINT64_MAX

        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= UINT64_MAX:
            problems.append(Problem(("seed",), f"{_short(seed)} is invalid: an integer from 0 to 2**64 - 1 is "
                                    "expected.", positions.value(("seed",))))
            seed = 0
        if not surgery and finetune is None and not any(p.path[:1] in (("surgery",), ("finetune",))
                                                        for p in problems):
            problems.append(Problem((), "nothing to do: give surgery steps, a finetune section, or both.",
                                    Location(source, 1, 1)))
        if finetune is None:
            for i, step in enumerate(surgery):
                field_name = step.requires_data()
                if field_name:
                    value = getattr(step, field_name)
                    problems.append(Problem(("surgery", i, field_name), f"{field_name}={value} needs data: add a "
                                            "finetune section with its data.",
                                            positions.value(("surgery", i, field_name))))
        compare = None
        if raw.get("compare") is not None:
            compare, found = check_fields(CompareSection, raw["compare"], ("compare",), positions)
            problems += found
        if problems:
            raise RecipeError(source, sorted(problems, key=_order))
        if finetune is not None:
            finetune = dataclasses.replace(finetune, seed=seed)
        return cls(model, tuple(surgery), finetune, data, export, seed, source, frozenset(reapply),
                   compare=compare)

    # ------------------------------------------------------------------ writing
    def to_dict(self) -> dict[str, Any]:
        """Every value, defaults included (the resolved recipe)."""
        out: dict[str, Any] = {"model": self.model.to_dict(),
                               "surgery": [{"pass": c.pass_name, **c.to_dict(),
                                            **({"allow_reapply": True} if i in self.reapply else {})}
                                           for i, c in enumerate(self.surgery)]}
        if self.finetune is not None:
            settings = self.finetune.to_dict()
            settings.pop("seed")
            out["finetune"] = {"data": self.data, **settings}
        out["export"] = self.export.to_dict()
        out["seed"] = self.seed
        if self.compare is not None:
            out["compare"] = self.compare.to_dict()
        return out

    def to_yaml(self) -> str:
        """The resolved recipe as YAML; ``RecipeSpec.from_text(r.to_yaml()) == r``."""
        from netsurgeon.safeyaml import CoreDumper

        return yaml.dump(plain_values(self.to_dict()), Dumper=CoreDumper, sort_keys=False, default_flow_style=None,
                         width=100)

    @property
    def sha256(self) -> str:
        """The digest of the resolved YAML: equal for recipes that do the same thing however written."""
        return hashlib.sha256(self.to_yaml().encode()).hexdigest()


def _read_recipe(path: Path) -> str:
    """The recipe's text: at most MAX_RECIPE_BYTES of UTF-8."""
    from netsurgeon.safeyaml import MAX_RECIPE_BYTES

    try:
        if path.exists() and not path.is_file():  # a FIFO or a device would block the read, or never end
            raise RecipeError(str(path), [Problem((), "cannot read the recipe: not a regular file (a directory, "
                                                      "FIFO or device); give the recipe's .yaml file")])
        if path.is_file() and path.stat().st_size > MAX_RECIPE_BYTES:
            raise RecipeError(str(path), [Problem((), f"the file is {path.stat().st_size:,} bytes; recipes are "
                                                      f"limited to {MAX_RECIPE_BYTES:,}")])
        data = path.read_bytes()
    except OSError as err:
        raise RecipeError(str(path), [Problem((), f"cannot read the recipe: {err.strerror or type(err).__name__}")]
                          ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise RecipeError(str(path), [Problem((), f"not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}); "
                                                  "save the recipe as UTF-8", Location(str(path), line, 1))]) from None


def _require_mapping(value: Any, source: str, holder: str) -> None:
    if not isinstance(value, dict):
        raise RecipeError(source, [Problem((), f"a recipe is a mapping with the keys {', '.join(TOP_KEYS)}; "
                                               f"{holder} holds {_kind(value)}", Location(source, 1, 1))])


def _order(problem: Problem) -> tuple:
    loc = problem.location
    return (loc.source if loc else "", loc.line if loc else 0, loc.column if loc else 0)


def _history(model: Any) -> list[str]:
    """The passes an artifact named as the recipe's model already has (empty for a library model, or when the
    artifact cannot be read: loading it reports that)."""
    name = model.get("name") if isinstance(model, dict) else None
    if not isinstance(name, str):
        return []
    from netsurgeon.models.load import is_artifact_path

    try:
        if not is_artifact_path(name):
            return []
        from netsurgeon.export.artifact import read_provenance

        return [step.pass_name for step in parse_history(read_provenance(Path(name).expanduser())["passes"],
                                                        registered=registered_contract)]
    except (NetsurgeonError, OSError, ValueError, TypeError, AttributeError):
        return []


def _check_surgery(steps: Any, positions: Positions, problems: list[Problem],
                   model: Any = None) -> tuple[list[PassConfig], set[int]]:
    """The steps' configs, and the indices of those marked ``allow_reapply: true``. A step that repeats a pass
    (of an earlier step, or of the artifact's history) needs that mark, as ``apply`` needs ``--allow-reapply``."""
    if steps is None:
        return [], set()
    if not isinstance(steps, list):
        problems.append(Problem(("surgery",), f"expected a list of passes (- pass: erase-relu), got {_kind(steps)}",
                                positions.value(("surgery",))))
        return [], set()
    configs: list[PassConfig] = []
    reapply: set[int] = set()
    earlier = {name: "the model's history (an artifact)" for name in _history(model)}
    for i, step in enumerate(steps):
        where = ("surgery", i)
        if not isinstance(step, dict) or "pass" not in step:
            problems.append(Problem(where, "each step is a mapping with a 'pass' key, e.g. - pass: erase-relu",
                                    positions.value(where)))
            continue
        name = step["pass"]
        try:
            if not isinstance(name, str):
                raise UnknownNameError(f"pass {_short(name)} is not a pass name; run 'netsurgeon passes'.")
            spec = get_pass(name)
        except NetsurgeonError as err:
            problems.append(Problem((*where, "pass"), str(err), positions.value((*where, "pass"))))
            continue
        params = {k: v for k, v in step.items() if k not in ("pass", "allow_reapply")}
        again = step.get("allow_reapply", False)
        if not isinstance(again, bool):
            problems.append(Problem((*where, "allow_reapply"), f"{_short(again)} is invalid: true or false is "
                                    "expected.", positions.value((*where, "allow_reapply"))))
        elif spec.name in earlier and not again:
            problems.append(Problem((*where, "pass"), f"{spec.name} is already applied by {earlier[spec.name]}; "
                                    "applying it again acts on the result of the first application: add "
                                    "allow_reapply: true to this step if you mean it.",
                                    positions.value((*where, "pass"))))
        if again is True:
            reapply.add(len(configs))
        earlier.setdefault(spec.name, f"step {i}")
        config, found = check_fields(spec.config_cls, params, where, positions)
        problems += found
        if config is not None:
            configs.append(config)
        else:
            reapply.discard(len(configs))
    return configs, reapply


def _check_finetune(values: Any, present: bool, positions: Positions,
                    problems: list[Problem]) -> tuple[FinetuneConfig | None, str | None]:
    if not present:
        return None, None
    where = ("finetune",)
    if not isinstance(values, dict):
        problems.append(Problem(where, f"expected a mapping with data and training settings, got {_kind(values)}",
                                positions.value(where)))
        return None, None
    values = dict(values)
    data = values.pop("data", None)
    ok = True
    if "seed" in values:
        values.pop("seed")
        problems.append(Problem((*where, "seed"), "seed belongs at the top level of the recipe (it seeds surgery and "
                                "fine-tuning alike).", positions.key((*where, "seed"))))
        ok = False
    if data is None:
        from netsurgeon.data import data_grammar

        problems.append(Problem((*where, "data"), f"missing (required): {data_grammar()}.", positions.value(where)))
        ok = False
    else:
        from netsurgeon.data import DataSpec

        try:
            DataSpec.parse(data) if isinstance(data, str) else DataSpec.parse("")
        except ConfigError as err:
            problems.append(Problem((*where, "data"), f"{_short(data)}: {err}", positions.value((*where, "data"))))
            ok = False
    config, found = check_fields(FinetuneConfig, values, where, positions, skip=("seed",))
    problems += found
    return (config if ok else None), (data if ok else None)
