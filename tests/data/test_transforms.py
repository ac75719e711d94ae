"""The model's own evaluation preprocessing, the training presets, and reproducible random draws."""

import numpy as np
import pytest
import torch
from PIL import Image

import netsurgeon as ns
from netsurgeon.data import (
    Augment,
    SeededSamples,
    draw_seed,
    eval_transform,
    load_dataset,
    model_data_config,
    train_transform,
)

SIZE = (3, 224, 224)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """A real photo (scikit-image's astronaut, read locally) as an image folder of one class."""
    data = pytest.importorskip("skimage.data")  # a dev dependency

    root = tmp_path_factory.mktemp("photo")
    (root / "astronaut").mkdir()
    Image.fromarray(data.astronaut()).save(root / "astronaut" / "a.png")
    return root


def _library_transform(spec: str, model):
    library, _, name = spec.partition(":")
    if library == "timm":
        from timm.data import create_transform, resolve_data_config

        return create_transform(**resolve_data_config(model=model), is_training=False)
    from torchvision.models import get_model_weights

    return get_model_weights(name).DEFAULT.transforms()


@pytest.mark.parametrize("spec, expected", [
    ("timm:resnet50", ("bicubic", 0.95)),
    ("timm:tf_efficientnet_lite0", ("bicubic", 0.875)),
    ("torchvision:resnet50", ("bilinear", 224 / 232)),
    ("torchvision:efficientnet_b0", ("bicubic", 224 / 256)),
])
def test_evaluation_tensor_equals_the_library_own_transform(photo_folder, spec, expected):
    model = ns.load_model(spec)  # pretrained=False: the data config is read from local metadata
    config = model_data_config(model)
    assert (config.interpolation, config.crop_pct) == pytest.approx(expected)
    test = load_dataset(f"folder:{photo_folder}", "test", SIZE, transform=eval_transform(config, SIZE))
    ours, _ = test[0]
    theirs = _library_transform(spec, model)(Image.open(photo_folder / "astronaut" / "a.png"))
    assert ours.shape == theirs.shape == SIZE
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=0), float((ours - theirs).abs().max())


def test_small_inputs_are_used_whole_with_the_model_statistics():
    model = ns.load_model("torchvision:resnet18", num_classes=10, input_size=(3, 32, 32))
    config = model_data_config(model)
    image = torch.rand(3, 32, 32)
    out = eval_transform(config, (3, 32, 32))(image)  # CIFAR size: no resize, no crop
    mean, std = torch.tensor(config.mean)[:, None, None], torch.tensor(config.std)[:, None, None]
    assert torch.allclose(out, (image - mean) / std, atol=1e-6)


def test_basic_augmentation_varies_by_epoch_and_repeats_by_key():
    base = load_dataset("digits", "train", (3, 16, 16),
                        transform=train_transform(model_data_config(torch.nn.Identity()), (3, 16, 16), Augment()))
    samples = SeededSamples(base, seed=0)
    first, again, other_epoch = samples[0, 7][0], samples[0, 7][0], samples[1, 7][0]
    assert torch.equal(first, again)
    assert not torch.equal(first, other_epoch)
    assert not torch.equal(samples[0, 7][0], SeededSamples(base, seed=1)[0, 7][0])
    torch.manual_seed(3)
    before = torch.rand(1)
    torch.manual_seed(3)
    samples[0, 1]  # reading a sample leaves the global generator alone
    assert torch.equal(torch.rand(1), before)
    assert draw_seed(0, 1, 2, 0) == draw_seed(0, 1, 2, 0) != draw_seed(0, 1, 2, 1)


def test_evaluation_images_never_vary_and_none_reproduces_the_plain_transform():
    size = (3, 16, 16)
    config = model_data_config(torch.nn.Identity())
    plain = load_dataset("digits", "train", size)
    none = load_dataset("digits", "train", size, transform=train_transform(config, size, Augment("none")))
    assert all(torch.equal(plain[i][0], none[i][0]) for i in range(5))
    test = SeededSamples(load_dataset("digits", "test", size, transform=eval_transform(config, size)), seed=0)
    assert torch.equal(test[0, 3][0], test[5, 3][0])


@pytest.mark.parametrize("augment", [Augment("basic"), Augment("timm", auto_augment="rand-m9-mstd0.5-inc1",
                                                                  re_prob=0.25, color_jitter=0.4)])
def test_large_inputs_and_the_timm_preset(photo_folder, augment):
    config = model_data_config(ns.load_model("timm:resnet50"))
    train = SeededSamples(load_dataset(f"folder:{photo_folder}", "train", (3, 96, 96),
                                       transform=train_transform(config, (3, 96, 96), augment)), seed=0)
    a, b = train[0, 0][0], train[1, 0][0]
    assert a.shape == (3, 96, 96) and not torch.equal(a, b) and torch.equal(a, train[0, 0][0])
    grey = train_transform(config, (3, 96, 96), augment)(torch.from_numpy(np.random.rand(1, 120, 100)).float())
    assert grey.shape == (3, 96, 96)  # grey images become the model's channel count
