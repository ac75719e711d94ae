"""Training throughput of ``netsurgeon.finetune`` against a minimal hand-written PyTorch loop.

Same model (torchvision resnet18, 10 classes), same data (the digits, resized and held in memory),
same batch size, optimizer (SGD with momentum), dtype and memory format, run side by side in one
process, interleaved, median of several runs. ``finetune`` is timed as a whole call (copying the
model, building the optimizer, the per-step schedule, the metrics); evaluation and file output are
off, since the hand loop has neither.

    python benchmarks/finetune_throughput.py                         # CPU
    python benchmarks/finetune_throughput.py --device cuda --amp bf16 --batch 256 --size 64
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import environment, interleaved_medians  # noqa: E402

import netsurgeon as ns  # noqa: E402
from netsurgeon.train import FinetuneConfig, finetune, resolve_data  # noqa: E402

TARGET = 0.95


class Digits(TensorDataset):
    num_classes = 10


def in_memory(model: torch.nn.Module, limit: int) -> Digits:
    train, _, _ = resolve_data("digits", model)
    items = [train[i] for i in range(min(limit, len(train)))]
    return Digits(torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items]))


def hand_loop(model: torch.nn.Module, data: Digits, batch: int, device: torch.device, amp: str,
              channels_last: bool) -> None:
    """What a careful user writes: shuffled loader, SGD with momentum, cross-entropy, AMP when asked."""
    model = model.to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loader = DataLoader(data, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(0))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="off", choices=["off", "bf16"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--images", type=int, default=640, help="images per epoch (from the 1,437 digits)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    channels_last = device.type == "cuda"
    torch.manual_seed(0)
    base = ns.load_model("torchvision:resnet18", num_classes=10, input_size=(3, args.size, args.size))
    data = in_memory(base, args.images)
    cfg = FinetuneConfig(epochs=1, batch_size=args.batch, lr=0.01, device=device.type, amp=args.amp,
                         channels_last=channels_last, progress=False, bn_recalibrate="off")

    variants = {
        "hand-written loop": lambda: hand_loop(ns.models.info.copy_model(base), data, args.batch, device, args.amp,
                                               channels_last),
        "netsurgeon.finetune": lambda: finetune(base, (data, None), cfg),
    }
    medians = interleaved_medians(variants, device, args.runs)  # one warm-up round, then round-robin
    print(f"# {environment(device)}; resnet18 at {args.size}x{args.size}, batch {args.batch}, "
          f"{len(data)} images per epoch, amp {args.amp}, median of {args.runs}")
    print("| loop | images/s | vs hand-written |\n| --- | ---: | ---: |")
    reference = medians["hand-written loop"]
    for name, seconds in medians.items():
        print(f"| {name} | {len(data) / seconds:,.0f} | {reference / seconds:.3f}x |")
    ratio = reference / medians["netsurgeon.finetune"]
    print(f"target: at least {TARGET}x -> {'met' if ratio >= TARGET else 'NOT met'} ({ratio:.3f}x)")


if __name__ == "__main__":
    main()
