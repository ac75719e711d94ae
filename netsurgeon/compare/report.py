"""The comparison's tables and picture, rebuilt from the finished jobs' records and predictions.

``summarize`` turns the jobs into one plain dict (what ``compare.json`` holds); ``write_report`` writes
``compare.md`` (the table and one verdict line per arm), ``compare.json``, ``compare.csv`` (one row per
job) and ``compare.png`` (a forest plot of the paired differences beside the test-accuracy curves, mean
over seeds with the spread shaded). Nothing in them depends on timing, so an interrupted and resumed
grid gives the same files as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import netsurgeon.compare.stats as stats
from netsurgeon.compare.job import finished_job, read_predictions
from netsurgeon.compare.spec import CompareSpec
from netsurgeon.train.schema import Key, top1_key

__all__ = ["EXPORTED", "METRICS", "REPORT_FILES", "format_table", "summarize", "verdict_lines", "write_report"]

#: final metrics summarised per arm, when the jobs report them (EMA: when fine-tuning keeps a weight EMA)
METRICS = ((Key.TEST_TOP1, "top-1"), (Key.TEST_TOP5, "top-5"), (Key.EMA_TEST_TOP1, "EMA top-1"),
           (Key.EMA_TEST_TOP5, "EMA top-5"))
#: the per-seed top-1 of the weights each job exported (raw or EMA): what the verdict and McNemar are about
EXPORTED = "exported_top1"
REPORT_FILES = ("compare.md", "compare.json", "compare.csv", "compare.png")


def exported_top1(record: dict[str, Any]) -> float:
    """A job's top-1 of the weights it exported and predicted with (``weights``: raw or ema; raw in older jobs)."""
    return record["final"][top1_key(record.get("weights", "raw"))]


def _complete_seeds(spec: CompareSpec, jobs: dict) -> list[int]:
    seeds = [s for s in spec.seeds if all(jobs[(a.slug, s)] is not None for a in spec.arms)]
    if spec.adaptive:  # looks are at seed counts: only the unbroken prefix counts
        prefix = []
        for s in spec.seeds:
            if s not in seeds:
                break
            prefix.append(s)
        return prefix
    return seeds


def _look(spec: CompareSpec, per_seed: dict[str, list[float]], seeds: list[int],
          level: float) -> dict[str, dict[str, Any]]:
    """The seed-level tests of every arm on the first ``len(seeds)`` seeds at ``level`` (Holm across arms)."""
    others = spec.arms[1:]
    n = len(seeds)
    control = per_seed[spec.arms[0].slug][:n]
    tests = {a.slug: stats.seed_test(per_seed[a.slug][:n], control, confidence=1 - level,
                                     level=level / max(1, len(others))) for a in others}
    adjusted = stats.holm([tests[a.slug].p_value for a in others]) if others else []
    out = {}
    for arm, p_holm in zip(others, adjusted, strict=True):
        word, decide = stats.verdict(tests[arm.slug], p_holm, level, spec.margin)
        out[arm.slug] = {"test": tests[arm.slug], "p_holm": p_holm, "verdict": word, "decide": decide, "seeds": n}
    return out


def summarize(spec: CompareSpec, out: Path) -> dict[str, Any]:
    """Statistics over every finished job (seeds missing in some arm are left out of the pairing).

    Fixed seeds: one look at every complete seed, at ``alpha``. Adaptive seeds: each planned look reached, in
    order, at ``alpha / looks``; an arm's verdict is the one of the first look that decided it."""
    jobs = {(arm.slug, seed): finished_job(spec, out, arm, seed) for arm, seed in spec.jobs()}
    seeds = _complete_seeds(spec, jobs)
    present = [key for key, _ in METRICS if seeds and all(
        jobs[(a.slug, s)]["final"].get(key) is not None for a in spec.arms for s in seeds)]
    control = spec.arms[0]
    correct = {}
    for arm in spec.arms:
        for seed in seeds:
            p = read_predictions(spec.job_dir(out, arm, seed))
            correct[(arm.slug, seed)] = [a == b for a, b in zip(p["label"], p["prediction"], strict=True)]
    exported = {arm.slug: [exported_top1(jobs[(arm.slug, s)]) for s in seeds] for arm in spec.arms}
    looks, level = spec.looks()
    done_looks = [n for n in looks if n <= len(seeds)] if spec.adaptive else ([len(seeds)] if seeds else [])
    decided: dict[str, tuple[str, int]] = {}
    final: dict[str, dict[str, Any]] = {}
    for n in done_looks:
        for slug, result in _look(spec, exported, seeds[:n], level).items():
            if slug in decided:
                continue
            final[slug] = result
            if result["verdict"] != stats.UNDECIDED:
                decided[slug] = (result["verdict"], n)
    if seeds and len(spec.arms) > 1 and not done_looks:  # adaptive, before the first look: interim figures only
        for slug, result in _look(spec, exported, seeds, level).items():
            final[slug] = {**result, "verdict": stats.UNDECIDED,
                           "decide": f"the first look at {looks[0]} seeds"}
    arms: list[dict[str, Any]] = []
    for arm in spec.arms:
        records = [jobs[(arm.slug, s)] for s in seeds]
        per_seed = {key: [r["final"][key] for r in records] for key in present}
        per_seed[EXPORTED] = exported[arm.slug]
        per_seed["top1_after_surgery"] = [r["top1_after_surgery"] for r in records]
        entry: dict[str, Any] = {
            "name": arm.name, "slug": arm.slug, "passes": arm.to_dict()["passes"], "seeds": seeds,
            "weights": [r.get("weights", "raw") for r in records], "per_seed": per_seed,
            "mean": {k: stats.mean_std(v)[0] for k, v in per_seed.items() if v},
            "std": {k: stats.mean_std(v)[1] for k, v in per_seed.items() if v},
            "sweep": arm.to_dict().get("sweep"),  # {parameter, value} for an arm a sweep expanded into
            "sites_changed": records[0]["sites_changed"] if records else None,
            "params_delta": records[0]["params_delta"] if records else None,
        }
        if arm is not control and arm.slug in final:
            result = final[arm.slug]
            n = result["seeds"]
            entry["paired"] = {"metric": "top-1 of the exported weights (points)", "seeds": seeds[:n],
                               **result["test"].to_dict(), "p_holm": result["p_holm"]}
            tests = [stats.mcnemar(correct[(control.slug, s)], correct[(arm.slug, s)]) for s in seeds]
            entry["mcnemar"] = {"per_seed": [{"seed": s, **_counts(t)} for s, t in zip(seeds, tests, strict=True)]}
            entry["verdict"], entry["decide"] = result["verdict"], result["decide"]
            if spec.adaptive and arm.slug in decided:
                entry["decided_at"] = decided[arm.slug][1]
        arms.append(entry)
    warnings_ = []
    if not spec.adaptive:
        warning = stats.seed_warning(len(spec.seeds), len(spec.arms) - 1, spec.alpha)
        if warning:
            warnings_.append(warning)
    design = {"kind": "adaptive" if spec.adaptive else "fixed", "looks": list(looks), "level_per_look": level,
              "looks_done": done_looks, "max_seeds": spec.max_seeds,
              "procedure": "Bonferroni split of alpha over the planned looks; Holm across arms in each look"
              if spec.adaptive else "one look; Holm across arms"}
    if spec.adaptive:
        others = [a.slug for a in spec.arms[1:]]
        design["stopped"] = ("every arm decided" if others and all(s in decided for s in others)
                             else "max seeds reached" if done_looks and done_looks[-1] == looks[-1] else None)
    test_images = len(next(iter(correct.values()))) if correct else 0
    return {"spec": spec.to_dict(), "complete_seeds": seeds, "metrics": present, "test_images": test_images,
            "alpha": spec.alpha, "margin": spec.margin, "design": design, "warnings": warnings_, "arms": arms,
            "curves": _curves(spec, jobs, seeds)}


def all_decided(summary: dict[str, Any]) -> bool:
    """Whether every arm has a verdict other than undecided (adaptive seeds stop then)."""
    others = [a for a in summary["arms"] if "verdict" in a]
    return bool(others) and len(others) == len(summary["arms"]) - 1 and all(
        a["verdict"] != stats.UNDECIDED for a in others)


def _counts(t: stats.McNemar) -> dict[str, Any]:
    return {"control_only": t.control_only, "arm_only": t.arm_only, "p_value": t.p_value}


def _curves(spec: CompareSpec, jobs: dict, seeds: list[int]) -> dict[str, dict[str, list[float]]]:
    """Per arm: the epochs and, per epoch, the mean and standard deviation over seeds of test top-1."""
    curves = {}
    for arm in spec.arms:
        rows = [[r for r in jobs[(arm.slug, s)]["metrics"] if r.get(Key.TEST_TOP1) is not None] for s in seeds]
        if not rows or not rows[0]:
            continue
        epochs = [r[Key.EPOCH] for r in rows[0]]
        by_epoch = [[rs[i][Key.TEST_TOP1] for rs in rows] for i in range(len(epochs))]
        curves[arm.slug] = {Key.EPOCH: epochs, "mean": [stats.mean_std(v)[0] for v in by_epoch],
                            "std": [stats.mean_std(v)[1] for v in by_epoch]}
    return curves


def _pm(mean: float, std: float, signed: bool = False) -> str:
    return f"{mean:+.2f} ± {std:.2f}" if signed else f"{mean:.2f} ± {std:.2f}"


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _weights_label(weights: list[str]) -> str:
    kinds = sorted(set(weights))
    if len(kinds) == 1:
        return "EMA" if kinds[0] == "ema" else "raw"
    return ", ".join(f"{'EMA' if k == 'ema' else 'raw'} {weights.count(k)}" for k in kinds)


def _ci(paired: dict[str, Any]) -> str:
    ci = paired["interval"]
    return f" [{ci['low']:+.2f}, {ci['high']:+.2f}]" if ci else ""


def _win(paired: dict[str, Any]) -> str:
    w = paired["win"]
    return "-" if w["estimate"] is None else f"{w['estimate']:.2f} [{w['low']:.2f}, {w['high']:.2f}]"


def _uses_ema(summary: dict[str, Any]) -> bool:
    return any(w == "ema" for arm in summary["arms"] for w in arm["weights"])


def format_table(summary: dict[str, Any]) -> str:
    """The Markdown table: per arm the metrics (mean ± sd over seeds), which weights the jobs exported (with EMA
    on), the paired difference of the exported weights' top-1 with its bootstrap interval, the exact sign-flip p
    (raw, Holm), how often the arm beats the control on a seed, and the verdict."""
    metrics = [(k, label) for k, label in METRICS if k in summary["metrics"]]
    ema = _uses_ema(summary)
    head = ["arm", "sites", *(["weights", "exported top-1 (%)"] if ema else []),
            *(f"{label} (%)" for _, label in metrics), "Δ top-1 vs control [CI]", "sign-flip p (Holm)",
            "P(beats control) [CI]", "verdict"]
    lines = ["| " + " | ".join(head) + " |",
             "| --- | ---: | " + ("--- | ---: | " if ema else "") + "---: | " * (len(metrics) + 3) + "--- |"]
    for arm in summary["arms"]:
        cells = [arm["name"], str(arm["sites_changed"] if arm["sites_changed"] is not None else "-")]
        if ema:
            cells += [_weights_label(arm["weights"]),
                      _pm(arm["mean"][EXPORTED], arm["std"][EXPORTED]) if EXPORTED in arm["mean"] else "-"]
        cells += [_pm(arm["mean"][k], arm["std"][k]) if k in arm["mean"] else "-" for k, _ in metrics]
        if "paired" in arm:
            pt = arm["paired"]
            cells += [f"{pt['mean']:+.2f}{_ci(pt)}", f"{_p(pt['p_value'])} ({_p(pt['p_holm'])})", _win(pt),
                      arm["verdict"]]
        else:
            cells += ["-", "-", "-", "control"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def power_line(arm: dict[str, Any]) -> str:
    """What this many seeds could detect at the observed spread, and what a decision would need."""
    pt = arm["paired"]
    pw, n = pt["power"], len(pt["differences"])
    if pw["spread"] is None:
        return "power: one seed gives no spread; run more seeds"
    if pw["min_detectable"] is None or math.isinf(pw["min_detectable"]):
        text = (f"power: {n} seeds cannot detect any difference at level {pw['level']:.3g} (the exact test needs "
                f"{stats.seeds_to_reach(pw['level'])})")
    else:
        text = (f"power: the smallest difference {n} seeds detect with {stats.POWER:.0%} power at the observed spread "
                f"(sd {pw['spread']:.2f}) is {pw['min_detectable']:.2f} points")
    if pw["seeds_needed"] is not None:
        text += f"; a decision on {pt['mean']:+.2f} would need about {pw['seeds_needed']} seeds"
    elif pt["mean"] == 0:
        text += "; the observed difference is 0"
    return text


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    out = []
    for arm in summary["arms"]:
        if "verdict" not in arm:
            continue
        pt = arm["paired"]
        ci = pt["interval"]
        ci_text = (f", {ci['confidence']:.1%} {ci['method']} CI [{ci['low']:+.2f}, {ci['high']:+.2f}]".replace(
            ".0%", "%") if ci else "")
        w = pt["win"]
        win = (f"beats the control on {w['wins']} of {w['seeds'] - w['ties']} seeds"
               + (f" ({w['ties']} ties)" if w["ties"] else ""))
        mcnemar = ", ".join(_p(t["p_value"]) for t in arm["mcnemar"]["per_seed"])
        weights = _weights_label(arm["weights"])
        decided = f" at {arm['decided_at']} seeds" if "decided_at" in arm else ""
        decide = f"; would decide it: {arm['decide']}" if arm.get("decide") else ""
        out.append(f"- **{arm['name']}**: {arm['verdict']}{decided} (top-1 of the exported {weights} weights "
                   f"{pt['mean']:+.2f} points vs control over {len(pt['differences'])} seeds{ci_text}; exact "
                   f"sign-flip p = {_p(pt['p_value'])}, Holm {_p(pt['p_holm'])}; {win}; {power_line(arm)}; "
                   f"McNemar per seed (per-image diagnostic) p = {mcnemar}{decide})")
    return out


def _model_label(model: str) -> str:
    """A model name as given; an artifact by its directory's name (its full path is in compare.json)."""
    return f"the artifact {Path(model).name}" if model.startswith("/") else model


def _design_text(summary: dict[str, Any]) -> str:
    d = summary["design"]
    if d["kind"] == "fixed":
        return ""
    stopped = f"; stopped: {d['stopped']}" if d["stopped"] else "; not finished"
    return (f" Adaptive seeds (at most {d['max_seeds']}): looks at {d['looks']} seeds, each at level "
            f"{d['level_per_look']:.3g} (alpha split over the looks, Bonferroni), looks done {d['looks_done']}"
            f"{stopped}.")


def _markdown(summary: dict[str, Any]) -> str:
    spec = summary["spec"]
    tune = spec["finetune"]
    limit = tune.get("limit_train_batches")
    budget = f"{tune['epochs']} epochs of batch {tune['batch_size']}" + (
        f", at most {limit} batches per epoch" if limit else "")
    seeds = summary["complete_seeds"]
    missing = [s for s in spec["seeds"] if s not in seeds]
    weights = ("the EMA or raw weights each job exported (column weights; ema_export)" if _uses_ema(summary)
               else "the raw weights (no EMA)")
    margin = (f"; equivalent: the interval inside ±{summary['margin']:g} points" if summary["margin"] is not None
              else "; no equivalence margin (--margin)")
    lines = [f"# netsurgeon compare: {_model_label(spec['model'])} on {spec['data']}", "",
             f"Every arm fine-tuned from the same start for {budget}; seeds {seeds}"
             + (f" (not run: {missing})" if missing else "")
             + f"; {summary['test_images']} test images; mean ± standard deviation over seeds. "
             f"The verdict is about the top-1 of {weights}, paired by seed (the seed is the unit): Δ with a bootstrap "
             f"interval, the exact sign-flip permutation p over seeds, Holm-corrected across "
             f"{max(0, len(summary['arms']) - 1)} arms (alpha {summary['alpha']}){margin}. McNemar on the same "
             "weights' per-image predictions is a per-seed diagnostic, not part of the verdict. "
             "docs/statistics.md explains each number." + _design_text(summary), ""]
    lines += [f"**Warning**: {w}" for w in summary["warnings"]]
    lines += ["", format_table(summary), "", *verdict_lines(summary), ""]
    return "\n".join(lines)


def _csv(summary: dict[str, Any]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    metrics = summary["metrics"]
    writer.writerow(["arm", "seed", "weights", *metrics, EXPORTED, "top1_after_surgery", "diff_exported_top1",
                     "mcnemar_control_only", "mcnemar_arm_only", "mcnemar_p"])
    for arm in summary["arms"]:
        tests = {t["seed"]: t for t in arm.get("mcnemar", {}).get("per_seed", [])}
        paired = arm.get("paired", {})
        diffs = dict(zip(paired.get("seeds", []), paired.get("differences", []), strict=True))
        for i, seed in enumerate(arm["seeds"]):
            t = tests.get(seed, {})
            writer.writerow([arm["name"], seed, arm["weights"][i], *(arm["per_seed"][k][i] for k in metrics),
                             arm["per_seed"][EXPORTED][i], arm["per_seed"]["top1_after_surgery"][i],
                             diffs.get(seed, ""), t.get("control_only", ""), t.get("arm_only", ""),
                             t.get("p_value", "")])
    return text.getvalue()


def _plot(summary: dict[str, Any], temp: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = summary["arms"]
    others = [a for a in arms if "paired" in a]
    swept = [a for a in others if a.get("sweep")]
    fig, axes = plt.subplots(1, 3 if swept else 2, figsize=(16 if swept else 11, max(3.5, 0.5 * len(arms) + 2.5)))
    ax_forest, ax_curves = axes[0], axes[1]
    if swept:
        _plot_sweeps(axes[2], swept)
    for y, arm in enumerate(reversed(others)):
        pt = arm["paired"]
        low, high = (pt["interval"]["low"], pt["interval"]["high"]) if pt["interval"] else (None, None)
        color = {stats.BETTER: "tab:green", stats.WORSE: "tab:red"}.get(arm["verdict"], "tab:gray")
        if low is not None:
            ax_forest.errorbar(pt["mean"], y, xerr=[[pt["mean"] - low], [high - pt["mean"]]], fmt="o", color=color,
                               capsize=4)
        else:
            ax_forest.plot(pt["mean"], y, "o", color=color)
        ax_forest.plot(pt["differences"], [y] * len(pt["differences"]), "x", color=color, alpha=0.5)
    ax_forest.axvline(0, color="black", lw=0.8)
    ax_forest.set_ylim(-0.7, max(len(others), 1) - 0.3)
    ax_forest.set_yticks(range(len(others)), [a["name"] for a in reversed(others)])
    ax_forest.set(xlabel="top-1 difference vs control (points; x: one seed)", title="paired difference, bootstrap CI")
    ax_forest.grid(alpha=0.3, axis="x")
    styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]
    for i, arm in enumerate(arms):
        curve = summary["curves"].get(arm["slug"])
        if not curve:
            continue
        mean, std = curve["mean"], curve["std"]
        style, marker = styles[i % len(styles)]
        (line,) = ax_curves.plot(curve[Key.EPOCH], mean, linestyle=style, marker=marker, label=arm["name"])
        ax_curves.fill_between(curve[Key.EPOCH], [m - s for m, s in zip(mean, std, strict=True)],
                               [m + s for m, s in zip(mean, std, strict=True)], color=line.get_color(), alpha=0.2)
    ax_curves.set(xlabel="epoch (0: before fine-tuning)", ylabel="test top-1 (%)",
                  title=f"test accuracy, mean ± sd over {len(summary['complete_seeds'])} seeds")
    ax_curves.grid(alpha=0.3)
    ax_curves.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    ax_curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{_model_label(summary['spec']['model'])} on {summary['spec']['data']}")
    fig.tight_layout()
    fig.savefig(temp, format="png", dpi=100)
    plt.close(fig)


def _plot_sweeps(ax: Any, swept: list[dict[str, Any]]) -> None:
    """The paired top-1 difference (mean, 95% CI, each seed) against the swept value, one line per parameter."""
    parameters = list(dict.fromkeys(a["sweep"]["parameter"] for a in swept))
    for parameter in parameters:
        arms = [a for a in swept if a["sweep"]["parameter"] == parameter]
        values = [a["sweep"]["value"] for a in arms]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        xs = values if numeric else list(range(len(values)))
        means = [a["paired"]["mean"] for a in arms]
        (line,) = ax.plot(xs, means, "o-", label=parameter)
        for x, arm in zip(xs, arms, strict=True):
            pt = arm["paired"]
            if pt["interval"]:
                low, high = pt["interval"]["low"], pt["interval"]["high"]
                ax.errorbar(x, pt["mean"], yerr=[[pt["mean"] - low], [high - pt["mean"]]], color=line.get_color(),
                            capsize=4)
            ax.plot([x] * len(pt["differences"]), pt["differences"], "x", color=line.get_color(), alpha=0.5)
        if not numeric:
            ax.set_xticks(xs, [str(v) for v in values])
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel=" / ".join(parameters), ylabel="top-1 difference vs control (points)",
           title="sweep: paired difference and its interval")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def write_report(spec: CompareSpec, out: Path) -> tuple[dict[str, Any], list[Path]]:
    """Rebuild and write the four report files atomically; returns the summary and their paths."""
    from netsurgeon.atomic import staged_files

    summary = summarize(spec, out)
    finals = [out / name for name in REPORT_FILES]
    with staged_files(finals) as (md, js, cs, png):
        md.write_text(_markdown(summary))
        js.write_text(json.dumps(summary, indent=1) + "\n")
        cs.write_text(_csv(summary))
        _plot(summary, png)
    return summary, finals
