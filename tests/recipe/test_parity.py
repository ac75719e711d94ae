"""One list per fact: a recipe, the CLI and the Python API accept the same export formats, optimizers,
augmentation presets and data kinds (the recipe schema reads them from the modules that define them), and a
recipe's ``formats: [pt2]`` writes a ``.pt2``. The optimizers are timm's (``optimizer_names``): each one through
the API and a recipe, a sample of them through the CLI."""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest
from typer.testing import CliRunner

from netsurgeon.cli import app
from netsurgeon.data import DataSpec, data_kinds
from netsurgeon.errors import NetsurgeonError
from netsurgeon.export import FORMATS, parse_formats
from netsurgeon.recipe import Recipe
from netsurgeon.recipe.schema import ExportSection
from netsurgeon.train import FinetuneConfig
from netsurgeon.train.optimizers import optimizer_names

TINY = "netsurgeon:tiny_resnet"
#: a model name no loader knows: the CLI's checks of its options pass first, then it stops here
NO_MODEL = "netsurgeon:no_such_model"
NOT_VALUES = ("nope", "pt3", "lion-x", "")  # names no list holds (and an empty one)
runner = CliRunner()


#: the optimizers every entry point is asked about (the CLI takes seconds a case): timm's and netsurgeon's names,
#: another case, and a second-order one the loop refuses
OPTIMIZER_SAMPLE = ("sgd", "adamw", "lamb", "lion", "adan", "nesterov", "momentum", "LION", "adahessian")


def _choices(field: str) -> tuple[str, ...]:
    """The values FinetuneConfig's own type lists for ``field`` (none when it is not a closed list); the
    optimizers: their one list."""
    if field == "optimizer":
        return optimizer_names()
    hint = typing.get_type_hints(FinetuneConfig)[field]
    return tuple(typing.get_args(hint)) if typing.get_origin(hint) is typing.Literal else ()


def _data_specs() -> tuple[str, ...]:
    """Each registered data kind's grammar, with and without its optional part (``fashion-mnist[:DIR]``: both)."""
    specs: list[str] = []
    for kind in data_kinds():
        optional = re.fullmatch(r"(.*)\[(.*)\]", kind.grammar)
        specs += [optional[1], optional[1] + optional[2]] if optional else [kind.grammar]
    return tuple(specs)


def _api(check) -> str | None:  # noqa: ANN001
    try:
        check()
    except (NetsurgeonError, ValueError, TypeError) as err:
        return str(err)
    return None


def _recipe_accepts(values: dict) -> bool:
    try:
        Recipe.from_dict({"model": {"name": TINY}, "surgery": [{"pass": "erase-relu"}], **values})
    except NetsurgeonError:
        return False
    return True


def _cli_accepts(*args: str, tmp_path) -> bool:  # noqa: ANN001
    """The finetune command gets past every check of its options (it stops at the unknown model)."""
    result = runner.invoke(app, ["finetune", NO_MODEL, "--num-classes", "10", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code != 0
    return "unknown netsurgeon model" in result.output


def _cases() -> list[tuple[str, str]]:
    cases = [("format", v) for v in (*FORMATS, *NOT_VALUES)]
    cases += [("optimizer", v) for v in (*OPTIMIZER_SAMPLE, *NOT_VALUES)]
    cases += [("augment", v) for v in (*_choices("augment"), *NOT_VALUES)]
    cases += [("data", v) for v in (*_data_specs(), "torchvision:CIFAR10:ROOT", "mnist", "folder",
                                    "torchvision:CIFAR10", "")]
    return list(dict.fromkeys(cases))


@pytest.mark.parametrize(("what", "value"), _cases(), ids=lambda v: v or "empty")
def test_the_api_a_recipe_and_the_cli_accept_the_same_values(what, value, tmp_path):
    value = value.replace("DIR", str(tmp_path / "d")).replace("ROOT", str(tmp_path / "r"))
    if what == "format":
        api = _api(lambda: parse_formats([value]))  # what export(formats=...) checks
        recipe = _recipe_accepts({"export": {"formats": [value]}})
        cli = _cli_accepts("--data", "digits", "--format", value, tmp_path=tmp_path) if value else None
    elif what == "data":
        api = _api(lambda: DataSpec.parse(value))  # what finetune(data=...) parses
        recipe = _recipe_accepts({"finetune": {"data": value}})
        cli = _cli_accepts("--data", value, tmp_path=tmp_path)
    else:
        api = _api(lambda: FinetuneConfig(**{what: value}))
        recipe = _recipe_accepts({"finetune": {"data": "digits", what: value}})
        cli = _cli_accepts("--data", "digits", "--set", f"{what}={value}", tmp_path=tmp_path)
    accepted = api is None
    said = f"{what}={value!r}: the Python API {'accepts' if accepted else 'refuses'} it,"
    assert recipe == accepted, f"{said} a recipe not"
    if cli is not None:  # (an empty --format means no export to the CLI, a choice of its own)
        assert cli == accepted, f"{said} the CLI not"


def test_every_optimizer_is_accepted_by_the_api_and_a_recipe_and_no_other():
    """Each of timm's optimizers (but second-order ones) is a valid ``optimizer`` for the API and a recipe alike."""
    import timm.optim

    names = _choices("optimizer")
    assert {"sgd", "adamw", "lamb", "lion", "adan"} <= set(names) and "adahessian" not in names
    assert set(names) == {n for n in timm.optim.list_optimizers() if not timm.optim.get_optimizer_info(n).second_order}
    for value in (*names, *NOT_VALUES, "adahessian"):
        accepted = _api(lambda v=value: FinetuneConfig(optimizer=v)) is None
        assert accepted == (value in names), value
        assert _recipe_accepts({"finetune": {"data": "digits", "optimizer": value}}) == accepted, value


def test_every_defined_value_is_a_case():
    """The lists the cases are drawn from are the defining modules' own: each value of them is tested above."""
    cases = set(_cases())
    assert {("format", f) for f in FORMATS} <= cases
    assert {("augment", v) for v in _choices("augment")} <= cases
    assert {v for what, v in cases if what == "optimizer"} - set(NOT_VALUES) - {"LION", "adahessian"} \
        <= set(_choices("optimizer"))
    assert {("data", v) for v in _data_specs()} <= cases and len(_data_specs()) >= len(data_kinds())
    assert typing.get_args(typing.get_args(typing.get_type_hints(ExportSection)["formats"])[0]) == FORMATS


def test_a_recipe_with_formats_pt2_exports_a_pt2(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{name: {TINY}}}\nsurgery:\n  - pass: erase-relu\nexport: {{formats: [pt2]}}\n")
    result = runner.invoke(app, ["run", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert "model.pt2" in files and "model.onnx" not in files and "model.safetensors" not in files, files
    assert dataclasses.is_dataclass(Recipe.from_yaml(tmp_path / "out" / "recipe.yaml").export)
