"""Per-sample transforms: the model's own evaluation preprocessing, training augmentation presets, and
reproducible random draws.

Evaluation is the model's own preprocessing, scaled to the chosen input size: for a timm model what
``timm.data.create_transform(**resolve_data_config(model=...), is_training=False)`` builds (resize by
``crop_pct``, center crop, the weights' interpolation, mean/std), for a torchvision model its weights'
``transforms()`` (``ImageClassification``: resize ``resize_size``, crop ``crop_size``), for anything else
resize by 0.875 and center crop with ImageNet statistics. Inputs up to ``SMALL_INPUT`` pixels (CIFAR at
32, the digits) are used whole: resized to the input size, no crop, the model's mean/std, as the CIFAR
papers evaluate (an ImageNet-style crop would cut a tenth off a 32-pixel image).

Training presets (``augment``): ``none`` resizes and normalises only (:class:`ImageTransform`);
``basic`` is a zero-padded random crop + horizontal flip up to ``SMALL_INPUT`` pixels, random-resized-crop
+ flip above; ``timm`` is timm's own training transform (``create_transform(is_training=True)``).

Random draws: every random choice a transform makes (torch, ``random`` and numpy generators) is a pure
function of ``(seed, epoch, index, rank)`` when the sample is read through :class:`SeededSamples`
(see :func:`draw_seed`), so a resumed run and two arms with the same seed see identical augmentation,
whatever the worker count.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from netsurgeon.errors import ConfigError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "SMALL_INPUT", "Augment", "DataConfig", "ImageTransform", "SeededSamples",
           "draw_seed", "eval_transform", "model_data_config", "seeded", "train_transform"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: inputs whose shorter side is at most this many pixels are small-image data (CIFAR, digits): evaluated whole
#: (no center crop) and augmented with a padded random crop instead of a random-resized crop
SMALL_INPUT = 64


def _channel_stats(values: Sequence[float], channels: int) -> torch.Tensor:
    return torch.tensor(list(values[:channels]) if len(values) >= channels else list(values[:1]) * channels)


class ImageTransform:
    """Image (float C,H,W tensor in [0, 1], or PIL) -> resized, channel-adapted, normalised tensor.

    The ``augment=none`` training transform and the small-input evaluation transform: the whole image
    is resized (bilinear, antialiased) to the input size; grey images are repeated to the model's
    channel count."""

    def __init__(self, input_size: Sequence[int], mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        self.channels, self.height, self.width = (int(v) for v in input_size)
        self.mean = _channel_stats(mean, self.channels)
        self.std = _channel_stats(std, self.channels)

    def __call__(self, image: Any) -> torch.Tensor:
        image = _as_tensor(image)
        if image.shape[-2:] != (self.height, self.width):
            image = F.interpolate(image[None], size=(self.height, self.width), mode="bilinear",
                                  align_corners=False, antialias=True)[0]
        image = _adapt_channels(image, self.channels)
        return (image - self.mean[:, None, None]) / self.std[:, None, None]

    def __repr__(self) -> str:  # what a compare job records as its transform
        rounded = [[round(v, 4) for v in t.tolist()] for t in (self.mean, self.std)]
        return (f"{type(self).__name__}(size=({self.channels}, {self.height}, {self.width}), mean={rounded[0]}, "
                f"std={rounded[1]})")


def _as_tensor(image: Any) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        return image
    from torchvision.transforms.functional import to_tensor  # PIL: float C,H,W in [0, 1]

    return to_tensor(image)


def _adapt_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    if image.shape[0] == 1 and channels != 1:
        return image.expand(channels, -1, -1)
    if image.shape[0] != channels:
        raise ConfigError(f"the data has {image.shape[0]}-channel images but the model takes {channels}; "
                          "build the model with a matching in_chans.")
    return image


@dataclass(frozen=True)
class DataConfig:
    """The preprocessing a model was trained with (read locally: no download)."""

    library: str  # timm | torchvision | other
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875  # crop size / resize size
    crop_mode: str = "center"


def model_data_config(model: torch.nn.Module) -> DataConfig:
    """timm's ``resolve_data_config`` (the model's pretrained config), the torchvision weights'
    ``transforms()``, or ImageNet's statistics with resize 0.875 and center crop for anything else."""
    from netsurgeon.models.info import get_info

    info = get_info(model)
    library, _, name = (info.spec if info else "").partition(":")
    try:
        if library == "timm" or (not library and hasattr(model, "pretrained_cfg")):
            from timm.data import resolve_data_config

            if getattr(model, "pretrained_cfg", None):
                resolved = resolve_data_config(model=model)
            else:
                import timm

                cfg = timm.get_pretrained_cfg(name)
                resolved = resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg else {})
            return DataConfig("timm", tuple(resolved["mean"]), tuple(resolved["std"]), resolved["interpolation"],
                              float(resolved["crop_pct"]), resolved.get("crop_mode", "center"))
        if library == "torchvision":
            from torchvision.models import get_model_weights

            preset = get_model_weights(name).DEFAULT.transforms()
            crop, resize = preset.crop_size[0], preset.resize_size[0]
            return DataConfig("torchvision", tuple(preset.mean), tuple(preset.std), preset.interpolation.value,
                              crop / resize)
    except (ValueError, AttributeError, KeyError, RuntimeError, TypeError):
        pass  # no pretrained config for this name
    return DataConfig("other")


class _ModelOwn:
    """The library's own evaluation transform, after grey images become the model's channel count."""

    def __init__(self, inner: Callable[[Any], torch.Tensor], channels: int) -> None:
        self.inner, self.channels = inner, channels

    def __call__(self, image: Any) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            image = _adapt_channels(image, self.channels)
        elif getattr(image, "mode", "RGB") != "RGB" and self.channels == 3:
            image = image.convert("RGB")
        return _adapt_channels(self.inner(image), self.channels)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


def eval_transform(config: DataConfig, input_size: Sequence[int]) -> Callable[[Any], torch.Tensor]:
    """The evaluation transform of a model with data config ``config`` at ``input_size`` (C, H, W)."""
    channels, height, width = (int(v) for v in input_size)
    if min(height, width) <= SMALL_INPUT:
        return ImageTransform(input_size, config.mean, config.std)
    mean, std = tuple(_channel_stats(config.mean, channels).tolist()), tuple(_channel_stats(config.std, channels)
                                                                           .tolist())
    if config.library == "torchvision" and height == width:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms._presets import ImageClassification

        inner = ImageClassification(crop_size=height, resize_size=round(height / config.crop_pct), mean=mean,
                                    std=std, interpolation=InterpolationMode(config.interpolation))
    else:
        from timm.data import create_transform

        inner = create_transform(input_size=(channels, height, width), is_training=False,
                                 interpolation=config.interpolation, crop_pct=config.crop_pct,
                                 crop_mode=config.crop_mode, mean=mean, std=std)
    return _ModelOwn(inner, channels)


@dataclass(frozen=True)
class Augment:
    """The training augmentation settings (``FinetuneConfig``'s fields of the same names)."""

    preset: str = "basic"  # none | basic | timm
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (0.75, 4 / 3)
    hflip: float = 0.5
    crop_padding: int = 4
    color_jitter: float | None = None
    auto_augment: str | None = None
    re_prob: float = 0.0


class _Chain:
    """Functions applied in order (picklable, so DataLoader workers can take it)."""

    def __init__(self, *steps: Callable[[Any], Any]) -> None:
        self.steps = steps

    def __call__(self, image: Any) -> Any:
        for step in self.steps:
            image = step(image)
        return image

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.steps))})"


class _ToPIL:
    """Float tensors become PIL images (timm's auto-augment policies need them); grey ones become RGB."""

    def __call__(self, image: Any) -> Any:
        if isinstance(image, torch.Tensor):
            from torchvision.transforms.functional import to_pil_image

            image = to_pil_image(image.clamp(0, 1))
        return image.convert("RGB") if image.mode != "RGB" else image


def train_transform(config: DataConfig, input_size: Sequence[int], augment: Augment) -> Callable[[Any], torch.Tensor]:
    """The training transform of preset ``augment.preset`` (see the module docstring)."""
    from torchvision.transforms import v2

    channels, height, width = (int(v) for v in input_size)
    if augment.preset == "none":
        return ImageTransform(input_size, config.mean, config.std)
    mean, std = _channel_stats(config.mean, channels).tolist(), _channel_stats(config.std, channels).tolist()
    if augment.preset == "timm":
        if channels != 3:
            raise ConfigError(f"augment=timm needs a 3-channel model (this one takes {channels}); use augment=basic.")
        from timm.data import create_transform

        inner = create_transform(input_size=(3, height, width), is_training=True, scale=augment.scale,
                                 ratio=augment.ratio, hflip=augment.hflip, color_jitter=augment.color_jitter,
                                 auto_augment=augment.auto_augment, re_prob=augment.re_prob,
                                 interpolation=config.interpolation, mean=tuple(mean), std=tuple(std))
        return _Chain(_ToPIL(), inner)
    flip = v2.RandomHorizontalFlip(augment.hflip)
    if min(height, width) <= SMALL_INPUT:  # the CIFAR papers: pad, random crop, flip; then normalise
        resize = ImageTransform(input_size, (0.0,) * channels, (1.0,) * channels)
        crop = v2.RandomCrop((height, width), padding=augment.crop_padding) if augment.crop_padding else None
        steps = [resize, *([crop] if crop else []), flip, v2.Normalize(mean, std)]
        return _Chain(*steps)
    interpolation = v2.InterpolationMode(config.interpolation)
    return _Chain(_as_tensor, _Channels(channels),
                  v2.RandomResizedCrop((height, width), scale=augment.scale, ratio=augment.ratio,
                                       interpolation=interpolation, antialias=True),
                  flip, v2.Normalize(mean, std))


class _Channels:
    """Grey images repeated to the model's channel count."""

    def __init__(self, channels: int) -> None:
        self.channels = channels

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return _adapt_channels(image, self.channels)


# ---------------------------------------------------------------------------------------------- random draws
def draw_seed(seed: int, epoch: int, index: int, rank: int = 0, stream: str = "sample") -> int:
    """The 63-bit seed of one random draw: a pure function of (seed, epoch, index, rank, stream).

    ``stream`` separates independent uses: ``sample`` seeds the augmentation of sample ``index`` in
    ``epoch``; ``mixup`` seeds the mixing of batch ``index`` of ``epoch``. Two runs with the same seed
    draw the same augmentation for the same sample (the guarantee ``compare`` relies on), and so does a
    run resumed from a checkpoint."""
    digest = hashlib.blake2b(f"{stream}:{seed}:{epoch}:{index}:{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's (CPU), ``random``'s and numpy's global generators seeded from ``seed``.

    torch's generator is restored afterwards: it is the one the training loop draws from (dropout) and
    saves in checkpoints. ``random`` and numpy stay seeded from the last sample read (saving and restoring
    numpy's state would cost 0.14 ms a sample); every user of them here (timm's transforms, ``Mixup``)
    runs under this context, so no result depends on their state outside it."""
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        generator.set_state(state)


class SeededSamples(Dataset):
    """A dataset read by ``(epoch, index)`` keys: each read runs seeded by
    ``draw_seed(seed, epoch, index, rank)``, so every random transform inside the wrapped dataset (ours or
    the user's own torchvision transforms) draws the same way for the same sample and epoch."""

    def __init__(self, base: Dataset, seed: int, rank: int = 0) -> None:
        self.base, self.seed, self.rank = base, seed, rank
        self.num_classes = getattr(base, "num_classes", None)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        with seeded(draw_seed(self.seed, epoch, index, self.rank)):
            return self.base[index]
