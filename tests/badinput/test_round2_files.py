"""Issue 23 (users' files, outputs, CLI and recipe inputs, messages): the findings that are not plain
refusals (those are in ``corpus_files.py``). Each test failed on the code before the fix."""

from __future__ import annotations

import hashlib
import threading
import warnings
from pathlib import Path

import pytest

import netsurgeon as ns
from tests.badinput.corpus_files import _dead_pid
from tests.badinput.helpers import assert_refused, cli, read_record

TINY = "netsurgeon:tiny_resnet"
FAST = ("--input-size", "3,8,8", "--set", "limit_train_batches=2", "--set", "batch_size=16",
        "--set", "limit_eval_batches=1", "--set", "progress=false", "--format", "safetensors")


def _digests(root: Path, names: list[str]) -> dict[str, str]:
    return {n: hashlib.sha256((root / n).read_bytes()).hexdigest() for n in names}


def _user_files(d: Path, names: list[str]) -> list[str]:
    d.mkdir(parents=True, exist_ok=True)
    for name in names:
        (d / name).write_text(f"the user's own {name}\n")
    return names


HIDDEN = [".notes.20241201.tmp", ".backup.abcdefgh.tmp", ".model.onnx.k3j4h5g6.tmp", ".metrics.csv.12345678.tmp"]


def test_every_command_that_writes_into_out_leaves_the_users_files_alone(tmp_path):
    """User files in --out (hidden temporaries, metrics files, a recipe): every writing command, refused or
    successful, leaves each one byte for byte as it was."""
    hidden = HIDDEN + [f".model.safetensors.{_dead_pid()}-0a1b2c3d.tmp"]
    # apply/run/finetune into a folder holding a user's metrics, plot and recipe (refused where they would be written)
    d = tmp_path / "d"
    mine = _user_files(d, [*hidden, "notes.txt", "metrics.csv", "metrics.jsonl", "curves.png"])
    (d / "recipe.yaml").write_text(f"model: {{name: '{TINY}'}}\nsurgery: [{{pass: erase-relu}}]\n"
                                   f"export: {{dir: '{d}', formats: [safetensors]}}\n")
    mine.append("recipe.yaml")
    before = _digests(d, mine)
    tune = ("finetune", TINY, "--data", "digits", "--out", d, "--epochs", "1", *FAST)
    commands = [
        (0, ("apply", "erase-relu", "-m", TINY, "--out", d, "--input-size", "3,16,16")),
        (1, ("apply", "erase-relu", "-m", TINY, "--out", d)),  # outputs exist
        (0, ("apply", "pd-relu", "-m", TINY, "--out", d, "--overwrite", "--format", "safetensors")),
        (1, ("apply", "erase-relu", "-m", TINY, "--out", d, "--checkpoint", tmp_path / "none.pth")),
        (1, tune),  # metrics.csv etc. are the user's
        (1, (*tune, "--resume")),  # nothing to resume
        (1, ("run", d / "recipe.yaml")),  # the recipe is its own input
        (1, ("run", d / "recipe.yaml", "--set", "export.overwrite=true")),
    ]
    for code, args in commands:
        result = cli(*args)
        assert result.exit_code == code, (args, result.output)
        assert _digests(d, mine) == before, args
    # a successful fine-tune (and its resume) and a successful recipe run beside hidden temporaries and a recipe
    tune = ("finetune", TINY, "--data", "digits", "--out", tmp_path / "t", "--epochs", "1", *FAST)
    for sub, runs in (("t", [tune, (*tune, "--resume")]),
                      ("r", [("run", tmp_path / "recipe.yaml"), ("run", tmp_path / "recipe.yaml")])):
        out = tmp_path / sub
        mine = _user_files(out, [*hidden, "notes.txt", "my-recipe.yaml"])
        (tmp_path / "recipe.yaml").write_text(f"model: {{name: '{TINY}'}}\nsurgery: [{{pass: erase-relu}}]\n"
                                              f"export: {{dir: '{out}', formats: [safetensors]}}\n")
        before = _digests(out, mine)
        for i, args in enumerate(runs):
            result = cli(*args)
            assert result.exit_code == (1 if sub == "r" and i == 1 else 0), (args, result.output)
            assert _digests(out, mine) == before, args


def test_1_a_run_that_goes_ahead_removes_only_its_own_dead_temporaries(tmp_path):
    out = tmp_path / "o"
    _user_files(out, HIDDEN)
    ours = out / f".model.safetensors.netsurgeon-{_dead_pid()}-0a1b2c3d.tmp"
    ours.write_bytes(b"x" * 100)
    alive = out / ".model.safetensors.netsurgeon-1-0a1b2c3d.tmp"  # pid 1 is alive
    alive.write_bytes(b"x")
    other_final = out / f".notes.txt.netsurgeon-{_dead_pid()}-0a1b2c3d.tmp"  # not a file this run writes
    other_final.write_bytes(b"x")
    result = cli("apply", "erase-relu", "-m", TINY, "--out", out, "--format", "safetensors")
    assert result.exit_code == 0, result.output
    assert not ours.exists() and alive.exists() and other_final.exists()
    assert all((out / n).exists() for n in HIDDEN)


def test_4_overwrite_with_another_format_set_leaves_one_consistent_artifact(tmp_path):
    out = tmp_path / "o"
    assert cli("apply", "erase-relu", "-m", TINY, "--out", out).exit_code == 0
    result = cli("apply", "pd-relu", "-m", TINY, "--out", out, "--overwrite", "--format", "safetensors")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]  # the erase-relu model.onnx is gone
    assert [s["pass"] for s in read_record(out / "model.safetensors")["passes"]] == ["pd-relu"]
    verified = cli("verify", out)
    assert verified.exit_code == 0, verified.output


def test_11_an_empty_surgery_in_a_later_recipe_keeps_the_earlier_steps(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text(f"model: {{name: '{TINY}'}}\nsurgery: [{{pass: erase-relu}}, {{pass: pd-relu}}]\n")
    b = tmp_path / "b.yaml"
    b.write_text("surgery:\nseed: 3\n")
    from netsurgeon.recipe import Recipe

    recipe = Recipe.from_yaml(a, b)
    assert [c.pass_name for c in recipe.surgery] == ["erase-relu", "pd-relu"] and recipe.seed == 3


def test_13_tilde_is_expanded_in_out_export_dir_and_checkpoint(tmp_path, monkeypatch):
    import torch

    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert cli("apply", "erase-relu", "-m", TINY, "--out", "~/a", "--format", "safetensors").exit_code == 0
    assert (home / "a" / "model.safetensors").exists()
    from netsurgeon.testing import TinyResNet

    torch.save(TinyResNet().state_dict(), home / "ck.pth")
    (work / "r.yaml").write_text(f"model: {{name: '{TINY}', checkpoint: ~/ck.pth}}\nsurgery: [{{pass: erase-relu}}]\n"
                                 "export: {dir: ~/r, formats: [safetensors]}\n")
    result = cli("run", work / "r.yaml")
    assert result.exit_code == 0, result.output
    assert (home / "r" / "model.safetensors").exists()
    assert read_record(home / "r" / "model.safetensors")["weights"]["source"] == "checkpoint"
    result = cli("finetune", TINY, "--data", "digits", "--out", "~/t", "--epochs", "1", *FAST)
    assert result.exit_code == 0, result.output
    assert (home / "t" / "checkpoint.pt").exists()
    assert not (work / "~").exists()


def test_16_recipes_and_set_values_read_yaml_1_2_integers(tmp_path):
    from netsurgeon.recipe import Recipe

    recipe = Recipe.from_text(f"model: {{name: '{TINY}'}}\nfinetune: {{data: digits, epochs: 010, batch_size: 0x10}}\n")
    assert recipe.finetune.epochs == 10 and recipe.finetune.batch_size == 16  # 1.1 read 010 as 8
    assert Recipe.from_text(recipe.to_yaml()) == recipe
    from netsurgeon.train.config import FinetuneConfig

    assert FinetuneConfig.from_dict({"epochs": "010"}).epochs == 10
    spec = Recipe.from_text(f"model: {{name: '{TINY}'}}\nsurgery: [{{pass: erase-relu}}]\n"
                            "export: {dir: '1:04'}\n")  # a string under YAML 1.2, and it stays one
    assert spec.export.dir == "1:04" and Recipe.from_text(spec.to_yaml()).export.dir == "1:04"


def test_24_apply_from_several_threads_at_once(tmp_path):
    import torch

    errors: list[str] = []
    results: list[str] = []

    def work() -> None:
        try:
            torch.manual_seed(0)
            model = ns.load_model(TINY)
            for name in ("erase-relu", "pd-relu", "spinal-head"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    results.append(type(ns.apply(model, name).model).__name__)
            results.append(ns.plan(model, "proportional-relu").passes[0].name)
        except Exception as err:  # noqa: BLE001 (the test reports every failure)
            errors.append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 6 * 4


def test_27_format_lists_are_normalised_up_front(tmp_path):
    from netsurgeon.export import parse_formats

    assert parse_formats("safetensors,safetensors") == ["safetensors"]
    assert parse_formats("onnx, ONNX,safetensors") == ["onnx", "safetensors"]
    result = cli("apply", "erase-relu", "-m", TINY, "--out", tmp_path / "o", "--format", "safetensors,safetensors")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("wrote ") == 1
    again = cli("apply", "erase-relu", "-m", TINY, "--out", tmp_path / "o", "--format", "onnx,ONNX", "--overwrite")
    assert again.exit_code == 0, again.output
    assert again.stdout.count("wrote ") == 1 and sorted(p.name for p in (tmp_path / "o").iterdir()) == ["model.onnx"]


def test_28_yaml_merge_keys_with_later_keys_overriding(tmp_path):
    from netsurgeon.recipe import Recipe

    recipe = Recipe.from_text(
        f"model: {{name: '{TINY}'}}\n"
        "surgery:\n  - &common {pass: proportional-relu, N: 3, M: 2}\n"
        "  - <<: *common\n    pass: proportional-relu\n    N: 4\n    allow_reapply: true\n")
    assert [(c.N, c.M) for c in recipe.surgery] == [(3, 2), (4, 2)]


def test_29_a_recipe_step_may_reapply_a_pass_when_it_says_so(tmp_path):
    from netsurgeon.recipe import Recipe

    recipe = Recipe.from_text(f"model: {{name: '{TINY}'}}\nsurgery: [{{pass: erase-relu, proportion: 0.5}}, "
                              "{pass: erase-relu, allow_reapply: true}]\n")
    assert recipe.reapply == frozenset({1}) and Recipe.from_text(recipe.to_yaml()) == recipe
    report = recipe.plan()
    assert [p.name for p in report.passes] == ["erase-relu", "erase-relu"]


def test_29_out_inside_the_data_folder_is_named(tmp_path):
    data = tmp_path / "data"
    for split in ("train", "val"):
        (data / split / "a").mkdir(parents=True)
    line = assert_refused(cli("apply", "gru-fc", "-m", TINY, "--data", f"folder:{data}", "--out", data / "o"))
    assert "inside the data folder" in line
    assert sorted(p.name for p in data.iterdir()) == ["train", "val"]


@pytest.mark.parametrize("flag", ["--num-classes"])
def test_12_num_classes_is_honoured_for_names_and_refused_for_artifacts(tmp_path, flag):
    out = tmp_path / "o"
    assert cli("apply", "erase-relu", "-m", TINY, flag, "7", "--out", out, "--format", "safetensors").exit_code == 0
    assert read_record(out / "model.safetensors")["model"]["kwargs"]["num_classes"] == 7
    assert "does not apply to an artifact" in assert_refused(cli("inspect", "-m", out, flag, "7"))
