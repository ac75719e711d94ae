"""Cost of PD-ReLU in a training step of torchvision resnet50, side by side in one process.

Variants: the traced model with nn.ReLU (the reference), pd-relu with each family, and nn.LeakyReLU
(in place, the natural peer: same backward as the leaky family, different forward). One step is
zero_grad + forward + cross-entropy + backward + SGD(momentum) step. Prints the median time and the
peak memory of each variant as a ratio to nn.ReLU.

    python benchmarks/pd_relu_cost.py                       # CPU, batch 16 at 128x128
    python benchmarks/pd_relu_cost.py --device cuda --amp bf16 --batch 64 --size 224
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import environment, interleaved_medians, peak_bytes  # noqa: E402

import netsurgeon as ns  # noqa: E402
from netsurgeon.graph.trace import trace  # noqa: E402

TARGETS = {"time": 1.10, "memory": 1.02}  # for the leaky family, against nn.ReLU


def leaky_peer(model: nn.Module, slope: float) -> nn.Module:
    """The model with every nn.ReLU module swapped for an in-place nn.LeakyReLU, traced like the others."""
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.ReLU):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, nn.LeakyReLU(slope, inplace=True))
    return trace(model).gm


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: str | None):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp or "")
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--amp", choices=["bf16", "fp16"], default=None)
    parser.add_argument("--families", default="leaky,exp,sigmoid,ramp")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    base = ns.load_model("torchvision:resnet50").train()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 1000, (args.batch,), device=device)
    models: dict[str, nn.Module] = {"nn.ReLU": trace(base).gm}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for family in args.families.split(","):
            models[f"pd-relu {family}"] = ns.apply(base, ns.PseudoDerivativeReLU(family=family), verify=False).model
    models["nn.LeakyReLU"] = leaky_peer(ns.load_model("torchvision:resnet50"), 0.1)
    steps = {}
    for name, model in models.items():
        model.load_state_dict(base.state_dict())
        steps[name] = make_step(model.to(device).train(), x, y, args.amp)
    for step in steps.values():  # first steps allocate optimizer state and warm caches
        step()
    memory = {name: peak_bytes(step, device) for name, step in steps.items()}
    times = interleaved_medians(steps, device, args.runs, warmup=0)
    print(f"# pd-relu cost: resnet50 training step, batch {args.batch} at {args.size}x{args.size}, "
          f"amp {args.amp or 'off'}, median of {args.runs}; {environment(device)}")
    print("| variant | step time (s) | time vs nn.ReLU | peak memory (MiB) | memory vs nn.ReLU |")
    print("| --- | --- | --- | --- | --- |")
    ref_t, ref_m = times["nn.ReLU"], memory["nn.ReLU"]
    for name in models:
        print(f"| {name} | {times[name]:.3f} | {times[name] / ref_t:.3f}x | {memory[name] / 2**20:.0f} | "
              f"{memory[name] / ref_m:.3f}x |")
    leaky_t, leaky_m = times.get("pd-relu leaky", 0) / ref_t, memory.get("pd-relu leaky", 0) / ref_m
    ok = leaky_t <= TARGETS["time"] and leaky_m <= TARGETS["memory"]
    print(f"\nleaky targets (time <= {TARGETS['time']}x, memory <= {TARGETS['memory']}x): "
          f"{'met' if ok else 'NOT met'} ({leaky_t:.3f}x, {leaky_m:.3f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
