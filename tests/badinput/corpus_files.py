"""Bad-input corpus, round 2 (issue 23): users' files, outputs, CLI and recipe inputs, messages.

Registered into ``test_corpus.CASES`` (imported from there): each case ends in exit code 1 (or a
NetsurgeonError), one line, and no file under the case's folder created, changed or removed. The number
after each group is the issue-23 item it covers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import netsurgeon as ns
from tests.badinput.test_corpus import TINY, case

FAST = ("--input-size", "3,8,8", "--set", "limit_train_batches=2", "--set", "batch_size=16",
        "--set", "limit_eval_batches=1", "--format", "safetensors", "--epochs", "1")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _user_temporaries(out: Path) -> Path:
    """Hidden ``*.tmp`` files that are the user's (or not provably netsurgeon's): never removed."""
    out.mkdir(parents=True, exist_ok=True)
    for name in (".notes.20241201.tmp", ".backup.abcdefgh.tmp", ".model.onnx.k3j4h5g6.tmp",
                 f".model.safetensors.{_dead_pid()}-0a1b2c3d.tmp"):
        (out / name).write_text("the user's own")
    return out


def _artifact(tmp: Path, golden: Path) -> Path:
    shutil.copytree(golden, tmp / "art")
    return tmp / "art"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------ a refused run removes nothing (1)
@case("not found")
def refused_apply_keeps_hidden_temporaries(tmp, golden, mp):
    out = _user_temporaries(tmp / "o")
    return ["apply", "erase-relu", "-m", TINY, "--checkpoint", tmp / "missing.pth", "--out", out]


@case("already exists")
def refused_apply_existing_outputs_keeps_hidden_temporaries(tmp, golden, mp):
    art = _artifact(tmp, golden)
    _user_temporaries(art)
    return ["apply", "erase-relu", "-m", TINY, "--out", art]


@case("already holds a run")
def refused_finetune_keeps_hidden_temporaries(tmp, golden, mp):
    art = _artifact(tmp, golden)
    _user_temporaries(art)
    return ["finetune", TINY, "--data", "digits", "--out", art, *FAST]


# ------------------------------------------------------------------ every file a fine-tune writes is checked (2)
@case("metrics.csv")
def finetune_out_holds_users_metrics_csv(tmp, golden, mp):
    _write(tmp / "o" / "metrics.csv", "epoch,mine\n")
    return ["finetune", TINY, "--data", "digits", "--out", tmp / "o", *FAST]


@case("metrics.jsonl")
def finetune_out_holds_users_metrics_jsonl(tmp, golden, mp):
    _write(tmp / "o" / "metrics.jsonl", '{"mine": 1}\n')
    return ["finetune", TINY, "--data", "digits", "--out", tmp / "o", *FAST]


@case("curves.png")
def finetune_out_holds_users_curves(tmp, golden, mp):
    _write(tmp / "o" / "curves.png", "not a plot")
    return ["finetune", TINY, "--data", "digits", "--out", tmp / "o", *FAST]


@case("metrics.csv")
def recipe_with_finetune_into_users_metrics(tmp, golden, mp):
    _write(tmp / "o" / "metrics.csv", "epoch,mine\n")
    return ["run", _write(tmp / "r.yaml", f"model: {{name: '{TINY}', input_size: [3, 8, 8]}}\n"
                                          "finetune: {data: digits, epochs: 1, limit_train_batches: 2}\n"
                                          f"export: {{dir: '{tmp / 'o'}', formats: [safetensors]}}\n")]


# ------------------------------------------------------------------ an input is never overwritten (3)
@case("is an input of this run")
def run_recipe_would_overwrite_itself(tmp, golden, mp):
    d = tmp / "d"
    recipe = _write(d / "recipe.yaml", f"model: {{name: '{TINY}'}}\nsurgery: [{{pass: erase-relu}}]\n"
                                       f"export: {{dir: '{d}', formats: [safetensors]}}\n")
    return ["run", recipe, "--set", "export.overwrite=true"]


@case("is an input of this run")
def run_recipe_out_flag_onto_itself(tmp, golden, mp):
    d = tmp / "d"
    recipe = _write(d / "recipe.yaml", f"model: {{name: '{TINY}'}}\nsurgery: [{{pass: erase-relu}}]\n"
                                       "export: {overwrite: true}\n")
    return ["run", recipe, "--out", d]


@case("is an input of this run")
def apply_onto_its_input_artifact_with_overwrite(tmp, golden, mp):
    art = _artifact(tmp, golden)
    return ["apply", "pd-relu", "-m", art, "--out", art, "--overwrite"]


@case("is an input of this run")
def apply_onto_its_input_artifact_onnx_only(tmp, golden, mp):
    art = _artifact(tmp, golden)
    return ["apply", "pd-relu", "-m", art / "model.safetensors", "--out", art, "--overwrite", "--format", "onnx"]


@case("is an input of this run")
def finetune_onto_its_input_artifact_with_overwrite(tmp, golden, mp):
    art = _artifact(tmp, golden)
    return ["finetune", art, "--data", "digits", "--out", art, "--overwrite", *FAST[2:]]


@case("is an input of this run")
def recipe_from_artifact_into_it(tmp, golden, mp):
    art = _artifact(tmp, golden)
    recipe = _write(tmp / "r.yaml", f"model: {{name: '{art}'}}\nsurgery: [{{pass: pd-relu}}]\n"
                                    f"export: {{dir: '{art}', overwrite: true}}\n")
    return ["run", recipe]


# ------------------------------------------------------------------ one consistent artifact set (4)
@case("already exists")
def apply_other_format_beside_an_earlier_export(tmp, golden, mp):
    art = _artifact(tmp, golden)
    (art / "model.safetensors").unlink()  # an earlier erase-relu export's model.onnx is left
    return ["apply", "pd-relu", "-m", TINY, "--out", art, "--format", "safetensors"]


@case("not a netsurgeon export")
def apply_overwrite_beside_a_foreign_model_file(tmp, golden, mp):
    _write(tmp / "o" / "model.onnx", "somebody else's model")
    return ["apply", "pd-relu", "-m", TINY, "--out", tmp / "o", "--format", "safetensors", "--overwrite"]


# ------------------------------------------------------------------ --num-classes with an artifact (12)
@case("does not apply to an artifact")
def inspect_artifact_with_num_classes(tmp, golden, mp):
    return ["inspect", "-m", _artifact(tmp, golden), "--num-classes", "5"]


@case("does not apply to an artifact")
def apply_artifact_with_num_classes(tmp, golden, mp):
    return ["apply", "pd-relu", "-m", _artifact(tmp, golden), "--num-classes", "5", "--dry-run"]


@case("num_classes")
def api_load_artifact_with_num_classes(tmp, golden, mp):
    art = _artifact(tmp, golden)
    return lambda: ns.load_model(art, num_classes=5)


# ------------------------------------------------------------------ empty --out (13)
@case("--out is empty")
def apply_out_empty(tmp, golden, mp):
    mp.chdir(tmp)  # were "" the current directory, the model files would land here
    return ["apply", "erase-relu", "-m", TINY, "--out", ""]


@case("--out is empty")
def finetune_out_empty(tmp, golden, mp):
    mp.chdir(tmp)
    return ["finetune", TINY, "--data", "digits", "--out", "", *FAST]


@case("dir is empty")
def recipe_export_dir_empty(tmp, golden, mp):
    mp.chdir(tmp)
    return ["run", _write(tmp / "r.yaml", f"model: {{name: '{TINY}'}}\nsurgery: [{{pass: erase-relu}}]\n"
                                          "export: {dir: ''}\n")]


# ------------------------------------------------------------------ YAML 1.1 scalars (16)
@case("batch_size")
def recipe_sexagesimal_batch_size(tmp, golden, mp):
    return ["run", _write(tmp / "r.yaml", f"model: {{name: '{TINY}'}}\nfinetune: {{data: digits, batch_size: 1:04}}\n"),
            "--dry-run"]


@case("N=")
def set_sexagesimal_pass_parameter(tmp, golden, mp):
    return ["apply", "proportional-relu", "-m", TINY, "--set", "N=1:04", "--dry-run"]  # YAML 1.1: 64


# ------------------------------------------------------------------ bounds when parsed, dry runs too (22)
@case("--seed")
def apply_seed_beyond_64_bits(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "--seed", "99999999999999999999999", "--dry-run"]


@case("64 bits")
def finetune_seed_beyond_64_bits(tmp, golden, mp):
    return ["finetune", TINY, "--data", "digits", "--out", tmp / "o", "--set", "seed=99999999999999999999999"]


@case("seed")
def recipe_seed_beyond_64_bits(tmp, golden, mp):
    return ["run", _write(tmp / "r.yaml", f"model: {{name: '{TINY}'}}\nsurgery: [{{pass: erase-relu}}]\n"
                                          "seed: 99999999999999999999999\n"), "--dry-run"]


@case("out of range")
def apply_num_classes_absurd_dry_run(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "--num-classes", "100000000000", "--dry-run"]


@case("num_classes")
def recipe_num_classes_absurd(tmp, golden, mp):
    return ["run", _write(tmp / "r.yaml", f"model: {{name: '{TINY}', num_classes: 100000000000}}\n"
                                          "surgery: [{pass: erase-relu}]\n"), "--dry-run"]


@case("width")
def spinal_head_width_absurd_dry_run(tmp, golden, mp):
    return ["apply", "spinal-head", "-m", TINY, "--set", "width=1000000000000", "--dry-run"]


@case("num_classes")
def spinal_head_num_classes_absurd_dry_run(tmp, golden, mp):
    return ["apply", "spinal-head", "-m", TINY, "--set", "num_classes=1000000000000", "--dry-run"]


# ------------------------------------------------------------------ messages that name the cause (29)
@case("symbolic link")
def out_is_a_dangling_symlink(tmp, golden, mp):
    (tmp / "link").symlink_to(tmp / "gone")
    return ["apply", "erase-relu", "-m", TINY, "--out", tmp / "link"]


@case("symbolic link")
def out_is_under_a_dangling_symlink(tmp, golden, mp):
    (tmp / "link").symlink_to(tmp / "gone")
    return ["finetune", TINY, "--data", "digits", "--out", tmp / "link" / "run", *FAST]


@case("allow_reapply: true")
def recipe_reapplies_a_pass(tmp, golden, mp):
    return ["run", _write(tmp / "r.yaml", f"model: {{name: '{TINY}'}}\n"
                                          "surgery: [{pass: erase-relu}, {pass: erase-relu, proportion: 0.5}]\n"),
            "--dry-run"]


@case("allow_reapply: true")
def recipe_reapplies_a_pass_of_the_artifact(tmp, golden, mp):
    art = _artifact(tmp, golden)
    return ["run", _write(tmp / "r.yaml", f"model: {{name: '{art}'}}\nsurgery: [{{pass: erase-relu}}]\n"), "--dry-run"]


@case("inside the data folder")
def finetune_out_inside_the_data_folder(tmp, golden, mp):
    for split in ("train", "val"):
        for cls in ("a", "b"):
            _write(tmp / "data" / split / cls / "x.txt", "")
    return ["finetune", TINY, "--data", f"folder:{tmp / 'data'}", "--out", tmp / "data" / "train" / "run", *FAST]


@case("already is a spinal head")
def spinal_head_applied_twice(tmp, golden, mp):
    once = ns.apply(ns.load_model(TINY), "spinal-head").model
    return lambda: ns.apply(once, "spinal-head", allow_reapply=True)
