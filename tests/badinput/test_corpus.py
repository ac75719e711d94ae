"""The bad-input corpus: each case must end in exit code 1 (or a NetsurgeonError from Python), one line
that says what to do, no traceback, and no file created, changed or removed.

A case is a function ``(tmp, golden, monkeypatch) -> CLI args | callable``; ``tmp`` holds the case's inputs
(snapshotted before the run), ``golden`` a valid artifact directory to copy and damage.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import netsurgeon as ns
from tests.badinput.helpers import (
    TINY,
    Case,
    case_registry,
    export_golden,
    read_record,
    run_case,
    tiny_state,
    write_artifact,
)

CASES: dict[str, Case] = {}
case = case_registry(CASES)


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Path:
    return export_golden(tmp_path_factory.mktemp("golden") / "art")


def crafted(tmp: Path, golden: Path, change: Callable[[dict], object]) -> Path:
    """A copy of the golden artifact whose header is ``change(record)``."""
    from safetensors.torch import load_file

    record = read_record(golden / "model.safetensors")
    new = change(record)
    return write_artifact(tmp / "art" / "model.safetensors", record if new is None else new,
                          load_file(str(golden / "model.safetensors")))


def _set(path: str, value: object) -> Callable[[dict], None]:
    def change(record: dict) -> None:
        target = record
        *parents, last = path.split(".")
        for p in parents:
            target = target[int(p)] if isinstance(target, list) else target[p]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value

    return change


# ------------------------------------------------------------------ artifacts: crafted or damaged headers (10, 17)
@case("model.spec")
def header_spec_wrong_type_verify(tmp, golden, mp):
    return ["verify", crafted(tmp, golden, _set("model.spec", 42)).parent]


@case("model.spec")
def header_spec_wrong_type_inspect(tmp, golden, mp):
    return ["inspect", "--model", crafted(tmp, golden, _set("model.spec", ["x"]))]


@case("model.spec")
def header_spec_wrong_type_finetune(tmp, golden, mp):
    art = crafted(tmp, golden, _set("model.spec", {"a": 1}))
    return ["finetune", art, "--data", "digits", "--out", tmp / "o"]


@case("model.kwargs")
def header_kwargs_wrong_type(tmp, golden, mp):
    return ["verify", crafted(tmp, golden, _set("model.kwargs", [1, 2]))]


@case("passes must be a list")
def header_passes_missing(tmp, golden, mp):
    return ["verify", crafted(tmp, golden, _set("passes", KeyError))]


@case("passes must be a list")
def header_passes_dict(tmp, golden, mp):
    return ["inspect", "-m", crafted(tmp, golden, _set("passes", {"pass": "erase-relu"}))]


@case("must be a JSON object")
def header_record_is_list(tmp, golden, mp):
    return ["verify", crafted(tmp, golden, lambda r: [r])]


@case("model.input_size")
def header_input_size_malformed(tmp, golden, mp):
    return ["verify", crafted(tmp, golden, _set("model.input_size", "3x32x32"))]


@case("model.input_size")
def header_input_size_zero(tmp, golden, mp):
    art = crafted(tmp, golden, _set("model.input_size", [3, 0, 16]))
    return ["finetune", art, "--data", "digits", "--out", tmp / "o"]


@case("model.input_size")
def header_input_size_absurd(tmp, golden, mp):
    return ["verify", crafted(tmp, golden, _set("model.input_size", [3, 100000, 100000]))]


@case("checkpoint_path")
def header_kwargs_checkpoint_path(tmp, golden, mp):
    return ["verify", crafted(tmp, golden, _set("model.kwargs", {"checkpoint_path": "/etc/passwd"}))]


@case("not allowed")
def header_kwargs_callable_name(tmp, golden, mp):
    return ["inspect", "-m", crafted(tmp, golden, _set("model.kwargs", {"norm_layer": "os.system"}))]


@case("num_classes must be of type int")
def header_kwargs_bool_num_classes(tmp, golden, mp):
    return ["verify", crafted(tmp, golden, _set("model.kwargs", {"num_classes": True}))]


@case("not a pass")
def header_unknown_pass(tmp, golden, mp):
    def change(r):
        r["passes"][0]["pass"] = "rm-rf"
        r["model"]["history"] = r["passes"]
    return ["verify", crafted(tmp, golden, change)]


@case("not valid JSON")
def header_not_json(tmp, golden, mp):
    return ["verify", crafted(tmp, golden, lambda r: '{"format": "netsurgeon.artifact.v1", ')]


@case("unsupported artifact format")
def header_wrong_format(tmp, golden, mp):
    return ["verify", crafted(tmp, golden, _set("format", "netsurgeon.artifact.v99"))]


@case("history differs")
def header_history_differs(tmp, golden, mp):
    return ["verify", crafted(tmp, golden, _set("model.history", []))]


@case("config must be a mapping")
def header_pass_config_list(tmp, golden, mp):
    def change(r):
        r["passes"][0]["config"] = [1]
        r["model"]["history"] = r["passes"]
    return ["verify", crafted(tmp, golden, change)]


@case("cannot be rebuilt")
def header_pass_config_bad_value(tmp, golden, mp):
    def change(r):
        r["passes"][0]["config"]["proportion"] = 7.5
        r["model"]["history"] = r["passes"]
    return ["verify", crafted(tmp, golden, change)]


@case("seed must be")
def header_seed_string(tmp, golden, mp):
    return ["verify", crafted(tmp, golden, _set("seed", "0; rm -rf /"))]


@case("weights must be a mapping")
def header_weights_wrong_type(tmp, golden, mp):
    return ["verify", crafted(tmp, golden, _set("weights", "random"))]


@case("unknown key")
def header_unknown_model_key(tmp, golden, mp):
    return ["verify", crafted(tmp, golden, _set("model.exec", "print(1)"))]


@case("model.spec")
def header_spec_unknown_library(tmp, golden, mp):
    return ["verify", crafted(tmp, golden, _set("model.spec", "file:/etc/passwd"))]


# ------------------------------------------------------------------ artifacts: damaged files (2, 11)
def _copy(tmp, golden) -> Path:
    shutil.copytree(golden, tmp / "art")
    return tmp / "art"


@case("could not be read as ONNX")
def onnx_truncated(tmp, golden, mp):
    art = _copy(tmp, golden)
    data = (art / "model.onnx").read_bytes()
    (art / "model.onnx").write_bytes(data[: len(data) // 2])
    return ["verify", art]


@case("ONNX")
def onnx_garbage(tmp, golden, mp):
    art = _copy(tmp, golden)
    (art / "model.onnx").write_bytes(bytes(range(256)) * 4)
    return ["verify", art]


@case("same provenance")
def onnx_from_another_model(tmp, golden, mp):
    import onnx

    art = _copy(tmp, golden)
    proto = onnx.load(str(art / "model.onnx"))
    for p in proto.metadata_props:
        if p.key == "netsurgeon":
            p.value = p.value.replace('"seed": 0', '"seed": 1')
    onnx.save_model(proto, str(art / "model.onnx"))
    return ["verify", art]


@case("truncated or corrupt")
def safetensors_truncated(tmp, golden, mp):
    art = _copy(tmp, golden)
    data = (art / "model.safetensors").read_bytes()
    (art / "model.safetensors").write_bytes(data[:100])
    return ["verify", art]


@case("truncated or corrupt")
def safetensors_empty(tmp, golden, mp):
    art = _copy(tmp, golden)
    (art / "model.safetensors").write_bytes(b"")
    return ["verify", art / "model.safetensors"]


@case("plain safetensors")
def safetensors_plain(tmp, golden, mp):
    from safetensors.torch import save_file

    (tmp / "art").mkdir()
    save_file(tiny_state(), str(tmp / "art" / "model.safetensors"))
    return ["verify", tmp / "art"]


@case("not found")
def verify_missing_path(tmp, golden, mp):
    return ["verify", tmp / "nothing-here"]


@case("not found")
def verify_dir_without_model(tmp, golden, mp):
    (tmp / "empty").mkdir()
    return ["verify", tmp / "empty"]


@case("NaN or infinite")
def artifact_nan_weights(tmp, golden, mp):
    from safetensors.torch import load_file

    tensors = load_file(str(golden / "model.safetensors"))
    tensors["fc.weight"] = torch.full_like(tensors["fc.weight"], float("nan"))
    return ["verify", write_artifact(tmp / "art" / "model.safetensors", read_record(golden), tensors)]


@case("missing 1 key")
def artifact_missing_tensor(tmp, golden, mp):
    from safetensors.torch import load_file

    tensors = load_file(str(golden / "model.safetensors"))
    del tensors["fc.bias"]
    return ["verify", write_artifact(tmp / "art" / "model.safetensors", read_record(golden), tensors)]


@case("artifact carries its own")
def artifact_with_input_size(tmp, golden, mp):
    return ["apply", "pd-relu", "-m", _copy(tmp, golden), "--input-size", "3,32,32"]


# ------------------------------------------------------------------ checkpoints (2, 5, 19)
@case("refused to load")
def checkpoint_evil_pickle(tmp, golden, mp):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"w": torch.zeros(1), "x": Evil()}, tmp / "evil.pt")
    return ["apply", "erase-relu", "-m", TINY, "-c", tmp / "evil.pt"]


@case("could not be read")
def checkpoint_truncated(tmp, golden, mp):
    torch.save(tiny_state(), tmp / "w.pt")
    data = (tmp / "w.pt").read_bytes()
    (tmp / "w.pt").write_bytes(data[: len(data) // 3])
    return ["apply", "erase-relu", "-m", TINY, "-c", tmp / "w.pt"]


@case("NaN or infinite")
def checkpoint_nan(tmp, golden, mp):
    state = tiny_state()
    state["fc.weight"][0, 0] = float("nan")
    torch.save(state, tmp / "w.pt")
    return ["apply", "erase-relu", "-m", TINY, "-c", tmp / "w.pt", "--out", tmp / "o"]


@case("NaN or infinite")
def checkpoint_inf(tmp, golden, mp):
    from safetensors.torch import save_file

    state = tiny_state()
    state["conv1.weight"][0] = float("inf")
    save_file(state, str(tmp / "w.safetensors"))
    return ["inspect", "-m", TINY, "-c", tmp / "w.safetensors"]


@case("non-float weights")
def checkpoint_int_weights(tmp, golden, mp):
    state = tiny_state()
    state["fc.weight"] = state["fc.weight"].round().to(torch.int64)
    torch.save(state, tmp / "w.pt")
    return ["apply", "erase-relu", "-m", TINY, "-c", tmp / "w.pt"]


@case("does not match the model")
def checkpoint_wrong_architecture(tmp, golden, mp):
    from netsurgeon.testing import TinyConvNet

    torch.save(TinyConvNet().state_dict(), tmp / "w.pt")
    return ["apply", "erase-relu", "-m", TINY, "-c", tmp / "w.pt"]


@case("--num-classes")
def checkpoint_wrong_class_count(tmp, golden, mp):
    torch.save(tiny_state(num_classes=7), tmp / "w.pt")
    return ["apply", "erase-relu", "-m", TINY, "-c", tmp / "w.pt"]


@case("unsupported file type")
def checkpoint_bad_suffix(tmp, golden, mp):
    (tmp / "w.txt").write_text("weights")
    return ["apply", "erase-relu", "-m", TINY, "-c", tmp / "w.txt"]


@case("not a file")
def checkpoint_is_directory(tmp, golden, mp):
    (tmp / "w.pt").mkdir()
    return ["apply", "erase-relu", "-m", TINY, "-c", tmp / "w.pt"]


@case("not found")
def checkpoint_missing(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "-c", tmp / "absent.pth"]


@case("not a state dict")
def checkpoint_holds_list(tmp, golden, mp):
    torch.save([torch.zeros(1)], tmp / "w.pt")
    return ["apply", "erase-relu", "-m", TINY, "-c", tmp / "w.pt"]


@case("holds no tensors")
def checkpoint_no_tensors(tmp, golden, mp):
    torch.save({"epoch": 3, "lr": 0.1}, tmp / "w.pt")
    return ["apply", "erase-relu", "-m", TINY, "-c", tmp / "w.pt"]


@case("truncated or corrupt")
def checkpoint_safetensors_truncated(tmp, golden, mp):
    from safetensors.torch import save_file

    save_file(tiny_state(), str(tmp / "w.safetensors"))
    data = (tmp / "w.safetensors").read_bytes()
    (tmp / "w.safetensors").write_bytes(data[:-50])
    return ["apply", "erase-relu", "-m", TINY, "-c", tmp / "w.safetensors"]


@case("not both")
def checkpoint_and_pretrained(tmp, golden, mp):
    torch.save(tiny_state(), tmp / "w.pt")
    return ["apply", "erase-relu", "-m", TINY, "-c", tmp / "w.pt", "--pretrained"]


@case("no pretrained weights")
def pretrained_test_model(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "--pretrained"]


@case("no pretrained weights")
def finetune_pretrained_test_model(tmp, golden, mp):
    return ["finetune", TINY, "--data", "digits", "--out", tmp / "o", "--pretrained"]


@case("do not pass checkpoint, pretrained")
def artifact_with_pretrained(tmp, golden, mp):
    return ["inspect", "-m", _copy(tmp, golden), "--pretrained"]


# ------------------------------------------------------------------ recipes (13, 18)
def _recipe(tmp: Path, text: str | bytes) -> Path:
    path = tmp / "r.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@case("not UTF-8")
def recipe_not_utf8(tmp, golden, mp):
    return ["run", _recipe(tmp, b"model: {name: 'caf\xe9'}\nsurgery: [{pass: erase-relu}]\n"), "--dry-run"]


@case("expands to more than")
def recipe_alias_bomb(tmp, golden, mp):
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return ["run", _recipe(tmp, "\n".join(lines) + "\nmodel: {name: x}\n"), "--dry-run"]


@case("recipes are limited")
def recipe_too_large(tmp, golden, mp):
    return ["run", _recipe(tmp, "# padding\n" * 120_000 + "model: {name: x}\n"), "--dry-run"]


@case("a recipe is a mapping")
def recipe_is_list(tmp, golden, mp):
    return ["run", _recipe(tmp, "- model\n- surgery\n"), "--dry-run"]


@case("not valid YAML")
def recipe_not_yaml(tmp, golden, mp):
    return ["run", _recipe(tmp, "model: {name: [unclosed\n"), "--dry-run"]


@case("not valid YAML")
def recipe_python_tag(tmp, golden, mp):
    return ["run", _recipe(tmp, "model: !!python/object/apply:os.system ['echo pwned']\n"), "--dry-run"]


@case("unknown pass")
def recipe_unknown_pass(tmp, golden, mp):
    return ["run", _recipe(tmp, f"model: {{name: '{TINY}'}}\nsurgery: [{{pass: erase-everything}}]\n"), "--dry-run"]


@case("cannot read the recipe")
def recipe_missing(tmp, golden, mp):
    return ["run", tmp / "absent.yaml", "--dry-run"]


@case("cannot read the recipe")
def recipe_is_directory(tmp, golden, mp):
    (tmp / "r.yaml").mkdir()
    return ["run", tmp / "r.yaml", "--dry-run"]


@case("not true/false")
def recipe_bool_for_float(tmp, golden, mp):
    return ["run", _recipe(tmp, f"model: {{name: '{TINY}'}}\nsurgery: [{{pass: erase-relu, proportion: true}}]\n"),
            "--dry-run"]


@case("finite number")
def recipe_set_nan(tmp, golden, mp):
    return ["run", _recipe(tmp, f"model: {{name: '{TINY}'}}\nsurgery: [{{pass: erase-relu}}]\n"),
            "--set", "surgery.0.proportion=.nan", "--dry-run"]


@case("expands to more than")
def set_value_alias_bomb(tmp, golden, mp):
    value = "[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]]"
    return ["apply", "erase-relu", "-m", TINY, "--set", f"act_types={value}"]


# ------------------------------------------------------------------ CLI options (5, 12)
@case("not true/false")
def set_bool_for_float(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "--set", "proportion=true"]


@case("finite number")
def set_inf_tau(tmp, golden, mp):
    return ["apply", "pd-relu", "-m", TINY, "--set", "tau=.inf"]


@case("finite number")
def set_nan_proportion(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "--set", "proportion=.nan"]


@case("finite number")
def finetune_set_nan_lr(tmp, golden, mp):
    return ["finetune", TINY, "--data", "digits", "--out", tmp / "o", "--set", "lr=nan"]


@case("the model takes 3")
def input_size_wrong_channels(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "--input-size", "1,32,32"]


@case("out of range")
def input_size_absurd(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "--input-size", "3,100000,100000"]


@case("needs about")
def input_size_too_large_for_memory(tmp, golden, mp):
    mp.setattr("netsurgeon.validate._memory_bytes", lambda: 2**30)
    return ["apply", "erase-relu", "-m", TINY, "--input-size", "3,8000,8000"]


@case("three positive integers")
def input_size_two_values(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "--input-size", "3,32"]


@case("three positive integers")
def input_size_zero(tmp, golden, mp):
    return ["finetune", TINY, "--data", "digits", "--out", tmp / "o", "--input-size", "3,0,32"]


@case("C,H,W")
def input_size_not_numbers(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "--input-size", "three"]


@case("unknown export format")
def format_unknown(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "--format", "xml", "--out", tmp / "o"]


@case("expects key=value")
def set_without_equals(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "--set", "proportion"]


@case("given twice")
def set_twice(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "--set", "proportion=0.5", "--set", "proportion=0.25"]


@case("Did you mean")
def set_unknown_key(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "--set", "proportoin=0.5"]


@case("unknown pass")
def pass_unknown(tmp, golden, mp):
    return ["apply", "erase-relus", "-m", TINY]


@case("unknown netsurgeon model")
def model_unknown(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", "netsurgeon:tiny_resnet50"]


@case("unknown model prefix")
def model_unknown_prefix(tmp, golden, mp):
    return ["inspect", "-m", "file:/etc/passwd"]


@case("num_classes must be a positive integer")
def num_classes_zero(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "--num-classes", "0"]


@case("--batch-size must be at least 1")
def batch_size_zero(tmp, golden, mp):
    return ["apply", "gru-fc", "-m", TINY, "--data", "digits", "--batch-size", "0"]


@case("epochs must be at least 1")
def finetune_zero_epochs(tmp, golden, mp):
    return ["finetune", TINY, "--data", "digits", "--out", tmp / "o", "--epochs", "0"]


@case("unknown data spec")
def finetune_unknown_data(tmp, golden, mp):
    return ["finetune", TINY, "--data", "imagenet", "--out", tmp / "o"]


@case("give a recipe file")
def run_without_recipe(tmp, golden, mp):
    return ["run"]


# ------------------------------------------------------------------ output directories (6, 8)
@case("is under")
def out_under_a_file(tmp, golden, mp):
    (tmp / "f").write_text("x")
    return ["apply", "erase-relu", "-m", TINY, "--out", tmp / "f" / "o"]


@case("is a file")
def out_is_a_file(tmp, golden, mp):
    (tmp / "f").write_text("x")
    return ["apply", "erase-relu", "-m", TINY, "--out", tmp / "f"]


@case("not writable")
def out_on_read_only_disk(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "--out", "/proc/netsurgeon-test/out"]


@case("not writable")
def finetune_out_on_read_only_disk(tmp, golden, mp):
    return ["finetune", TINY, "--data", "digits", "--out", "/proc/netsurgeon-test/out"]


@case("not writable")
def run_out_on_read_only_disk(tmp, golden, mp):
    recipe = _recipe(tmp, f"model: {{name: '{TINY}'}}\nsurgery: [{{pass: erase-relu}}]\n")
    return ["run", recipe, "--out", "/proc/netsurgeon-test/out"]


@case("already exists")
def out_holds_a_model(tmp, golden, mp):
    return ["apply", "erase-relu", "-m", TINY, "--out", _copy(tmp, golden)]


@case("already holds a run")
def finetune_out_holds_a_run(tmp, golden, mp):
    return ["finetune", TINY, "--data", "digits", "--out", _copy(tmp, golden), "--input-size", "3,8,8"]


@case("being written by another netsurgeon run")
def out_locked_by_another_run(tmp, golden, mp):
    import fcntl
    import os

    (tmp / "o").mkdir()
    fd = os.open(tmp / "o", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the test process's fd closes
    mp.setattr("tests.badinput.test_corpus._HELD", fd, raising=False)
    return ["apply", "erase-relu", "-m", TINY, "--out", tmp / "o"]


# ------------------------------------------------------------------ training runs (19)
@case("refused to load")
def resume_evil_checkpoint(tmp, golden, mp):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp / "o").mkdir()
    torch.save({"format": "netsurgeon.train.v1", "x": Evil()}, tmp / "o" / "checkpoint.pt")
    return ["finetune", TINY, "--data", "digits", "--out", tmp / "o", "--resume", "--input-size", "3,8,8"]


@case("could not be read")
def resume_truncated_checkpoint(tmp, golden, mp):
    (tmp / "o").mkdir()
    torch.save({"format": "netsurgeon.train.v1", "model": tiny_state()}, tmp / "o" / "checkpoint.pt")
    data = (tmp / "o" / "checkpoint.pt").read_bytes()
    (tmp / "o" / "checkpoint.pt").write_bytes(data[:200])
    return ["finetune", TINY, "--data", "digits", "--out", tmp / "o", "--resume", "--input-size", "3,8,8"]


@case("is damaged")
def resume_checkpoint_missing_parts(tmp, golden, mp):
    (tmp / "o").mkdir()
    torch.save({"format": "netsurgeon.train.v2", "state": {"epoch": "x"}}, tmp / "o" / "checkpoint.pt")
    return ["finetune", TINY, "--data", "digits", "--out", tmp / "o", "--resume", "--input-size", "3,8,8"]


@case("no checkpoint to resume")
def resume_without_checkpoint(tmp, golden, mp):
    return ["finetune", TINY, "--data", "digits", "--out", tmp / "o", "--resume", "--input-size", "3,8,8"]


# ------------------------------------------------------------------ data (14, 15)
def _folder(tmp: Path, bad: bytes | None = b"not a png", classes: int = 2) -> Path:
    from PIL import Image

    root = tmp / "imgs"
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 80 * c, 0)).save(root / f"c{c}" / f"{i}.png")
    if bad is not None:
        (root / "c0" / "broken.png").write_bytes(bad)
    return root


@case("broken.png cannot be read")
def folder_corrupt_image(tmp, golden, mp):
    return ["finetune", TINY, "--data", f"folder:{_folder(tmp)}", "--out", tmp / "o", "--input-size", "3,8,8",
            "--format", "safetensors"]


@case("broken.png cannot be read")
def folder_truncated_image(tmp, golden, mp):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, format="PNG")
    return ["finetune", TINY, "--data", f"folder:{_folder(tmp, buffer.getvalue()[:60])}", "--out", tmp / "o",
            "--input-size", "3,8,8"]


@case("no image under")
def folder_all_unreadable_skipped(tmp, golden, mp):
    root = tmp / "imgs"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.png").write_bytes(b"junk")
    return ["finetune", TINY, "--data", f"folder:{root}", "--out", tmp / "o", "--skip-unreadable-images",
            "--input-size", "3,8,8"]


@case("does not exist")
def folder_missing(tmp, golden, mp):
    return ["finetune", TINY, "--data", f"folder:{tmp / 'nope'}", "--out", tmp / "o"]


@case("image folder")
def folder_without_classes(tmp, golden, mp):
    (tmp / "imgs").mkdir()
    return ["finetune", TINY, "--data", f"folder:{tmp / 'imgs'}", "--out", tmp / "o"]


@case("the data has 10 classes but the model outputs 5")
def gru_fc_more_classes_than_model(tmp, golden, mp):
    return ["apply", "gru-fc", "-m", TINY, "--num-classes", "5", "--data", "digits", "--set", "mode=grad_contrib",
            "--input-size", "3,8,8"]


# ------------------------------------------------------------------ surgery (3)
class _Noisy(torch.nn.Module):
    """A model whose forward is not a function of its input: an exact pass cannot keep its outputs."""

    input_size = (3, 16, 16)

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.relu = torch.nn.ReLU()
        self.fc = torch.nn.Linear(4, num_classes)

    def forward(self, x):
        x = self.relu(self.conv(x) + torch.randn(1))
        return self.fc(x.mean((2, 3)))


@case("VIOLATED")
def contract_violated(tmp, golden, mp):
    from netsurgeon.testing import MODELS

    mp.setitem(MODELS, "noisy", _Noisy)
    return ["apply", "pd-relu", "-m", "netsurgeon:noisy", "--out", tmp / "o"]


@case("disk full")
def disk_full_during_export(tmp, golden, mp):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(args[1]))

    import sys

    mp.setattr(sys.modules["netsurgeon.export"], "write_safetensors", full)
    return ["apply", "erase-relu", "-m", TINY, "--out", tmp / "o", "--format", "safetensors"]


# ------------------------------------------------------------------ Python API (16, 17, 12)
@case("needs a model spec")
def api_load_model_none(tmp, golden, mp):
    return lambda: ns.load_model(None)


@case("needs a model spec")
def api_load_model_number(tmp, golden, mp):
    return lambda: ns.load_model(123)


@case("needs passes")
def api_apply_none(tmp, golden, mp):
    model = ns.load_model(TINY)
    return lambda: ns.apply(model, None)


@case("torch.nn.Module")
def api_apply_not_a_module(tmp, golden, mp):
    return lambda: ns.apply("netsurgeon:tiny_resnet", "erase-relu")


@case("'depth' is not allowed")
def api_bad_keyword_for_test_model(tmp, golden, mp):
    return lambda: ns.load_model(TINY, depth=3)


@case("width must be of type int")
def api_bad_value_for_test_model(tmp, golden, mp):
    return lambda: ns.load_model(TINY, width=0.5)


@case("checkpoint_path")
def api_checkpoint_path_keyword(tmp, golden, mp):
    return lambda: ns.load_model("timm:test_resnet", checkpoint_path="/etc/passwd")


@case("cannot run on the probe batch")
def api_apply_probe_cannot_run(tmp, golden, mp):
    model = ns.load_model(TINY, in_chans=1)
    return lambda: ns.apply(model, "erase-relu")


@case("out of range")
def api_absurd_input_size(tmp, golden, mp):
    return lambda: ns.load_model(TINY, input_size=(3, 100000, 100000))


@case("takes 3")
def api_input_size_channels(tmp, golden, mp):
    return lambda: ns.load_model(TINY, input_size=(1, 32, 32))


@case("out of range")
def api_apply_absurd_input_size(tmp, golden, mp):
    model = ns.load_model(TINY)
    return lambda: ns.apply(model, "erase-relu", input_size=(3, 100000, 100000))


@case("takes 3")
def api_apply_wrong_channels(tmp, golden, mp):
    model = ns.load_model(TINY)
    return lambda: ns.plan(model, "erase-relu", input_size=(4, 32, 32))


@case("num_classes must be a positive integer")
def api_num_classes_bool(tmp, golden, mp):
    return lambda: ns.load_model(TINY, num_classes=True)


@case("not found")
def api_load_model_missing_artifact(tmp, golden, mp):
    return lambda: ns.load_model(tmp / "missing.safetensors")


@case("VIOLATED")
def api_contract_violated(tmp, golden, mp):
    torch.manual_seed(0)
    model = _Noisy()
    return lambda: ns.apply(model, "pd-relu")


# ------------------------------------------------------------------ round 2 (issue 23): users' files, inputs, messages
from tests.badinput import corpus_files  # noqa: E402, F401  (registers its cases here)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_in_one_line_leaving_files_alone(name, golden, tmp_path, monkeypatch):
    line = run_case(CASES[name], golden, tmp_path, monkeypatch)
    if line is not None:
        assert "weights_only=False" not in line and "safe_globals" not in line


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 60


def test_corpus_count_is_the_one_in_the_readme():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"{len(CASES)} bad inputs" in readme
