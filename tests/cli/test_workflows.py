"""The commands are thin calls of library functions that take a settings object (issue 22, item 3): Python
callers get the CLI's checks, in its order, with its messages; the data-driven passes' batches are built once
(``data.surgery_loader``) for ``apply --data`` and a recipe's data."""

import json
import warnings

import pytest
import torch
from typer.testing import CliRunner

import netsurgeon as ns
from netsurgeon.cli import app
from netsurgeon.data import load_dataset, model_data_config, surgery_loader
from netsurgeon.errors import ConfigError, ExportError
from netsurgeon.models.info import model_input_size
from netsurgeon.recipe import Recipe
from netsurgeon.workflows import (
    ApplySettings,
    CompareSettings,
    FinetuneSettings,
    RunSettings,
    apply_from_settings,
    compare_from_settings,
    finetune_from_settings,
    run_from_settings,
)

TINY = "netsurgeon:tiny_resnet"
GRU = {"mode": "grad_contrib"}


@pytest.fixture
def never_loads(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr("netsurgeon.loading.load_model", never)


def _cli_error(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    return result.output.strip().removeprefix("error: ")


@pytest.mark.parametrize(("settings", "args"), [
    (ApplySettings("erase-relu", TINY, batch_size=0), ["apply", "erase-relu", "-m", TINY, "--batch-size", "0"]),
    (ApplySettings("erase-relu", TINY, input_size="3,x"), ["apply", "erase-relu", "-m", TINY, "--input-size", "3,x"]),
    (ApplySettings("erase-relu", TINY, parameters=["proportion"]),
     ["apply", "erase-relu", "-m", TINY, "--set", "proportion"]),
    (FinetuneSettings(TINY, "digits", "o", config={"epoch": "2"}),
     ["finetune", TINY, "--data", "digits", "--out", "o", "--set", "epoch=2"]),
    (FinetuneSettings(TINY, "digits", "", formats="none"), ["finetune", TINY, "--data", "digits", "--out", ""]),
    (RunSettings([]), ["run"]),
    (CompareSettings(TINY, "digits", ["erase-relu"], seeds="a,b", out="o"),
     ["compare", TINY, "--data", "digits", "--arm", "erase-relu", "--seeds", "a,b", "--out", "o"]),
])
def test_python_settings_get_the_cli_checks_before_any_loading(settings, args, never_loads, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    call = {ApplySettings: apply_from_settings, FinetuneSettings: finetune_from_settings,
            RunSettings: run_from_settings, CompareSettings: compare_from_settings}[type(settings)]
    with pytest.raises((ConfigError, ExportError)) as caught:
        call(settings)
    assert str(caught.value) == _cli_error(*args)
    assert list(tmp_path.iterdir()) == []


def test_apply_settings_give_the_cli_report_and_artifact(tmp_path):
    outcome = apply_from_settings(ApplySettings("erase-relu", TINY, out=tmp_path / "py", formats="safetensors"))
    result = CliRunner().invoke(app, ["apply", "erase-relu", "-m", TINY, "--out", str(tmp_path / "cli"),
                                      "--format", "safetensors", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["report"] == outcome.report.to_dict() and outcome.random
    assert [f.rsplit("/", 1)[1] for f in payload["export"]["files"]] == ["model.safetensors"]
    a, b = ns.load_model(tmp_path / "py"), ns.load_model(tmp_path / "cli")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_surgery_batches_are_the_train_split_unaugmented_with_the_models_own_statistics():
    model = ns.load_model("netsurgeon:tiny_convnet")
    config = model_data_config(model)
    size = model_input_size(model)
    expected = load_dataset("digits", "train", size, mean=config.mean, std=config.std)
    x, y = next(iter(surgery_loader("digits", model, batch_size=4, seed=0)))
    assert torch.equal(x, torch.stack([expected[i][0] for i in range(4)]))
    assert y.tolist() == [expected[i][1] for i in range(4)]


def test_a_recipe_and_apply_data_give_a_data_driven_pass_the_same_batches():
    recipe = Recipe.from_dict({"model": {"name": "netsurgeon:tiny_convnet"},
                               "surgery": [{"pass": "gru-fc", **GRU}],
                               "finetune": {"data": "digits", "batch_size": 64}, "seed": 0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        planned = recipe.plan()
        applied = apply_from_settings(ApplySettings("gru-fc", "netsurgeon:tiny_convnet", parameters=GRU,
                                                    data="digits", dry_run=True))
    assert planned.to_dict()["passes"] == applied.report.to_dict()["passes"]


def test_a_recipe_refuses_data_with_more_classes_than_the_model_like_apply_does():
    recipe = Recipe.from_dict({"model": {"name": "netsurgeon:tiny_convnet", "num_classes": 5},
                               "surgery": [{"pass": "gru-fc", **GRU}],
                               "finetune": {"data": "digits"}, "seed": 0})
    message = "the data has 10 classes but the model outputs 5"
    with pytest.raises(ConfigError, match=message):
        recipe.plan()
    with pytest.raises(ConfigError, match=message):
        apply_from_settings(ApplySettings("gru-fc", "netsurgeon:tiny_convnet", num_classes=5, parameters=GRU,
                                          data="digits", dry_run=True))
