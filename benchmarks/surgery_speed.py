"""Surgery speed: ``netsurgeon.plan`` (trace, analysis, edit; no forward) and ``netsurgeon.apply`` (the same
plus the probe check) against a bare ``torch.fx.symbolic_trace`` of the same model, in one process.

For each model the variants run round-robin (``interleaved_medians``), medians of ``--runs`` runs after
one warm-up each. The second table splits ``plan`` into its steps, timed one after another inside
one run (medians over the runs), as ratios to the bare trace:

* ``copy``: the private copy of the modules (a dry run shares the caller's tensors, see ``Workspace.of``);
* ``trace``: the whole-model analysis trace (netsurgeon's ladder on the copy);
* ``pass``: the pass itself on that graph: its analysis (sites, blocks, data paths) and queued edits;
* ``rewrites``: applying the edits at their scopes (``ScopedEditor.apply``: one local trace, edit and
  code generation per rewritten block), with the count of block rewrites;
* ``re-trace``: the whole-model trace of the result (the next pass's graph, the report's site count);
* ``fx floor``: what fx charges for any trace at all (tracing a module whose forward is ``return x``:
  patching and restoring ``nn.Module.__call__``/``__getattr__`` and wrapping ``math``'s functions), times
  the number of traces ``plan`` makes (two whole-model traces and one per block rewrite).

``--profile`` prints where ``plan`` spends its time (cProfile, cumulative, top entries).

    .venv/bin/python benchmarks/surgery_speed.py [--runs 7] [--size 64] [--device cpu] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import fx, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import netsurgeon as ns  # noqa: E402
from benchmarks._common import environment, interleaved_medians  # noqa: E402
from netsurgeon.graph.scoped import ChildrenAsLeaves  # noqa: E402
from netsurgeon.graph.trace import trace  # noqa: E402
from netsurgeon.registry import get_pass  # noqa: E402
from netsurgeon.workspace import Workspace  # noqa: E402

MODELS = ["torchvision:resnet50", "torchvision:densenet121", "timm:resnet152d"]
STEPS = ("copy", "trace", "pass", "rewrites", "re-trace")


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _load(spec: str, device: torch.device) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ns.load_model(spec).to(device).eval()


def measure(spec: str, pass_name: str, device: torch.device, size: int, runs: int) -> dict[str, float]:
    model = _load(spec, device)
    x = torch.randn(2, 3, size, size, device=device)

    def bare() -> None:
        fx.symbolic_trace(model)

    def plan() -> None:
        ns.plan(model, pass_name, example_input=x)

    def apply() -> None:
        ns.apply(model, pass_name, example_input=x)

    return interleaved_medians({"bare": bare, "plan": plan, "apply": apply}, device, runs)


def plan_steps(spec: str, pass_name: str, device: torch.device, runs: int) -> dict[str, float]:
    """``plan``'s steps timed one after another in one run, as ``api.plan`` runs them; medians over runs."""
    model = _load(spec, device)
    pass_spec = get_pass(pass_name)
    x = torch.randn(2, 3, 64, 64, device=device)
    identity = _Identity()
    times: dict[str, list[float]] = {k: [] for k in (*STEPS, "bare", "floor")}
    blocks = 0
    for run in range(runs + 1):
        clock = time.perf_counter()
        fx.symbolic_trace(model)
        bare = time.perf_counter() - clock
        clock = time.perf_counter()
        for _ in range(5):  # back to back, as plan traces the blocks it rewrites
            ChildrenAsLeaves().trace(identity)
        floor = (time.perf_counter() - clock) / 5
        marks = [time.perf_counter()]
        working = Workspace.private_copy(model, share_tensors=not pass_spec.edits_weights)
        marks.append(time.perf_counter())
        ws = Workspace(working, trace(working, copy_model=False), probe=x)
        marks.append(time.perf_counter())
        with ws.running(pass_spec.name):
            pass_spec.fn(ws, pass_spec.config_cls())
            marks.append(time.perf_counter())
            scopes = ws.editor().apply()
        marks.append(time.perf_counter())
        trace(ws.model, copy_model=False)
        marks.append(time.perf_counter())
        if run == 0:
            continue  # warm-up
        blocks = sum(label != "root" for label in scopes)
        times["bare"].append(bare)
        times["floor"].append(floor)
        for name, start, end in zip(STEPS, marks, marks[1:], strict=False):
            times[name].append(end - start)
    out = {k: statistics.median(v) for k, v in times.items()}
    out["blocks"] = blocks
    return out


def _module_class_cost(runs: int = 21) -> tuple[int, float]:
    """How many nn.Module subclasses are loaded, and the median time of assigning a class attribute on
    nn.Module (what torch.fx's tracer does to patch ``__call__``/``__getattr__``; CPython invalidates
    the type cache of every subclass on each assignment)."""
    seen, todo = set(), [nn.Module]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    call, times = nn.Module.__call__, []
    for _ in range(runs):
        clock = time.perf_counter()
        nn.Module.__call__ = call
        times.append(time.perf_counter() - clock)
    return len(seen), statistics.median(times)


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
    print("| model | bare symbolic_trace (s) | plan (s) | plan / bare | apply (s) | apply / bare |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    steps = {}
    for spec in args.models:
        t = measure(spec, args.pass_name, device, args.size, args.runs)
        print(f"| {spec} | {t['bare']:.3f} | {t['plan']:.3f} | {t['plan'] / t['bare']:.2f}x "
              f"| {t['apply']:.3f} | {t['apply'] / t['bare']:.2f}x |", flush=True)
        steps[spec] = plan_steps(spec, args.pass_name, device, args.runs)
    subclasses, assignment = _module_class_cost()
    print(f"\nnn.Module subclasses loaded: {subclasses}; one class attribute assignment on nn.Module (fx makes "
          f"four per trace): {assignment * 1e3:.3f} ms")
    print("\nplan's steps, each / the bare trace of the same run (medians):\n")
    print("| model | " + " | ".join(STEPS) + " | sum | block rewrites | fx floor x traces |")
    print("| --- |" + " ---: |" * (len(STEPS) + 3))
    for spec, t in steps.items():
        ratios = [t[k] / t["bare"] for k in STEPS]
        traces = 2 + t["blocks"]
        floor = f"{traces:.0f} x {t['floor'] * 1e3:.2f} ms = {traces * t['floor'] / t['bare']:.2f}x"
        print(f"| {spec} | " + " | ".join(f"{r:.2f}x" for r in ratios) + f" | {sum(ratios):.2f}x | "
              f"{t['blocks']:.0f} | {floor} |")
    if args.profile:
        print(f"\nprofile of plan on {args.models[0]}:\n")
        print(profile(args.models[0], args.pass_name, args.top))


if __name__ == "__main__":
    main()
