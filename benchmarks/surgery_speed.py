"""Surgery speed: ``netsurgeon.plan`` (trace, analysis, edit; no forward) and ``netsurgeon.apply`` (the same
plus the probe check) against a bare ``torch.fx.symbolic_trace`` of the same model, in one process.

For each model the variants run round-robin (``interleaved_medians``), medians of ``--runs`` runs after
one warm-up each. The bare trace traces the model itself; ``plan`` also deep-copies the model first
(the input is never mutated), so the copy is timed on its own as well, and so are netsurgeon's tracing
ladder (copy + trace + state check) and the analysis alone (``GraphIndex``, the sites, erase-relu's
plan: on an already traced graph), to show where the time goes.
``--profile`` prints where ``plan`` spends its time (cProfile, cumulative, top entries).

    .venv/bin/python benchmarks/surgery_speed.py [--runs 5] [--size 64] [--device cpu] [--profile]
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import pstats
import sys
import warnings
from pathlib import Path

import torch
from torch import fx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import netsurgeon as ns  # noqa: E402
from benchmarks._common import environment, interleaved_medians  # noqa: E402
from netsurgeon.graph.index import GraphIndex  # noqa: E402
from netsurgeon.graph.trace import trace  # noqa: E402
from netsurgeon.passes.erase_relu import EraseReLU, plan_erasure  # noqa: E402

MODELS = ["torchvision:resnet50", "torchvision:densenet121", "timm:resnet152d"]


def measure(spec: str, pass_name: str, device: torch.device, size: int, runs: int) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ns.load_model(spec).to(device).eval()
    x = torch.randn(2, 3, size, size, device=device)

    def bare() -> None:
        fx.symbolic_trace(model)

    def deepcopy() -> None:
        copy.deepcopy(model)

    def ladder() -> None:
        trace(model)

    gm = trace(model).gm

    def analysis() -> None:
        index = GraphIndex(gm)
        index.sites()
        plan_erasure(index, EraseReLU())

    def plan() -> None:
        ns.plan(model, pass_name, example_input=x)

    def apply() -> None:
        ns.apply(model, pass_name, example_input=x)

    steps = {"bare": bare, "deepcopy": deepcopy, "ladder": ladder, "analysis": analysis, "plan": plan, "apply": apply}
    return interleaved_medians(steps, device, runs)


def profile(spec: str, pass_name: str, top: int) -> str:
    model = ns.load_model(spec).eval()
    x = torch.randn(2, 3, 64, 64)
    ns.plan(model, pass_name, example_input=x)  # warm-up
    profiler = cProfile.Profile()
    profiler.enable()
    ns.plan(model, pass_name, example_input=x)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--pass", dest="pass_name", default="erase-relu")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=64, help="probe size of the apply check")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", action="store_true", help="cProfile plan on the first model")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"{environment(device)}; pass {args.pass_name}; medians of {args.runs} interleaved runs\n")
    print("| model | bare symbolic_trace (s) | deepcopy (s) | trace ladder (s) | analysis (s) | plan (s) | plan / bare "
          "| apply (s) | apply / bare |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for spec in args.models:
        t = measure(spec, args.pass_name, device, args.size, args.runs)
        print(f"| {spec} | {t['bare']:.3f} | {t['deepcopy']:.3f} | {t['ladder']:.3f} | {t['analysis']:.3f} "
              f"| {t['plan']:.3f} | {t['plan'] / t['bare']:.2f}x "
              f"| {t['apply']:.3f} | {t['apply'] / t['bare']:.2f}x |", flush=True)
    if args.profile:
        print(f"\nprofile of plan on {args.models[0]}:\n")
        print(profile(args.models[0], args.pass_name, args.top))


if __name__ == "__main__":
    main()
