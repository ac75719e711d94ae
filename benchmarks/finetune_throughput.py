"""Training throughput of ``netsurgeon.finetune`` against a minimal hand-written PyTorch loop.

Same model (torchvision resnet18, 10 classes), same data (the digits, resized and held in memory),
same batch size, optimizer (SGD with momentum), dtype and memory format, run side by side in one
process, interleaved, median of several runs. ``finetune`` is timed as a whole call (copying the
model, building the optimizer, the per-step schedule, the metrics); evaluation and file output are
off, since the hand loop has neither.

The augmented pipeline (``--pipeline augmented``, on by default) reads PNG photos (scikit-image's, cut into
tiles and written to a temporary image folder, so every image is decoded) through ``augment=basic``
(random-resized-crop + flip above 64 px) with ``workers=auto``; the hand loop uses the same transform
(``netsurgeon.data.train_transform``: torchvision v2 ops) in a torchvision ``ImageFolder`` with the same
DataLoader settings (workers, pinned memory on a GPU, persistent workers). ``finetune`` reads the folder
through ``load_dataset`` and its own loader (every sample under its seeded draw), with no test split.

    python benchmarks/finetune_throughput.py                         # CPU
    python benchmarks/finetune_throughput.py --device cuda --amp bf16 --batch 256 --size 64 --aug-size 160
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import environment, interleaved_medians  # noqa: E402

import netsurgeon as ns  # noqa: E402
from netsurgeon.data import Augment, load_dataset, model_data_config, train_transform  # noqa: E402
from netsurgeon.train import FinetuneConfig, finetune, resolve_data  # noqa: E402
from netsurgeon.train.batches import resolve_workers  # noqa: E402

TARGET = 0.95


class Digits(TensorDataset):
    num_classes = 10


def in_memory(model: torch.nn.Module, limit: int) -> Digits:
    train, _, _ = resolve_data("digits", model)
    items = [train[i] for i in range(min(limit, len(train)))]
    return Digits(torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items]))


def train_one_epoch(model: torch.nn.Module, loader: DataLoader, device: torch.device, amp: str,
                    channels_last: bool) -> None:
    """One epoch of the hand loop: SGD with momentum, cross-entropy, bf16 autocast and channels_last when asked."""
    model = model.to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16" else contextlib.nullcontext())
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        optimizer.step()


def print_table(medians: dict[str, float], images: int) -> float:
    """Print images/s per loop and its ratio to the hand-written one; returns netsurgeon's ratio."""
    print("| loop | images/s | vs hand-written |\n| --- | ---: | ---: |")
    reference = medians["hand-written loop"]
    for name, seconds in medians.items():
        print(f"| {name} | {images / seconds:,.0f} | {reference / seconds:.3f}x |")
    return reference / medians["netsurgeon.finetune"]


def hand_loop(model: torch.nn.Module, data: Digits, batch: int, device: torch.device, amp: str,
              channels_last: bool) -> None:
    """What a careful user writes: shuffled loader, SGD with momentum, cross-entropy, AMP when asked."""
    loader = DataLoader(data, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(0))
    train_one_epoch(model, loader, device, amp, channels_last)


def photo_folder(root: Path, images: int, tile: int = 192) -> Path:
    """``root/train/CLASS/*.png``: tiles of scikit-image's photos (3 classes)."""
    from PIL import Image
    from skimage import data

    photos = {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee()}
    for split, count in (("train", images),):
        for n in range(count):
            name = list(photos)[n % 3]
            photo = photos[name]
            y = (n * 37) % (photo.shape[0] - tile)
            x = (n * 53) % (photo.shape[1] - tile)
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo[y:y + tile, x:x + tile]).save(folder / f"{n}.png")
    return root


def hand_augmented_loop(model: torch.nn.Module, root: Path, transform, batch: int, workers: int,
                        device: torch.device, amp: str, channels_last: bool) -> None:
    """The same loop as ``hand_loop``, reading the image folder through the same transform and loader settings."""
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(str(root / "train"), transform=transform)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(0),
                        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    train_one_epoch(model, loader, device, amp, channels_last)


def augmented(args: argparse.Namespace, device: torch.device, channels_last: bool) -> float:
    """The augmented pipeline with workers=auto against the hand loop; returns the ratio."""
    size = (3, args.aug_size, args.aug_size)
    torch.manual_seed(0)
    base = ns.load_model("torchvision:resnet18", num_classes=3, input_size=size)
    with tempfile.TemporaryDirectory() as tmp:
        root = photo_folder(Path(tmp), args.aug_images)
        transform = train_transform(model_data_config(base), size, Augment("basic"))
        from torchvision.datasets import ImageFolder

        workers = resolve_workers("auto", ImageFolder(str(root / "train")))
        cfg = FinetuneConfig(epochs=1, batch_size=args.batch, lr=0.01, device=device.type, amp=args.amp,
                             channels_last=channels_last, progress=False, bn_recalibrate="off", augment="basic",
                             workers="auto", log="none")
        variants = {
            "hand-written loop": lambda: hand_augmented_loop(ns.models.info.copy_model(base), root, transform,
                                                             args.batch, workers, device, args.amp, channels_last),
            "netsurgeon.finetune": lambda: finetune(base, (load_dataset(f"folder:{root}", "train", size,
                                                                        transform=transform), None), cfg),
        }
        medians = interleaved_medians(variants, device, args.runs)
    print(f"\n# augmented pipeline: resnet18 at {args.aug_size}x{args.aug_size}, augment=basic "
          f"(random-resized-crop + flip), {args.aug_images} PNG images decoded per epoch, workers=auto ({workers}), "
          f"batch {args.batch}, amp {args.amp}, channels_last {channels_last}, median of {args.runs}")
    return print_table(medians, args.aug_images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="off", choices=["off", "bf16"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--images", type=int, default=640, help="images per epoch (from the 1,437 digits)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pipeline", default="both", choices=["plain", "augmented", "both"])
    parser.add_argument("--aug-size", type=int, default=96, help="input size of the augmented pipeline (> 64)")
    parser.add_argument("--aug-images", type=int, default=256, help="PNG images per epoch, augmented pipeline")
    args = parser.parse_args()
    device = torch.device(args.device)
    channels_last = device.type == "cuda"
    ratios = {}
    if args.pipeline in ("plain", "both"):
        ratios["in-memory tensors"] = plain(args, device, channels_last)
    if args.pipeline in ("augmented", "both"):
        ratios["augmented, workers=auto"] = augmented(args, device, channels_last)
    for name, ratio in ratios.items():
        print(f"target ({name}): at least {TARGET}x -> {'met' if ratio >= TARGET else 'NOT met'} ({ratio:.3f}x)")


def plain(args: argparse.Namespace, device: torch.device, channels_last: bool) -> float:
    """The in-memory digits, no augmentation, against the hand loop; returns the ratio."""
    torch.manual_seed(0)
    base = ns.load_model("torchvision:resnet18", num_classes=10, input_size=(3, args.size, args.size))
    data = in_memory(base, args.images)
    cfg = FinetuneConfig(epochs=1, batch_size=args.batch, lr=0.01, device=device.type, amp=args.amp,
                         channels_last=channels_last, progress=False, bn_recalibrate="off", augment="none",
                         workers=0, log="none")

    variants = {
        "hand-written loop": lambda: hand_loop(ns.models.info.copy_model(base), data, args.batch, device, args.amp,
                                               channels_last),
        "netsurgeon.finetune": lambda: finetune(base, (data, None), cfg),
    }
    medians = interleaved_medians(variants, device, args.runs)  # one warm-up round, then round-robin
    print(f"# {environment(device)}; resnet18 at {args.size}x{args.size}, batch {args.batch}, "
          f"{len(data)} images per epoch, amp {args.amp}, median of {args.runs}")
    return print_table(medians, len(data))


if __name__ == "__main__":
    main()
