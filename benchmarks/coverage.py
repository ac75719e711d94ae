"""The zoo coverage matrix: every registered pass, with its defaults, over every torchvision classifier and
one model per timm family; writes ``docs/coverage.md`` and ``docs/coverage.json``.

Models (the rule, written down):

* torchvision: every name ``torchvision.models.list_models(module=torchvision.models)`` returns (the
  classification models; detection, segmentation, video and quantized models live in submodules).
* timm: one model per *family*, a family being the timm module that registers the model (``resnet``,
  ``dla``, ``mobilenetv3``...; ``timm.list_modules()``). The representative is the model of the family
  with the fewest parameters (counted on the meta device, no weights) among those whose module tree holds
  an ``nn.ReLU``/``nn.ReLU6``; when none does (GELU transformers, or only functional ReLUs), the smallest
  model of the family. Models that cannot be built on the meta device are skipped by the rule.

Each model runs in its own child process (one at a time, one thread, a time limit each), with random
weights, at its smallest valid input: 64x64, or the model's native size when 64x64 does not run (ViT,
MaxViT, Inception). Each pass is applied with its defaults, a seeded probe batch of 2 and one batch of
(probe, labels) as data (gru-fc's GRU-FC-2L mode needs data). Per (model, pass) the row records: the
status (changed / n/a with the reason / error), the tracing rung, ReLU sites before -> after, the probe
check, ONNX parity (first changed pass of every 5th model) and the apply time over a bare
``torch.fx.symbolic_trace`` of the same model.

Results are cached per model in ``.coverage-cache/`` with a fingerprint of the netsurgeon sources; a
rerun only runs models without a result unless ``--rerun stale|failed|all``; ``--only`` picks models by
glob (``--only 'timm:dla*' --only 'torchvision:swin_*'``). ``--report`` rebuilds the pages from the cache.

    .venv/bin/python benchmarks/coverage.py                 # everything missing, then the pages
    .venv/bin/python benchmarks/coverage.py --rerun stale   # after a fix in netsurgeon
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from netsurgeon.testing.coverage import cache_path, load_rows, reason_category, seed_cache_from_page

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".coverage-cache"
DOCS = ROOT / "docs"
ONNX_EVERY = 5
TIME_LIMIT_S = 300
HEAD_PASSES = ("spinal-head", "gru-fc")


# ------------------------------------------------------------------ model lists
def torchvision_models() -> list[str]:
    import torchvision

    return [f"torchvision:{n}" for n in torchvision.models.list_models(module=torchvision.models)]


def _family_child() -> dict[str, dict[str, Any]]:
    """In a child: parameter counts and ReLU presence of every timm model, built on the meta device."""
    import timm
    import torch
    from torch import nn

    out: dict[str, dict[str, Any]] = {}
    for module in timm.list_modules():
        for name in timm.list_models(module=module):
            try:
                with torch.device("meta"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = timm.create_model(name)
            except Exception:  # noqa: BLE001 - the rule skips models that cannot be built without weights
                continue
            relu = any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in model.modules())
            out[name] = {"family": module, "params": sum(p.numel() for p in model.parameters()), "relu": relu}
    return out


def timm_families(refresh: bool = False) -> dict[str, str]:
    """family -> representative model (see the module docstring); the meta-device survey is cached."""
    path = CACHE / "timm_survey.json"
    if refresh or not path.exists():
        CACHE.mkdir(exist_ok=True)
        subprocess.run([sys.executable, __file__, "--survey-child", str(path)], check=True, cwd=ROOT)
    survey = json.loads(path.read_text())
    families: dict[str, str] = {}
    for family in sorted({v["family"] for v in survey.values()}):
        members = [(v["params"], n) for n, v in survey.items() if v["family"] == family]
        with_relu = [m for m in members if survey[m[1]]["relu"]]
        families[family] = min(with_relu or members)[1]
    return families


def all_models() -> list[tuple[str, str]]:
    """(spec, family) for every model of the matrix; torchvision models are their own family."""
    rows = [(spec, spec.split(":", 1)[1]) for spec in torchvision_models()]
    rows += [(f"timm:{name}", family) for family, name in timm_families().items()]
    return rows


# ------------------------------------------------------------------ one model (in a child process)
def fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "netsurgeon").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _first_line(text: str, limit: int = 240) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line[:limit]


def _input_size(model: Any, native: tuple[int, ...]) -> tuple[int, ...]:
    """64x64 when the model runs on it, else its native size."""
    import torch

    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, 64, 64))
        return (3, 64, 64)
    except Exception:  # noqa: BLE001 - any failure means 64x64 is not a valid input
        return tuple(native)


def _bare_trace(model: Any) -> tuple[float, str | None]:
    """Seconds for a plain ``torch.fx.symbolic_trace`` of a copy, and why it failed (None when it worked)."""
    from torch import fx

    best, failure = float("inf"), None
    for _ in range(2):  # the first trace of a process pays for warm-up; keep the faster
        candidate = copy.deepcopy(model).eval()
        start = time.perf_counter()
        try:
            fx.symbolic_trace(candidate)
        except Exception as err:  # noqa: BLE001
            failure = f"{type(err).__name__}: {_first_line(err, 160)}"
        best = min(best, time.perf_counter() - start)
    return best, failure


def _classifier(model: Any) -> dict[str, str] | None:
    get = getattr(model, "get_classifier", None)
    if get is None:
        return None
    from torch import nn

    layer = get()
    path = next((n for n, m in model.named_modules() if m is layer), "")
    fc = isinstance(layer, nn.Linear) or (isinstance(layer, nn.Conv2d) and set(layer.kernel_size) == {1})
    return {"path": path, "type": type(layer).__name__, "fc": fc}


def run_model(spec: str, onnx: bool) -> dict[str, Any]:
    """Every registered pass on one model; the row dict of the JSON."""
    import torch

    import netsurgeon as ns
    from netsurgeon.graph.index import GraphIndex
    from netsurgeon.graph.trace import trace
    from netsurgeon.models.info import get_info

    torch.set_num_threads(1)
    torch.manual_seed(0)
    row: dict[str, Any] = {"model": spec, "fingerprint": fingerprint(), "passes": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ns.load_model(spec)
    size = _input_size(model, get_info(model).input_size)
    row["input"] = "x".join(map(str, size[1:]))
    row["params"] = sum(p.numel() for p in model.parameters())
    bare_s, bare_failure = _bare_trace(model)
    traced = trace(model)
    row["rung"] = traced.rung.value
    row["fx_failure"] = bare_failure
    row["trace_failures"] = traced.failures
    row["bare_trace_s"] = bare_s
    row["classifier"] = _classifier(model)
    if traced.has_graph:
        index = GraphIndex(traced.gm)
        head = index.head()
        row["head"] = {"target": head.target, "kind": head.kind} if head else None
        row["relu_sites"] = len(index.sites(("ReLU",)))
        row["relu6_sites"] = len(index.sites(("ReLU6",)))
    x = torch.randn(2, *size, generator=torch.Generator().manual_seed(0))
    data = [(x, torch.tensor([0, 1]))]
    exported = False
    for spec_pass in ns.list_passes():
        name = spec_pass.name
        cell: dict[str, Any] = {}
        start = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = ns.apply(model, name, example_input=x, data=data)
            cell["apply_s"] = time.perf_counter() - start
            report = result.report
            passed = report.passes[0]
            noeffect = [w for w in caught if issubclass(w.category, ns.NoEffectWarning)]
            cell["status"] = "n/a" if noeffect else "changed"
            cell["changes"] = len(passed.changes)
            cell["notes"] = passed.notes
            if noeffect:
                cell["reason"] = "; ".join(passed.notes) or "no site in scope"
            cell["rung"] = report.rung
            cell["sites"] = [report.relu_sites_before, report.relu_sites_after]
            v = report.verification
            with torch.no_grad():
                scale = float(model.eval()(x).abs().max())
            cell["probe"] = {"ok": v.ok, "contract": v.contract, "max_abs_diff": v.max_abs_diff,
                             "rel_diff": v.max_abs_diff / max(scale, 1e-12), "state_unchanged": v.state_unchanged}
            if onnx and not exported and cell["status"] == "changed":
                exported = True
                with tempfile.TemporaryDirectory() as tmp:
                    try:
                        out = ns.export(result.model, tmp, formats=("onnx",), report=report, input_size=size)
                        cell["onnx"] = {"max_abs_diff": out.onnx_max_abs_diff, "tolerance": out.onnx_tolerance,
                                        "ok": out.onnx_max_abs_diff is not None
                                        and out.onnx_max_abs_diff <= out.onnx_tolerance}
                    except Exception as err:  # noqa: BLE001
                        cell["onnx"] = {"ok": False, "error": f"{type(err).__name__}: {_first_line(err)}"}
        except ns.NetsurgeonError as err:
            cell.update(status="n/a", reason=_first_line(err), apply_s=time.perf_counter() - start)
        except Exception as err:  # noqa: BLE001 - the matrix reports every failure
            cell.update(status="error", reason=f"{type(err).__name__}: {_first_line(err)}",
                        apply_s=time.perf_counter() - start)
        if "reason" in cell:
            cell["category"] = reason_category(cell["reason"])
        row["passes"][name] = cell
    return row


# ------------------------------------------------------------------ the driver
def _needs_run(spec: str, rerun: str, current: str) -> bool:
    path = cache_path(CACHE, spec)
    if rerun == "all" or not path.exists():
        return True
    row = json.loads(path.read_text())
    if rerun == "stale":
        return row.get("fingerprint") != current
    if rerun == "failed":
        return row.get("status") in ("timeout", "crashed") or any(
            c.get("status") == "error" for c in row.get("passes", {}).values())
    return False


def run_child(spec: str, onnx: bool, limit: float) -> None:
    path = cache_path(CACHE, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "--child", spec, "--json", str(path)] + (["--onnx"] if onnx else [])
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=limit, capture_output=True, text=True)
        failure = None if proc.returncode == 0 else ("crashed", _first_line(proc.stderr.strip().splitlines()[-1]
                                                                          if proc.stderr.strip() else "no output"))
    except subprocess.TimeoutExpired:
        failure = ("timeout", f"over the {limit:.0f} s limit")
    if failure is not None:
        path.write_text(json.dumps({"model": spec, "fingerprint": fingerprint(), "status": failure[0],
                                    "reason": failure[1], "passes": {}}, indent=1))
    print(f"{spec}: {failure[0] if failure else 'done'} in {time.perf_counter() - start:.1f} s", flush=True)


# ------------------------------------------------------------------ the pages
#: n/a cells whose reason was checked by hand against the model's code: (model, pass) -> why it is right
REVIEWED: dict[tuple[str, str], str] = {
    ("timm:crossvit_9_dagger_240", "erase-relu"): "its 4 ReLUs are in the conv patch-embed stems (stem excluded)",
    ("timm:crossvit_9_dagger_240", "proportional-relu"): "its 4 ReLUs are in the patch-embed stems (stem excluded)",
    ("timm:efficientformer_l1", "erase-relu"): "its 2 ReLUs are in the stem; the blocks use GELU",
    ("timm:efficientformer_l1", "proportional-relu"): "its 2 ReLUs are in the stem; the blocks use GELU",
    ("timm:fastvit_t8", "erase-relu"): "its one ReLU is inside the final conv's SE gate; the blocks use GELU",
    ("timm:fastvit_t8", "proportional-relu"): "its one ReLU is inside an SE gate; the blocks use GELU",
    ("timm:maxvit_rmlp_pico_rw_256", "erase-relu"): "its ReLUs are in the relative-position MLPs, off the data "
                                                    "path (like Swin-V2's position-bias MLP)",
    ("timm:test_nfnet", "erase-relu"): "its ReLUs are inside the attention gates (attn_last); the blocks use GELU",
    ("timm:repvit_m1", "erase-relu"): "its ReLUs are inside SE gates; the blocks use GELU",
    ("timm:rexnet_100", "erase-relu"): "its ReLUs are inside SE gates; the blocks use SiLU/ReLU6",
    ("timm:swiftformer_xs", "erase-relu"): "its 2 ReLUs are in the stem; the blocks use GELU",
    **{(f"torchvision:swin_v2_{v}", "erase-relu"): "its ReLUs are in the continuous position-bias MLP "
       "(attn.cpb_mlp), which works on constant coordinates, off the blocks' data path" for v in "tsb"},
    **{(f"timm:{m}", "erase-relu"): "its ReLUs are in the position-bias MLP, off the blocks' data path"
       for m in ("swinv2_tiny_window16_256", "swinv2_cr_tiny_224", "test_vit_relpos")},
    ("timm:visformer_tiny", "erase-relu"): "its one ReLU is in the stem; the blocks use GELU",
    ("timm:vit_tiny_r_s16_p8_224", "erase-relu"): "its one ReLU is in the ResNet stem of the hybrid patch embed",
    ("timm:volo_d1_224", "erase-relu"): "its 3 ReLUs are in the conv patch-embed stem; the blocks use GELU",
    ("timm:ese_vovnet19b_slim_dw", "proportional-relu"): "each owned ReLU follows the 2nd counted conv of a "
                                                         "separable conv pair, which the 2:1 rule keeps",
    ("timm:fasternet_t2", "proportional-relu"): "each block has one ReLU, after its 2nd of 3 counted convs, which "
                                                "the 2:1 rule with phase 0 keeps",
}


def _rightly_na(row: dict[str, Any], name: str, cell: dict[str, Any]) -> bool:
    """An n/a whose reason is structural and true of the model, or was reviewed by hand (REVIEWED)."""
    if (row["model"], name) in REVIEWED:
        return True
    category = cell.get("category")
    if category in ("no ReLU site in scope", "blocks end linearly", "blocks end with another activation",
                    "min_keep keeps every ReLU", "no counted conv owns a ReLU"):
        return True
    if category == "no FC head" and name in HEAD_PASSES:
        return not _has_fc_head(row)
    return False


def _has_fc_head(row: dict[str, Any]) -> bool:
    """Does the model have an FC or 1x1-conv-after-pooling head? timm says so through get_classifier
    (a Linear, or a 1x1 conv that the head finder placed after pooling); for the others the head finder."""
    cls = row.get("classifier")
    if cls is not None:  # timm: the layer get_classifier() names is a Linear or a (1x1) Conv2d
        return cls.get("fc", cls["type"] in ("Linear", "Conv2d"))
    return row.get("head") is not None


def summarize(rows: list[dict[str, Any]], passes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for library in ("torchvision", "timm"):
        lib_rows = [r for r in rows if r["model"].startswith(library + ":")]
        relu_rows = [r for r in lib_rows if r.get("relu_sites", 0) > 0]
        per_pass = {}
        for name in passes:
            cells = [(r, r["passes"].get(name, {"status": r.get("status", "missing")})) for r in lib_rows]
            changed = sum(c["status"] == "changed" for _, c in cells)
            na = sum(c["status"] == "n/a" for _, c in cells)
            ok = [c["status"] == "changed" or (c["status"] == "n/a" and _rightly_na(r, name, c)) for r, c in cells]
            right = sum(o for o, (r, _) in zip(ok, cells, strict=True) if r.get("relu_sites", 0) > 0)
            relu_changed = sum(r["passes"].get(name, {}).get("status") == "changed" for r in relu_rows)
            fc_rows = [r for r in relu_rows if _has_fc_head(r)]
            fc_changed = sum(r["passes"].get(name, {}).get("status") == "changed" for r in fc_rows)
            per_pass[name] = {"models": len(cells), "changed": changed, "n/a": na, "changed_or_rightly_na": sum(ok),
                              "error": len(cells) - changed - na, "relu_models": len(relu_rows),
                              "relu_changed_or_rightly_na": right, "relu_changed": relu_changed,
                              "relu_fc_head_models": len(fc_rows), "relu_fc_head_changed": fc_changed}
        out[library] = {"models": len(lib_rows), "relu_models": len(relu_rows),
                        "untraceable": [r["model"] for r in lib_rows if r.get("rung") == "module-tree"],
                        "needs_timm_leaves": [r["model"] for r in lib_rows if r.get("rung") == "fx+timm-leaves"],
                        "passes": per_pass}
    return out


def _cell_text(name: str, cell: dict[str, Any]) -> str:
    status = cell.get("status", "missing")
    if status == "changed":
        before, after = cell.get("sites", ["?", "?"])
        text = f"✔ {before}→{after}" if name not in HEAD_PASSES else f"✔ {cell.get('changes', '?')} layer(s)"
        probe = cell.get("probe", {})
        if probe and not probe.get("ok"):
            text += " (probe ✘)" if probe.get("rel_diff", 1) > 1e-5 else " (probe ≈)"
        if "onnx" in cell:
            text += " onnx✔" if cell["onnx"].get("ok") else " onnx✘"
        return text
    if status == "n/a":
        return f"– {cell.get('category', 'other')}"
    return f"✘ {status}"


def write_pages(rows: list[dict[str, Any]], passes: list[str], families: int) -> None:
    summary = summarize(rows, passes)
    DOCS.mkdir(exist_ok=True)
    (DOCS / "coverage.json").write_text(json.dumps({"passes": passes, "summary": summary, "rows": rows},
                                                   indent=1, sort_keys=True) + "\n")
    lines = ["# Coverage: every pass on the model zoo", "",
             "Generated by `benchmarks/coverage.py` (do not edit by hand; rerun it). Every registered pass with "
             "its defaults, on every torchvision classifier and one model per timm family (the family rule, "
             "the input sizes and the columns are described in the script's docstring), random weights, CPU. "
             "No GPU was available for this run. The JSON beside this page holds every figure.", "",
             "    .venv/bin/python benchmarks/coverage.py [--rerun stale] [--only 'timm:dla*']", "",
             "Cells: `✔ a→b` changed (ReLU sites before → after; pd-relu's ReLUs become PDReLU), `✔ n layer(s)` "
             "head passes, `(probe ≈)` the exact contract's absolute 1e-5 check failed but "
             "the relative difference is at float32 rounding (large random-init logits), `(probe ✘)` the "
             "probe check failed, `onnx✔/✘` ONNX parity (first changed pass of every 5th model), "
             "`– reason` not applicable, `✘` error.", "", "## Totals", ""]
    for library, s in summary.items():
        lines += [f"**{library}**: {s['models']} models, {s['relu_models']} with ReLU sites; "
                  f"fx cannot trace {len(s['untraceable'])}"
                  + (f" ({', '.join(s['untraceable'])})" if s["untraceable"] else "")
                  + f"; {len(s['needs_timm_leaves'])} need timm's leaf modules.", "",
                  "| pass | changed | n/a | error | all models: changed or rightly n/a | ReLU models: changed or "
                  "rightly n/a | ReLU models changed | ReLU models with FC head: changed |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, p in s["passes"].items():
            rate = p["relu_changed_or_rightly_na"] / max(p["relu_models"], 1)
            fc = (f"{p['relu_fc_head_changed']}/{p['relu_fc_head_models']}" if name in HEAD_PASSES else "")
            lines.append(f"| {name} | {p['changed']} | {p['n/a']} | {p['error']} | "
                         f"{p['changed_or_rightly_na']}/{p['models']} | "
                         f"{p['relu_changed_or_rightly_na']}/{p['relu_models']} ({rate:.0%}) | "
                         f"{p['relu_changed']}/{p['relu_models']} | {fc} |")
        lines.append("")
    current = fingerprint()
    fresh = sum(r.get("fingerprint") == current for r in rows)
    lines += [f"timm families surveyed: {families} (one model each). Rows computed with the current netsurgeon "
              f"sources: {fresh} of {len(rows)} (the others ran before the last source change; "
              "`--rerun stale` redoes them).", "", "## Matrix", "",
              "| model | family | input | rung | ReLU sites | head | apply / bare trace | "
              + " | ".join(passes) + " |", "| --- " * (7 + len(passes)) + "|"]
    for r in rows:
        cells = [_cell_text(p, r["passes"].get(p, {"status": r.get("status", "missing")})) for p in passes]
        times = [c["apply_s"] for c in r["passes"].values() if "apply_s" in c]
        ratio = f"{sorted(times)[len(times) // 2] / r['bare_trace_s']:.1f}x" if times and r.get("bare_trace_s") else ""
        head = r.get("head") or {}
        head_text = f"{head.get('target', '')} ({head.get('kind', '')})" if head else "—"
        rung = r.get("rung", r.get("status", "?"))
        lines.append(f"| {r['model']} | {r['family']} | {r.get('input', '')} | {rung} | {r.get('relu_sites', '')} | "
                     f"{head_text} | {ratio} | " + " | ".join(cells) + " |")
    lines += ["", "## Not applicable and failures, with their reason", ""]
    for r in rows:
        if r.get("status") in ("timeout", "crashed"):
            lines.append(f"* **{r['model']}**: {r['status']}: {r.get('reason', '')}")
        if r.get("fx_failure") and r.get("rung") != "fx":
            lines.append(f"* **{r['model']}** (tracing): plain fx fails ({r['fx_failure']}); rung used: "
                         f"{r.get('rung')}")
        for name, c in r.get("passes", {}).items():
            if (r["model"], name) in REVIEWED:
                lines.append(f"* **{r['model']}** {name}: n/a, reviewed: {REVIEWED[(r['model'], name)]}")
            elif c.get("status") == "error" or (c.get("status") == "n/a" and not _rightly_na(r, name, c)):
                lines.append(f"* **{r['model']}** {name}: {c['status']} ({c.get('category', '')}): "
                             f"{c.get('reason', '')}")
            elif c.get("status") == "changed" and not c.get("probe", {}).get("ok", True):
                p = c["probe"]
                lines.append(f"* **{r['model']}** {name}: probe check failed (max abs diff {p['max_abs_diff']:.3g}, "
                             f"relative {p['rel_diff']:.3g}, contract {p['contract']})")
    (DOCS / "coverage.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], help="glob over specs (repeatable)")
    parser.add_argument("--rerun", choices=("missing", "stale", "failed", "all"), default="missing")
    parser.add_argument("--report", action="store_true", help="only rebuild docs/coverage.md from the cache")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT_S, help="seconds per model")
    parser.add_argument("--list", action="store_true", help="print the models and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--onnx", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--survey-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.survey_child:
        Path(args.survey_child).write_text(json.dumps(_family_child(), indent=1))
        return
    if args.child:
        Path(args.json).write_text(json.dumps(run_model(args.child, args.onnx), indent=1, default=str))
        return
    import netsurgeon as ns

    models = all_models()
    passes = [p.name for p in ns.list_passes()]
    if args.list:
        print("\n".join(f"{spec} ({family})" for spec, family in models))
        return
    seeded = seed_cache_from_page(CACHE, DOCS)
    if seeded:
        print(f"seeded the cache with {seeded} rows from {DOCS / 'coverage.json'} (a fresh clone has no cache)")
    if not args.report:
        current = fingerprint()
        for i, (spec, _) in enumerate(models):
            if args.only and not any(fnmatch.fnmatchcase(spec, p) for p in args.only):
                continue
            if _needs_run(spec, args.rerun, current):
                run_child(spec, onnx=i % ONNX_EVERY == 0, limit=args.time_limit)
    families = sum(spec.startswith("timm:") for spec, _ in models)
    write_pages(load_rows(CACHE, models), passes, families)
    print(f"wrote {DOCS / 'coverage.md'} and {DOCS / 'coverage.json'}")


if __name__ == "__main__":
    main()
