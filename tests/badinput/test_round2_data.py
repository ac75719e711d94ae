"""The bad-input corpus, second round (issue 23): damaged data, resumes that would mix runs, artifacts whose
tensors were changed after export, files that are not regular files. Same rule as ``test_corpus``: exit code
1 (a NetsurgeonError from Python), one line that says what to do, no traceback, no file created, changed or
removed.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import netsurgeon as ns
from tests.badinput.helpers import TINY, Case, case_registry, cli, export_golden, read_record, run_case, write_artifact

CASES: dict[str, Case] = {}
case = case_registry(CASES)
FAST = ("--input-size", "3,8,8", "--format", "safetensors", "--set", "limit_train_batches=1", "--set",
        "batch_size=4", "--set", "limit_eval_batches=1", "--epochs", "1")


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Path:
    out = export_golden(tmp_path_factory.mktemp("golden") / "art")
    torch.save(ns.load_model(TINY).state_dict(), out.parent / "w.pt")  # a finished run beside it, for resumes
    run = cli("finetune", TINY, "-c", out.parent / "w.pt", "--data", "digits", "--out", out.parent / "run", *FAST)
    assert run.exit_code == 0, run.output
    return out


def _resume(tmp: Path, golden: Path, *changed: object, model: object = TINY, weights: object = None) -> list:
    """``finetune --resume`` of a copy of the golden run, with ``changed`` options after the run's own."""
    shutil.copytree(golden.parent / "run", tmp / "run")
    fast = FAST if model == TINY else FAST[2:]  # an artifact carries its input size
    return ["finetune", model, *(["-c", weights or golden.parent / "w.pt"] if model == TINY else []),
            "--data", "digits", "--out", tmp / "run", "--resume", *fast, *changed]


def _retensored(tmp: Path, golden: Path, change: Callable[[dict], None]) -> Path:
    """A copy of the golden artifact with its header kept and its tensors changed by ``change``."""
    from safetensors.torch import load_file

    tensors = load_file(str(golden / "model.safetensors"))
    change(tensors)
    return write_artifact(tmp / "art" / "model.safetensors", read_record(golden / "model.safetensors"), tensors)


# ------------------------------------------------------------------ artifacts: tensors changed after export (14, 25)
def _random_fc(tensors: dict) -> None:
    torch.manual_seed(1)
    tensors["fc.weight"] = torch.randn_like(tensors["fc.weight"])


@case("does not match the sha256 digest")
def artifact_fc_replaced_verify(tmp, golden, mp):
    return ["verify", _retensored(tmp, golden, _random_fc).parent]


@case("does not match the sha256 digest")
def artifact_zeroed_verify(tmp, golden, mp):
    def zero(tensors: dict) -> None:
        for k, v in tensors.items():
            tensors[k] = torch.zeros_like(v)

    return ["verify", _retensored(tmp, golden, zero).parent]


@case("does not match the sha256 digest")
def artifact_fc_replaced_load_model(tmp, golden, mp):
    art = _retensored(tmp, golden, _random_fc)
    return lambda: ns.load_model(art)


@case("does not match the sha256 digest")
def artifact_fc_replaced_finetune(tmp, golden, mp):
    art = _retensored(tmp, golden, _random_fc)
    return ["finetune", art, "--data", "digits", "--out", tmp / "o", *FAST[2:]]


@case("re-saved in another dtype")
def artifact_tensor_resaved_float64(tmp, golden, mp):
    def widen(tensors: dict) -> None:
        tensors["fc.weight"] = tensors["fc.weight"].double()

    return ["verify", _retensored(tmp, golden, widen).parent]


@case("re-saved in another dtype")
def artifact_all_resaved_half_load_model(tmp, golden, mp):
    def halve(tensors: dict) -> None:
        for k, v in tensors.items():
            tensors[k] = v.half() if v.is_floating_point() else v

    art = _retensored(tmp, golden, halve)
    return lambda: ns.load_model(art)


@case("tensors.sha256")
def header_tensor_digest_malformed(tmp, golden, mp):
    from safetensors.torch import load_file

    record = read_record(golden / "model.safetensors")
    record["tensors"]["sha256"] = "abc"
    art = write_artifact(tmp / "art" / "model.safetensors", record, load_file(str(golden / "model.safetensors")))
    return ["verify", art]


@case("tensors.dtype")
def header_tensor_dtype_unknown(tmp, golden, mp):
    from safetensors.torch import load_file

    record = read_record(golden / "model.safetensors")
    record["tensors"]["dtype"] = "complex128"
    art = write_artifact(tmp / "art" / "model.safetensors", record, load_file(str(golden / "model.safetensors")))
    return ["inspect", "-m", art]


# ------------------------------------------------------------------ artifacts: not regular files (26)
def _fifo_copy(tmp: Path, golden: Path, name: str) -> Path:
    art = tmp / "art"
    shutil.copytree(golden, art)
    (art / name).unlink()
    os.mkfifo(art / name)
    return art


@case("not a regular file")
def verify_onnx_is_fifo(tmp, golden, mp):
    return ["verify", _fifo_copy(tmp, golden, "model.onnx")]


@case("not a regular file")
def verify_safetensors_is_fifo(tmp, golden, mp):
    return ["verify", _fifo_copy(tmp, golden, "model.safetensors")]


@case("not a regular file")
def load_model_safetensors_is_fifo(tmp, golden, mp):
    art = _fifo_copy(tmp, golden, "model.safetensors")
    return lambda: ns.load_model(art / "model.safetensors")


@case("not a regular file")
def inspect_safetensors_is_fifo(tmp, golden, mp):
    return ["inspect", "-m", _fifo_copy(tmp, golden, "model.safetensors")]


# ------------------------------------------------------------------ export: what it writes, load accepts (10, 23)
def _with_history(steps: int):
    """A model whose history holds ``steps`` passes (what 65 chained applies record)."""
    from netsurgeon.models.info import get_info

    result = ns.apply(ns.load_model(TINY, input_size=(3, 8, 8)), "erase-relu")
    info = get_info(result.model)
    info.history = [info.history[0]] * steps
    return result.model


@case("at most 64")
def api_export_65_passes(tmp, golden, mp):
    from netsurgeon.export import export

    model = _with_history(65)
    return lambda: export(model, tmp / "o")


@case("refused on reload")
def api_export_num_classes_too_large_for_the_header(tmp, golden, mp):
    from netsurgeon.export import export
    from netsurgeon.models.info import get_info

    model = ns.load_model(TINY, input_size=(3, 8, 8))
    get_info(model).kwargs["num_classes"] = 1_000_001  # what an unbounded --num-classes recorded
    return lambda: export(model, tmp / "o", formats=["safetensors"])


@case("ONNX export needs a float32 model")
def api_export_half_model_with_onnx(tmp, golden, mp):
    from netsurgeon.export import export

    model = ns.load_model(TINY, input_size=(3, 8, 8)).half()
    return lambda: export(model, tmp / "o")


@case("ONNX export needs a float32 model")
def api_export_bfloat16_model_onnx_only(tmp, golden, mp):
    from netsurgeon.export import export

    model = ns.load_model(TINY, input_size=(3, 8, 8)).to(torch.bfloat16)
    return lambda: export(model, tmp / "o", formats=["onnx"])


# ------------------------------------------------------------------ Fashion-MNIST IDX files (18)
def _idx(array: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _fashion(tmp: Path, *, images: bytes | None = None, labels: bytes | None = None, gz: bool = True) -> Path:
    """The four Fashion-MNIST files (8 tiny images each); ``images``/``labels`` replace the training files' bytes."""
    root = tmp / "fmnist"
    root.mkdir()
    rng = np.random.default_rng(0)
    good_images = _idx(rng.integers(0, 256, (8, 28, 28), dtype=np.uint8))
    good_labels = _idx(np.arange(8, dtype=np.uint8))
    for prefix in ("train", "t10k"):
        first = prefix == "train"
        for kind, good, given in (("images-idx3", good_images, images), ("labels-idx1", good_labels, labels)):
            data = given if first and given is not None else good
            (root / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(data) if gz else data)
    return root


def _fashion_run(tmp: Path, root: Path) -> list:
    return ["finetune", TINY, "--data", f"fashion-mnist:{root}", "--out", tmp / "o", *FAST]


@case("truncated")
def fashion_images_truncated(tmp, golden, mp):
    good = _idx(np.zeros((8, 28, 28), dtype=np.uint8))
    return _fashion_run(tmp, _fashion(tmp, images=good[: len(good) // 2]))


@case("truncated")
def fashion_images_header_only(tmp, golden, mp):
    return _fashion_run(tmp, _fashion(tmp, images=b"\0\0\x08"))


@case("cannot be read as gzipped IDX")
def fashion_not_gzip(tmp, golden, mp):
    return _fashion_run(tmp, _fashion(tmp, gz=False))


@case("cannot be read as gzipped IDX")
def fashion_gzip_stream_cut(tmp, golden, mp):
    root = _fashion(tmp)
    path = root / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-30])
    return _fashion_run(tmp, root)


@case("do not belong together")
def fashion_count_mismatch(tmp, golden, mp):
    return _fashion_run(tmp, _fashion(tmp, labels=_idx(np.arange(7, dtype=np.uint8))))


@case("holds label 200")
def fashion_label_above_9(tmp, golden, mp):
    return _fashion_run(tmp, _fashion(tmp, labels=_idx(np.array([0, 1, 2, 3, 4, 5, 6, 200], dtype=np.uint8))))


@case("more than an IDX dataset holds")
def fashion_absurd_shape(tmp, golden, mp):
    return _fashion_run(tmp, _fashion(tmp, images=struct.pack(">HBB3I", 0, 8, 3, 60000, 100000, 100000)))


# ------------------------------------------------------------------ image folders: splits by class name (7, 19)
def _images(directory: Path, classes: list[str], n: int = 2) -> None:
    from PIL import Image

    for c, name in enumerate(classes):
        (directory / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (60 * i, 50 * c, 0)).save(directory / name / f"{i}.png")


def _folder_run(tmp: Path, root: Path, *extra: object) -> list:
    return ["finetune", TINY, "--data", f"folder:{root}", "--out", tmp / "o", *FAST, *extra]


@case("that")
def folder_class_only_in_val(tmp, golden, mp):
    _images(tmp / "d" / "train", ["cat", "dog"])
    _images(tmp / "d" / "val", ["cat", "dog", "emu"])
    return _folder_run(tmp, tmp / "d")


@case("emu")
def folder_class_only_in_test(tmp, golden, mp):
    _images(tmp / "d" / "train", ["cat", "dog"])
    _images(tmp / "d" / "test", ["emu"])
    return _folder_run(tmp, tmp / "d")


@case("no val/ or test/")
def folder_train_without_eval_split(tmp, golden, mp):
    _images(tmp / "d" / "train", ["cat", "dog"])
    _images(tmp / "d" / "other", ["cat", "dog"])
    return _folder_run(tmp, tmp / "d")


# ------------------------------------------------------------------ images: decompression bombs, workers (20, 21)
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 20000) -> bytes:
    """A PNG that declares side x side greyscale pixels in a few hundred bytes."""
    row = b"\0" * (side + 1)
    idat = zlib.compress(row * 64, 9)  # the first rows; PIL refuses on the declared size before decoding
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))


@case("bomb.png cannot be read")
def folder_decompression_bomb(tmp, golden, mp):
    _images(tmp / "d", ["cat", "dog"])
    (tmp / "d" / "cat" / "bomb.png").write_bytes(bomb_png())
    return _folder_run(tmp, tmp / "d")


@case("broken.png cannot be read")
def folder_corrupt_image_with_workers(tmp, golden, mp):
    _images(tmp / "d", ["cat", "dog"])
    (tmp / "d" / "cat" / "broken.png").write_bytes(b"not a png")
    return _folder_run(tmp, tmp / "d", "--set", "workers=2")


# ------------------------------------------------------------------ torchvision datasets (17)
@case("has no train/test split")
def torchvision_caltech101(tmp, golden, mp):
    return ["finetune", TINY, "--data", f"torchvision:Caltech101:{tmp}", "--out", tmp / "o", *FAST]


@case("use --data folder:DIR")
def torchvision_image_folder(tmp, golden, mp):
    return ["finetune", TINY, "--data", f"torchvision:ImageFolder:{tmp}", "--out", tmp / "o", *FAST]


@case("torchvision has no dataset")
def torchvision_not_a_dataset(tmp, golden, mp):
    return ["finetune", TINY, "--data", f"torchvision:wrap_dataset_for_transforms_v2:{tmp}", "--out", tmp / "o",
            *FAST]


@case("torchvision has no dataset")
def torchvision_a_module_name(tmp, golden, mp):
    return ["finetune", TINY, "--data", f"torchvision:utils:{tmp}", "--out", tmp / "o", *FAST]


@case("Flowers102 not found under")
def torchvision_flowers102_missing(tmp, golden, mp):
    return ["finetune", TINY, "--data", f"torchvision:Flowers102:{tmp}", "--out", tmp / "o", *FAST]


@case("Flowers102 not found under")
def api_torchvision_flowers102_test_split_missing(tmp, golden, mp):
    from netsurgeon.data import load_dataset

    return lambda: load_dataset(f"torchvision:Flowers102:{tmp}", "test", (3, 8, 8))


# ------------------------------------------------------------------ resume: the same run, or a named difference (9)
@case("input size: [3, 8, 8] -> [3, 16, 16]")
def resume_changed_input_size(tmp, golden, mp):
    return _resume(tmp, golden, "--input-size", "3,16,16")


@case("data: 'digits:' -> 'folder:")
def resume_changed_data(tmp, golden, mp):
    _images(tmp / "d", ["cat", "dog"])
    args = _resume(tmp, golden)
    args[args.index("digits")] = f"folder:{tmp / 'd'}"
    return args


@case("source weights")
def resume_other_checkpoint(tmp, golden, mp):
    torch.manual_seed(5)
    torch.save(ns.load_model(TINY).state_dict(), tmp / "w2.pt")
    return _resume(tmp, golden, weights=tmp / "w2.pt")


@case("surgery: [] -> ['erase-relu']")
def resume_with_an_artifact_of_other_surgery(tmp, golden, mp):
    made = cli("apply", "erase-relu", "-m", TINY, "-c", golden.parent / "w.pt", "--input-size", "3,8,8",
               "--out", tmp / "art", "--format", "safetensors")
    assert made.exit_code == 0, made.output
    return _resume(tmp, golden, model=tmp / "art")


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_in_one_line_leaving_files_alone(name, golden, tmp_path, monkeypatch):
    run_case(CASES[name], golden, tmp_path, monkeypatch)


def test_round2_count_is_the_one_in_the_readme():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"{len(CASES)} data, resume and artifact-integrity bad inputs" in readme
