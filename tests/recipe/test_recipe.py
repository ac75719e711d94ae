"""Recipes: the shipped files validate, errors come all at once with locations, runs are reproducible."""

import json
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

import netsurgeon as ns
from netsurgeon.cli import app
from netsurgeon.errors import RecipeError
from netsurgeon.recipe import Recipe

ROOT = Path(__file__).parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
OFFLINE = ROOT / "recipes" / "digits-offline.yaml"
#: the offline recipe, shortened for the suite: smaller images, 3 batches, one epoch
QUICK = {"model.input_size": "[3,16,16]", "finetune.epochs": "1", "finetune.limit_train_batches": "3",
         "finetune.limit_eval_batches": "2",
         "finetune.progress": "false"}
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def sets(overrides: dict[str, str]) -> list[str]:
    return [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]


def test_one_recipe_per_paper_plus_the_offline_one():
    passes = {step.pass_name for path in RECIPES for step in Recipe.from_yaml(path).surgery}
    assert passes == {spec.name for spec in ns.list_passes()} and OFFLINE in RECIPES


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_validates_round_trips_and_says_how_to_run_it(path):
    recipe = Recipe.from_yaml(path)
    assert Recipe.from_text(recipe.to_yaml()) == recipe
    header = path.read_text().split("\nmodel:")[0]
    assert header.startswith("# ") and f"netsurgeon run recipes/{path.name}" in header
    assert "Override:" in header and "--set" in header and "Data:" in header


BAD = """\
model:
  name: torchvision:resnet18
  num_clases: 10
surgery:
  - pass: erase-rleu
  - pass: pd-relu
    alpha: lots
finetune:
  data: digits
  epochs: -3
"""


def test_four_problems_reported_at_once_with_lines_and_suggestions(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    result = run("run", path, "--out", tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith(f"error: {path}: 4 problems")
    lines = result.output.splitlines()[1:]
    assert f"{path}:3:3: model.num_clases: unknown key. Did you mean 'num_classes'?" in lines[0]
    assert f"{path}:5:11: surgery.0.pass: unknown pass 'erase-rleu'. Did you mean 'erase-relu'?" in lines[1]
    assert f"{path}:7:12: surgery.1.alpha: 'lots' is invalid" in lines[2]
    assert f"{path}:10:11: finetune.epochs: epochs must be at least 1, got -3." in lines[3]
    assert not (tmp_path / "out").exists()


def test_structure_problems_and_conflicts():
    with pytest.raises(RecipeError) as info:
        Recipe.from_text("model: {name: resnet18, checkpoint: w.pth, pretrained: true}\nseed: -1\nextra: 1\n"
                         "finetune: {epochs: 2, seed: 3}\nsurgery: [erase-relu, {pass: pd-relu, family: callable}]\n"
                         "model: {name: x}\n")
    text = str(info.value)
    for words in ("model: given twice", "seed: -1 is invalid", "extra: unknown key", "finetune.data: missing",
                  "finetune.seed: seed belongs at the top level", "surgery.0: each step is a mapping",
                  "surgery.1: family='callable' needs fn"):
        assert words in text, words
    with pytest.raises(RecipeError, match="nothing to do"):
        Recipe.from_text("model: {name: resnet18}\n")
    with pytest.raises(RecipeError, match="<recipe>:1:10: not valid YAML: expected .,. or .]."):
        Recipe.from_text("[unclosed")
    with pytest.raises(RecipeError, match="mode=grad_contrib needs data"):
        Recipe.from_text("model: {name: resnet18}\nsurgery: [{pass: gru-fc, mode: grad_contrib}]\n")
    with pytest.raises(RecipeError, match=r"--set surgery.5.proportion: no item 5"):
        Recipe.from_yaml(OFFLINE, overrides={"surgery.5.proportion": "0.5"})


def test_composition_appends_surgery_and_later_values_win(tmp_path):
    extra = tmp_path / "more.yaml"
    extra.write_text("surgery:\n  - pass: pd-relu\nfinetune:\n  epochs: 7\nexport:\n  dir: elsewhere\n")
    recipe = Recipe.from_yaml(OFFLINE, extra)
    assert [s.pass_name for s in recipe.surgery] == ["erase-relu", "pd-relu"]
    assert (recipe.finetune.epochs, recipe.finetune.lr, recipe.export.dir) == (7, 0.05, "elsewhere")
    bad = tmp_path / "bad.yaml"
    bad.write_text("surgery:\n  - pass: pd-relu\n    alpah: 0.1\n")
    with pytest.raises(RecipeError, match=rf"{bad}:3:5: surgery.1.alpah: unknown key. Did you mean 'alpha'"):
        Recipe.from_yaml(OFFLINE, bad)  # the step's index counts the first file's steps, the line is bad.yaml's


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    result = run("run", OFFLINE, "--dry-run", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "8 site(s) changed" in result.stdout and "layer4.1.relu@1" in result.stdout
    assert not (tmp_path / "out").exists()


def test_offline_recipe_end_to_end_with_overrides_in_the_resolved_recipe(tmp_path):
    result = run("run", OFFLINE, "--out", tmp_path, *sets(QUICK), "--set", "surgery.0.proportion=0.5", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [r["epoch"] for r in payload["metrics"]] == [0, 1]  # finetune.epochs=1 reached the loop
    assert len(payload["report"]["passes"][0]["changes"]) == 4  # proportion=0.5 of 8 blocks
    written = yaml.safe_load((tmp_path / "recipe.yaml").read_text())
    assert written["finetune"]["epochs"] == 1 and written["surgery"][0]["proportion"] == 0.5
    digest = (tmp_path / "recipe.sha256").read_text().split()[0]
    assert digest == payload["sha256"] == Recipe.from_yaml(tmp_path / "recipe.yaml").sha256
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as fh:
        record = json.loads(fh.metadata()["netsurgeon"])
    assert record["recipe"]["sha256"] == digest and record["finetune"]["config"]["epochs"] == 1
    assert (tmp_path / "model.onnx").exists()
    assert ns.load_model(tmp_path) is not None  # the artifact rebuilds from its header alone


def test_same_seed_twice_gives_byte_identical_tensors(tmp_path):
    quick = {**QUICK, "export.formats": "[safetensors]"}
    for name in ("a", "b"):
        Recipe.from_yaml(OFFLINE, overrides=quick).run(out_dir=tmp_path / name, progress=False)
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("a", "b"))
    assert a.keys() == b.keys()
    assert all(a[k].numpy().tobytes() == b[k].numpy().tobytes() for k in a)
    other = Recipe.from_yaml(OFFLINE, overrides={**quick, "seed": "1"}).run(out_dir=tmp_path / "c", progress=False)
    c = load_file(other.files[[Path(f).name for f in other.files].index("model.safetensors")])
    assert any(a[k].numpy().tobytes() != c[k].numpy().tobytes() for k in a)


def test_a_finished_run_is_not_overwritten(tmp_path):
    quick = {**QUICK, "export.formats": "[safetensors]"}
    Recipe.from_yaml(OFFLINE, overrides=quick).run(out_dir=tmp_path, progress=False)
    result = run("run", OFFLINE, "--out", tmp_path, *sets(quick))
    assert result.exit_code == 1 and "already holds" in result.output
