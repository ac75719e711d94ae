"""Sweeps: an arm naming several values of one parameter expands into one arm per value, the same from the
command line and from a recipe, and the report orders the arms by the value and plots the difference against it."""

from __future__ import annotations

import json

import pytest
from PIL import Image

import netsurgeon.workflows.compare as workflow
from netsurgeon.compare import CompareResult, compare, expand_arm
from netsurgeon.compare.spec import CompareSpec, Sweep
from netsurgeon.errors import ConfigError
from tests.badinput.helpers import assert_refused, cli


def test_a_sweep_arm_expands_into_one_arm_per_value_ordered_by_the_value():
    arms = expand_arm("erase-relu:proportion=1.0|0.25|0.5")
    assert [a.name for a in arms] == ["erase-relu:proportion=0.25", "erase-relu:proportion=0.5",
                                      "erase-relu:proportion=1.0"]
    assert [a.passes[0].proportion for a in arms] == [0.25, 0.5, 1.0]
    assert [a.sweep for a in arms] == [Sweep("erase-relu.proportion", v) for v in (0.25, 0.5, 1.0)]
    assert [a.slug for a in arms] == ["erase-relu_proportion=0.25", "erase-relu_proportion=0.5",
                                      "erase-relu_proportion=1.0"]
    assert expand_arm("erase-relu")[0].sweep is None  # a plain arm is one arm


def test_a_sweep_keeps_the_other_passes_and_parameters_of_its_arm():
    arms = expand_arm("erase-relu:select=first:proportion=0.5|1.0,pd-relu:alpha=0.2")
    assert [a.name for a in arms] == ["erase-relu:select=first:proportion=0.5,pd-relu:alpha=0.2",
                                      "erase-relu:select=first:proportion=1.0,pd-relu:alpha=0.2"]
    assert all(a.passes[0].select == "first" and a.passes[1].alpha == 0.2 for a in arms)
    assert [a.sweep.value for a in expand_arm("pd-relu:alpha=0.3|0.1")] == [0.1, 0.3]


@pytest.mark.parametrize("arm", ["erase-relu:proportion=0.5|1.0,pd-relu:alpha=0.1|0.2",  # two swept parameters
                                 "erase-relu:proportion=0.5|0.5",
                                 "erase-relu:proportion=0.5|", "erase-relu|pd-relu"])
def test_a_malformed_sweep_is_one_line_error(arm):
    with pytest.raises(ConfigError) as err:
        CompareSpec.build("netsurgeon:tiny_resnet", "digits", [arm], 1)
    assert "\n" not in str(err.value)


def test_a_sweep_round_trips_through_the_stored_experiment():
    spec = CompareSpec.build("netsurgeon:tiny_resnet", "digits", ["erase-relu:proportion=0.5|1.0"], 1,
                             num_classes=10)
    again = CompareSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and [a.sweep.value for a in again.arms[1:]] == [0.5, 1.0]
    plain = CompareSpec.build("netsurgeon:tiny_resnet", "digits", ["erase-relu"], 1, num_classes=10)
    assert "sweep" not in plain.to_dict()["arms"][1]  # a comparison without sweeps keeps its stored form


def test_a_recipe_sweep_is_the_command_line_sweep(tmp_path, monkeypatch):
    specs = []
    monkeypatch.setattr(workflow, "run_spec", lambda spec, out, **kw: specs.append(spec) or CompareResult({}, "", []))
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text(f"""
model: {{name: "netsurgeon:tiny_resnet", input_size: [3, 8, 8]}}
finetune: {{data: digits, epochs: 1, batch_size: 32, limit_train_batches: 2}}
export: {{dir: {tmp_path / "r"}, formats: [safetensors]}}
compare: {{arms: ["erase-relu:proportion=0.25|0.5|1.0", pd-relu], seeds: 2}}
""")
    assert cli("compare", "--recipe", recipe).exit_code == 0
    result = cli("compare", "netsurgeon:tiny_resnet", "--data", "digits", "--input-size", "3,8,8", "--epochs", "1",
                 "--set", "batch_size=32", "--set", "limit_train_batches=2", "--seeds", "2", "--out", tmp_path / "r",
                 "--arm", "erase-relu:proportion=0.25|0.5|1.0", "--arm", "pd-relu")
    assert result.exit_code == 0, result.output
    recipe_spec, cli_spec = specs
    assert recipe_spec.to_dict() == cli_spec.to_dict()
    assert [a.name for a in cli_spec.arms] == ["fine-tune only", "erase-relu:proportion=0.25",
                                               "erase-relu:proportion=0.5", "erase-relu:proportion=1.0", "pd-relu"]


def test_the_command_line_refuses_a_malformed_sweep_in_one_line(tmp_path):
    assert_refused(cli("compare", "netsurgeon:tiny_resnet", "--data", "digits", "--out", tmp_path / "o",
                       "--arm", "erase-relu:proportion=0.5|1.0,pd-relu:alpha=0.1|0.2"), "one parameter")


def test_the_report_orders_a_sweep_by_its_value_and_plots_the_difference_against_it(tmp_path):
    tune = {"epochs": 1, "batch_size": 32, "limit_train_batches": 2, "limit_eval_batches": 2, "progress": False,
            "log": "none"}
    out = tmp_path / "out"
    result = compare("netsurgeon:tiny_resnet", "digits", ["erase-relu:proportion=1.0|0.5"], 1, tune, out=out,
                     input_size=(3, 8, 8), progress=False)
    rows = [line.split("|")[1].strip() for line in result.table.splitlines()[2:]]
    assert rows == ["fine-tune only", "erase-relu:proportion=0.5", "erase-relu:proportion=1.0"]
    summary = json.loads((out / "compare.json").read_text())
    assert [a["sweep"] for a in summary["arms"]] == [None, {"parameter": "erase-relu.proportion", "value": 0.5},
                                                     {"parameter": "erase-relu.proportion", "value": 1.0}]
    # a third panel (the difference against the value) beside the two of a comparison without sweeps (1100 px)
    assert Image.open(out / "compare.png").size[0] == 1600
