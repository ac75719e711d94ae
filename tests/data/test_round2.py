"""Issue 23's data findings that are not plain refusals: split folders labelled by class name, 16-bit PNGs,
torchvision datasets with split=, decompression bombs left out. Each failed before the fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from netsurgeon.data import load_dataset
from tests.badinput.helpers import cli

TINY = "netsurgeon:tiny_resnet"


def _class_images(directory, classes: dict[str, int]) -> None:
    """One folder per class; each image is filled with the class's grey value (to tell them apart)."""
    for name, value in classes.items():
        (directory / name).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (4, 4), value).save(directory / name / f"{i}.png")


def _grey_to_class(dataset) -> dict[int, int]:  # noqa: ANN001
    """The first pixel's grey value (0-255) of every item, mapped to its label."""
    out = {}
    for i in range(len(dataset)):
        image, label = dataset[i]
        out[round(float(image[0, 0, 0]) * 255)] = label
    return out


@pytest.mark.parametrize("eval_name", ["test", "val"])
def test_7_eval_split_is_read_from_val_or_test_with_the_training_labels(tmp_path, eval_name):
    _class_images(tmp_path / "train", {"ant": 10, "bee": 20, "cow": 30})
    _class_images(tmp_path / eval_name, {"ant": 110, "cow": 130})  # bee missing: cow must keep label 2
    spec, size = f"folder:{tmp_path}", (3, 4, 4)
    train = load_dataset(spec, "train", size, mean=(0.0,) * 3, std=(1.0,) * 3)
    test = load_dataset(spec, "test", size, mean=(0.0,) * 3, std=(1.0,) * 3)
    assert _grey_to_class(train) == {10: 0, 20: 1, 30: 2}
    assert _grey_to_class(test) == {110: 0, 130: 2}  # only eval images, labelled by class name
    assert test.num_classes == train.num_classes == 3


def test_8_16_bit_png_is_scaled_not_clipped(tmp_path):
    pixels = np.array([[0, 1000], [32768, 65535]], dtype=np.uint16)
    (tmp_path / "c").mkdir()
    Image.fromarray(pixels).save(tmp_path / "c" / "deep.png")  # mode I;16
    assert Image.open(tmp_path / "c" / "deep.png").mode.startswith("I")
    data = load_dataset(f"folder:{tmp_path}", "train", (1, 2, 2), mean=(0.0,), std=(1.0,))
    image, _ = data[0]
    assert torch.allclose(image[0], torch.from_numpy(pixels.astype(np.float32) / 65535), atol=1e-6)


class _SplitOnly(torch.utils.data.Dataset):
    """Shaped like Flowers102: (root, split=, transform=, download=); only train/val/test."""

    made: list[str] = []
    classes = ["a", "b", "c"]

    def __init__(self, root, split="train", transform=None, download=False):  # noqa: ANN001
        if split not in ("train", "val", "test"):
            raise ValueError(f"Unknown value '{split}' for argument split.")
        type(self).made.append(split)
        self.split = split

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int):
        return torch.full((3, 4, 4), 0.5), i


class _TrainvalOnly(_SplitOnly):
    """Shaped like OxfordIIITPet: split is trainval or test."""

    made: list[str] = []

    def __init__(self, root, split="trainval", download=False):  # noqa: ANN001
        if split not in ("trainval", "test"):
            raise ValueError(f"Unknown value '{split}' for argument split.")
        type(self).made.append(split)


def test_17_torchvision_datasets_with_split_are_built_with_their_split_names(monkeypatch, tmp_path):
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd, "SplitOnly", _SplitOnly, raising=False)
    monkeypatch.setattr(tvd, "TrainvalOnly", _TrainvalOnly, raising=False)
    for name, cls, wanted in (("SplitOnly", _SplitOnly, ["train", "test"]),
                              ("TrainvalOnly", _TrainvalOnly, ["trainval", "test"])):
        train = load_dataset(f"torchvision:{name}:{tmp_path}", "train", (3, 4, 4))
        load_dataset(f"torchvision:{name}:{tmp_path}", "test", (3, 4, 4))
        assert [s for s in cls.made if s in wanted] == wanted and train.num_classes == 3


def test_20_skip_unreadable_images_leaves_a_decompression_bomb_out(tmp_path):
    from tests.badinput.test_round2_data import _images, bomb_png

    _images(tmp_path / "d", ["cat", "dog"])
    (tmp_path / "d" / "cat" / "bomb.png").write_bytes(bomb_png())
    result = cli("finetune", TINY, "--data", f"folder:{tmp_path / 'd'}", "--out", tmp_path / "o", "--epochs", "1",
                 "--skip-unreadable-images", "--input-size", "3,8,8", "--format", "safetensors",
                 "--set", "batch_size=4", "--set", "limit_eval_batches=1")
    assert result.exit_code == 0, result.output
    assert "left out 1 unreadable image(s)" in result.stderr and "bomb.png" in result.stderr


class _Refuses(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        from netsurgeon.errors import ConfigError

        raise ConfigError(f"item {i} is bad; fix it.")


def test_21_an_error_from_a_dataloader_worker_keeps_its_one_line():
    from netsurgeon.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        next(iter(torch.utils.data.DataLoader(_Refuses(), batch_size=2, num_workers=1)))
    assert str(info.value) == "item 0 is bad; fix it."
