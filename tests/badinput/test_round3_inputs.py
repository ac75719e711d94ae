"""The bad-input corpus, third round (issue 29, the input side): ambiguous checkpoints, archives edited after
export, data sets that would train on the wrong thing, special files, Python API misuse. Same rule as
``test_corpus``: exit code 1 (a NetsurgeonError from Python), one line that says what to do, no traceback, no
file created, changed or removed. Every case failed (or hung) on the code before issue 29; those that read
special files run in a child process with a bound, so one that blocks on a FIFO again fails instead of hanging
the suite.
"""

from __future__ import annotations

import gzip
import multiprocessing
import os
import shutil
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import netsurgeon as ns
from tests.badinput.helpers import TINY, Case, case_registry, export_golden, run_case

CASES: dict[str, Case] = {}
case = case_registry(CASES)
FAST = ("--input-size", "3,8,8", "--format", "safetensors", "--set", "limit_train_batches=1", "--set",
        "batch_size=4", "--set", "limit_eval_batches=1", "--epochs", "1")
#: seconds a special-file case may take before it counts as hung (a blocked read of a FIFO never returns)
BOUND = 120
#: the cases that read special files: each runs in a child process with a bound (a regression hangs there)
SPECIAL = {"verify_pt2_is_fifo", "verify_pt2_links_to_dev_zero", "folder_fifo_named_png", "fashion_files_are_fifos",
           "fashion_file_links_to_dev_zero", "recipe_is_fifo"}


def _release_fifos(root: Path) -> None:
    """Open every FIFO under ``root`` for writing and close it: a reader blocked on one gets its end of file."""
    for path in root.rglob("*"):
        if path.is_fifo():
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader waiting
                pass


def bounded(fn: Callable[[], object], root: Path, seconds: int) -> None:
    """Run ``fn`` in a forked child and fail if it has not returned after ``seconds``: a read blocked on a FIFO,
    or an endless one of /dev/zero inside C code, never returns, and no signal reaches it in this process."""
    ctx = multiprocessing.get_context("fork")
    reader, writer = ctx.Pipe(duplex=False)

    def child() -> None:
        try:
            fn()
            writer.send("")
        except BaseException as err:  # noqa: BLE001 - sent to the parent, which fails with it
            writer.send(f"{type(err).__name__}: {err}" or "failed")

    proc = ctx.Process(target=child)
    proc.start()
    try:
        if not reader.poll(seconds):
            pytest.fail(f"still running after {seconds} s: blocked on a special file")
        failure = reader.recv()
    finally:
        _release_fifos(root)
        proc.kill()
        proc.join()
    if failure:
        pytest.fail(failure, pytrace=False)


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Path:
    """The golden artifact, with a model.pt2 beside it (for the .pt2 cases)."""
    out = export_golden(tmp_path_factory.mktemp("golden") / "art")
    ns.export(ns.load_model(out), out.parent / "pt2", formats=["safetensors", "pt2"])
    return out


# ------------------------------------------------------------------ 4: a checkpoint holding two copies of the model
def _two_copies(tmp: Path, first: str = "student.", second: str = "ema.") -> Path:
    """A Lightning-style checkpoint whose ``state_dict`` holds two full copies of the tiny ResNet."""
    torch.manual_seed(0)
    a = ns.load_model(TINY).state_dict()
    torch.manual_seed(1)
    b = ns.load_model(TINY).state_dict()
    state = {**{first + k: v for k, v in a.items()}, **{second + k: v for k, v in b.items()}}
    path = tmp / "epoch=3-step=40.ckpt"
    torch.save({"state_dict": state, "epoch": 3, "pytorch-lightning_version": "2.4.0"}, path)
    return path


@case("2 full copies of the model's weights, under ema., student.; choose with --weights raw (student.)")
def lightning_two_copies_cli(tmp, golden, mp):
    return ["inspect", "-m", TINY, "-c", _two_copies(tmp)]


@case("re-save the copy you want")
def lightning_student_and_teacher_load_model(tmp, golden, mp):
    path = _two_copies(tmp, "student.", "teacher.")
    return lambda: ns.load_model(TINY, checkpoint=path, weights="raw")


# ------------------------------------------------------------------ 6: a .pt2 whose tensors were edited in the archive
def _edited_pt2(tmp: Path, golden: Path, member: str = "data/weights/weight_0") -> Path:
    """A copy of the golden .pt2 artifact whose ``member`` has other bytes (the provenance kept)."""
    art = tmp / "art"
    shutil.copytree(golden.parent / "pt2", art)
    path = art / "model.pt2"
    with zipfile.ZipFile(path) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w") as dst:
        for info, data in members:
            if info.filename.endswith(member):
                values = torch.frombuffer(bytearray(data), dtype=torch.float32).clone()
                values[0] += 0.5
                data = values.numpy().tobytes()
            dst.writestr(info, data)
    return art


@case("do not match the sha256 digest recorded at export")
def verify_pt2_weight_edited(tmp, golden, mp):
    return ["verify", _edited_pt2(tmp, golden)]


@case("do not match the sha256 digest recorded at export")
def api_verify_pt2_constant_edited(tmp, golden, mp):
    art = _edited_pt2(tmp, golden, "data/weights/weight_3")
    return lambda: ns.verify_artifact(art)


# ------------------------------------------------------------------ 9: data sets that would train on the wrong thing
def _images(directory: Path, classes: list[str], n: int = 2) -> None:
    from PIL import Image

    for c, name in enumerate(classes):
        (directory / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (60 * i, 50 * c, 0)).save(directory / name / f"{i}.png")


def _folder_run(tmp: Path, root: Path, *extra: object) -> list:
    return ["finetune", TINY, "--data", f"folder:{root}", "--out", tmp / "o", *FAST, *extra]


@case("symbolic link loop")
def folder_symlink_loop(tmp, golden, mp):
    _images(tmp / "d", ["cat", "dog"])
    os.symlink(tmp / "d" / "cat", tmp / "d" / "cat" / "again")
    return _folder_run(tmp, tmp / "d")


@case("__MACOSX")
def folder_class_emptied_by_skip_unreadable(tmp, golden, mp):
    _images(tmp / "d", ["cat", "dog"])
    (tmp / "d" / "__MACOSX").mkdir()
    for name in ("._0.png", "._1.png"):  # AppleDouble files: not images
        (tmp / "d" / "__MACOSX" / name).write_bytes(b"\0\5\26\7" + b"\0" * 60)
    return _folder_run(tmp, tmp / "d", "--skip-unreadable-images")


@case("needs at least two")
def folder_one_class(tmp, golden, mp):
    _images(tmp / "d", ["cat"], n=4)
    return _folder_run(tmp, tmp / "d")


# ------------------------------------------------------------------ 16: Python API misuse
def _quantized():
    model = ns.load_model(TINY, input_size=(3, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization's notice of its move to torchao
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


@case("the model is quantized")
def api_apply_dynamically_quantized(tmp, golden, mp):
    model = _quantized()
    return lambda: ns.apply(model, "erase-relu")


@case("the model is quantized")
def api_export_dynamically_quantized(tmp, golden, mp):
    model = _quantized()
    return lambda: ns.export(model, tmp / "o", formats=["safetensors"])


class _DictItems(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.rand(3, 8, 8), "label": i % 2}


def _tune():
    from netsurgeon.train import finetune

    return finetune


@case("returns a dict (keys: image, label)")
def api_finetune_dataset_of_dicts(tmp, golden, mp):
    model = ns.load_model(TINY, input_size=(3, 8, 8))
    return lambda: _tune()(model, _DictItems(), {"epochs": 1, "batch_size": 4, "progress": False})


@case("the data holds label 12 but the model outputs 10 classes")
def api_finetune_labels_beyond_the_outputs(tmp, golden, mp):
    model = ns.load_model(TINY, input_size=(3, 8, 8))
    data = torch.utils.data.TensorDataset(torch.rand(8, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 5, 6, 12]))
    return lambda: _tune()(model, data, {"epochs": 1, "batch_size": 4, "progress": False})


@case("the data holds label 10 but the model outputs 10 classes")
def api_finetune_test_labels_beyond_the_outputs(tmp, golden, mp):
    model = ns.load_model(TINY, input_size=(3, 8, 8))
    train = torch.utils.data.TensorDataset(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
    test = torch.utils.data.TensorDataset(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 10, 3]))
    return lambda: _tune()(model, (train, test), {"epochs": 1, "batch_size": 4, "progress": False})


# ------------------------------------------------------------------ 18: special files are never read
def _special(path: Path, kind: str) -> None:
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)


def _pt2_special(tmp: Path, golden: Path, kind: str) -> Path:
    art = tmp / "art"
    shutil.copytree(golden.parent / "pt2", art)
    _special(art / "model.pt2", kind)
    return art


@case("model.pt2 is not a regular file")
def verify_pt2_is_fifo(tmp, golden, mp):
    return ["verify", _pt2_special(tmp, golden, "fifo")]


@case("model.pt2 is not a regular file")
def verify_pt2_links_to_dev_zero(tmp, golden, mp):
    return ["verify", _pt2_special(tmp, golden, "zero")]


@case("is not a regular file (a FIFO)")
def folder_fifo_named_png(tmp, golden, mp):
    _images(tmp / "d", ["cat", "dog"])
    os.mkfifo(tmp / "d" / "cat" / "2.png")
    return _folder_run(tmp, tmp / "d")


def _fashion_fifos(tmp: Path) -> Path:
    root = tmp / "fmnist"
    root.mkdir()
    for prefix in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            os.mkfifo(root / f"{prefix}-{kind}-ubyte.gz")
    return root


@case("is not a regular file (a FIFO)")
def fashion_files_are_fifos(tmp, golden, mp):
    return ["finetune", TINY, "--data", f"fashion-mnist:{_fashion_fifos(tmp)}", "--out", tmp / "o", *FAST]


@case("is not a regular file (a character device)")
def fashion_file_links_to_dev_zero(tmp, golden, mp):
    root = tmp / "fmnist"
    root.mkdir()
    for prefix in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            (root / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(b"\0"))
    _special(root / "train-images-idx3-ubyte.gz", "zero")
    return ["finetune", TINY, "--data", f"fashion-mnist:{root}", "--out", tmp / "o", *FAST]


@case("not a regular file")
def recipe_is_fifo(tmp, golden, mp):
    os.mkfifo(tmp / "recipe.yaml")
    return ["run", tmp / "recipe.yaml"]


# ------------------------------------------------------------------ 23: a meta-device model
@case("weights are on the meta device")
def api_apply_meta_device_model(tmp, golden, mp):
    with torch.device("meta"):
        model = ns.load_model(TINY)
    return lambda: ns.apply(model, "erase-relu", input_size=(3, 16, 16))


@case("weights are on the meta device")
def api_export_meta_device_model(tmp, golden, mp):
    with torch.device("meta"):
        model = ns.load_model(TINY)
    return lambda: ns.export(model, tmp / "o", formats=["safetensors"])


# ------------------------------------------------------------------ 24: the Python API's out_dir, as --out
@case("out_dir is empty")
def api_export_empty_out_dir(tmp, golden, mp):
    model = ns.load_model(TINY, input_size=(3, 8, 8))
    mp.chdir(tmp)
    return lambda: ns.export(model, "", formats=["safetensors"])


@case("out_dir is empty")
def api_finetune_empty_out_dir(tmp, golden, mp):
    model = ns.load_model(TINY, input_size=(3, 8, 8))
    mp.chdir(tmp)
    return lambda: _tune()(model, "digits", {"epochs": 1, "batch_size": 4}, out_dir=" ")


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_in_one_line_leaving_files_alone(name, golden, tmp_path, monkeypatch):
    if name in SPECIAL:
        bounded(lambda: run_case(CASES[name], golden, tmp_path, monkeypatch), tmp_path, BOUND)
    else:
        run_case(CASES[name], golden, tmp_path, monkeypatch)


def test_round3_count_is_the_one_in_the_readme():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"{len(CASES)} ambiguous-checkpoint, edited-archive, data-set, special-file and API bad inputs" in readme
