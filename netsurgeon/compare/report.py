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
from pathlib import Path
from typing import Any

import netsurgeon.compare.stats as stats
from netsurgeon.compare.job import read_job, read_predictions
from netsurgeon.compare.spec import CompareSpec

__all__ = ["METRICS", "REPORT_FILES", "format_table", "summarize", "write_report"]

#: final metrics summarised per arm, when the jobs report them (EMA: when fine-tuning keeps an EMA)
METRICS = (("test_top1", "top-1"), ("test_top5", "top-5"), ("test_ema_top1", "EMA top-1"))
REPORT_FILES = ("compare.md", "compare.json", "compare.csv", "compare.png")


def summarize(spec: CompareSpec, out: Path) -> dict[str, Any]:
    """Statistics over every finished job (seeds missing in some arm are left out of the pairing)."""
    jobs = {(arm.slug, seed): read_job(spec.job_dir(out, arm, seed)) for arm, seed in spec.jobs()}
    seeds = [s for s in spec.seeds if all(jobs[(a.slug, s)] is not None for a in spec.arms)]
    present = [key for key, _ in METRICS if seeds and all(
        jobs[(a.slug, s)]["final"].get(key) is not None for a in spec.arms for s in seeds)]
    control = spec.arms[0]
    correct = {}
    for arm in spec.arms:
        for seed in seeds:
            p = read_predictions(spec.job_dir(out, arm, seed))
            correct[(arm.slug, seed)] = [a == b for a, b in zip(p["label"], p["prediction"], strict=True)]
    arms: list[dict[str, Any]] = []
    for arm in spec.arms:
        records = [jobs[(arm.slug, s)] for s in seeds]
        per_seed = {key: [r["final"][key] for r in records] for key in present}
        per_seed["top1_after_surgery"] = [r["top1_after_surgery"] for r in records]
        entry: dict[str, Any] = {
            "name": arm.name, "slug": arm.slug, "passes": arm.to_dict()["passes"], "seeds": seeds,
            "per_seed": per_seed,
            "mean": {k: stats.mean_std(v)[0] for k, v in per_seed.items() if v},
            "std": {k: stats.mean_std(v)[1] for k, v in per_seed.items() if v},
            "sweep": arm.to_dict().get("sweep"),  # {parameter, value} for an arm a sweep expanded into
            "sites_changed": records[0]["sites_changed"] if records else None,
            "params_delta": records[0]["params_delta"] if records else None,
        }
        if arm is not control and seeds:
            paired = stats.paired_difference(per_seed["test_top1"], [jobs[(control.slug, s)]["final"]["test_top1"]
                                                                     for s in seeds])
            tests = [stats.mcnemar(correct[(control.slug, s)], correct[(arm.slug, s)]) for s in seeds]
            pooled = stats.from_counts(sum(t.control_only for t in tests), sum(t.arm_only for t in tests))
            entry["paired_top1"] = {"differences": list(paired.differences), "mean": paired.mean, "std": paired.std,
                                    "ci95": [paired.low, paired.high]}
            entry["mcnemar"] = {"per_seed": [{"seed": s, **_counts(t)} for s, t in zip(seeds, tests, strict=True)],
                                "pooled": _counts(pooled)}
        arms.append(entry)
    others = [a for a in arms if "mcnemar" in a]
    for entry, adjusted in zip(others, stats.holm([a["mcnemar"]["pooled"]["p_value"] for a in others]),
                               strict=True):
        entry["mcnemar"]["pooled"]["p_holm"] = adjusted
        pt = entry["paired_top1"]
        paired = stats.Paired(tuple(pt["differences"]), pt["mean"], pt["std"], *pt["ci95"])
        entry["verdict"] = stats.verdict(paired, adjusted, spec.alpha)
    test_images = len(next(iter(correct.values()))) if correct else 0
    return {"spec": spec.to_dict(), "complete_seeds": seeds, "metrics": present, "test_images": test_images,
            "alpha": spec.alpha, "arms": arms, "curves": _curves(spec, jobs, seeds)}


def _counts(t: stats.McNemar) -> dict[str, Any]:
    return {"control_only": t.control_only, "arm_only": t.arm_only, "p_value": t.p_value}


def _curves(spec: CompareSpec, jobs: dict, seeds: list[int]) -> dict[str, dict[str, list[float]]]:
    """Per arm: the epochs and, per epoch, the mean and standard deviation over seeds of test top-1."""
    curves = {}
    for arm in spec.arms:
        rows = [[r for r in jobs[(arm.slug, s)]["metrics"] if r.get("test_top1") is not None] for s in seeds]
        if not rows or not rows[0]:
            continue
        epochs = [r["epoch"] for r in rows[0]]
        by_epoch = [[rs[i]["test_top1"] for rs in rows] for i in range(len(epochs))]
        curves[arm.slug] = {"epoch": epochs, "mean": [stats.mean_std(v)[0] for v in by_epoch],
                            "std": [stats.mean_std(v)[1] for v in by_epoch]}
    return curves


def _pm(mean: float, std: float, signed: bool = False) -> str:
    return f"{mean:+.2f} ± {std:.2f}" if signed else f"{mean:.2f} ± {std:.2f}"


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def format_table(summary: dict[str, Any]) -> str:
    """The Markdown table: per arm the metrics (mean ± sd over seeds), the paired difference in top-1 with
    its 95% interval, the pooled McNemar p-value (raw, Holm) and the verdict."""
    metrics = [(k, label) for k, label in METRICS if k in summary["metrics"]]
    head = ["arm", "sites", *(f"{label} (%)" for _, label in metrics), "Δ top-1 vs control [95% CI]",
            "McNemar p (Holm)", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "| --- | ---: | " + "---: | " * (len(metrics) + 2) + "--- |"]
    for arm in summary["arms"]:
        cells = [arm["name"], str(arm["sites_changed"] if arm["sites_changed"] is not None else "-")]
        cells += [_pm(arm["mean"][k], arm["std"][k]) if k in arm["mean"] else "-" for k, _ in metrics]
        if "paired_top1" in arm:
            pt, pooled = arm["paired_top1"], arm["mcnemar"]["pooled"]
            ci = f" [{pt['ci95'][0]:+.2f}, {pt['ci95'][1]:+.2f}]" if pt["ci95"][0] is not None else ""
            cells += [f"{pt['mean']:+.2f}{ci}", f"{_p(pooled['p_value'])} ({_p(pooled['p_holm'])})", arm["verdict"]]
        else:
            cells += ["-", "-", "control"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    out = []
    for arm in summary["arms"]:
        if "verdict" not in arm:
            continue
        pt, pooled = arm["paired_top1"], arm["mcnemar"]["pooled"]
        ci = f", 95% CI [{pt['ci95'][0]:+.2f}, {pt['ci95'][1]:+.2f}]" if pt["ci95"][0] is not None else ""
        out.append(f"- **{arm['name']}**: {arm['verdict']} (top-1 {pt['mean']:+.2f} points vs control{ci}; "
                   f"{pooled['arm_only']} images only it gets right, {pooled['control_only']} only the control; "
                   f"McNemar p = {_p(pooled['p_value'])}, Holm {_p(pooled['p_holm'])})")
    return out


def _model_label(model: str) -> str:
    """A model name as given; an artifact by its directory's name (its full path is in compare.json)."""
    return f"the artifact {Path(model).name}" if model.startswith("/") else model


def _markdown(summary: dict[str, Any]) -> str:
    spec = summary["spec"]
    tune = spec["finetune"]
    limit = tune.get("limit_train_batches")
    budget = f"{tune['epochs']} epochs of batch {tune['batch_size']}" + (
        f", at most {limit} batches per epoch" if limit else "")
    seeds = summary["complete_seeds"]
    missing = [s for s in spec["seeds"] if s not in seeds]
    lines = [f"# netsurgeon compare: {_model_label(spec['model'])} on {spec['data']}", "",
             f"Every arm fine-tuned from the same start for {budget}; seeds {seeds}"
             + (f" (not finished: {missing})" if missing else "")
             + f"; {summary['test_images']} test images; mean ± standard deviation over seeds; Δ is paired by seed; "
             f"McNemar is exact, pooled over seeds, Holm-corrected across {max(0, len(summary['arms']) - 1)} arms "
             f"(alpha {summary['alpha']}).", "", format_table(summary), "", *verdict_lines(summary), ""]
    return "\n".join(lines)


def _csv(summary: dict[str, Any]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    metrics = summary["metrics"]
    writer.writerow(["arm", "seed", *metrics, "top1_after_surgery", "diff_top1_vs_control", "mcnemar_control_only",
                     "mcnemar_arm_only", "mcnemar_p"])
    for arm in summary["arms"]:
        tests = {t["seed"]: t for t in arm.get("mcnemar", {}).get("per_seed", [])}
        diffs = arm.get("paired_top1", {}).get("differences", [])
        for i, seed in enumerate(arm["seeds"]):
            t = tests.get(seed, {})
            writer.writerow([arm["name"], seed, *(arm["per_seed"][k][i] for k in metrics),
                             arm["per_seed"]["top1_after_surgery"][i], diffs[i] if diffs else "",
                             t.get("control_only", ""), t.get("arm_only", ""), t.get("p_value", "")])
    return text.getvalue()


def _plot(summary: dict[str, Any], temp: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = summary["arms"]
    others = [a for a in arms if "paired_top1" in a]
    swept = [a for a in others if a.get("sweep")]
    fig, axes = plt.subplots(1, 3 if swept else 2, figsize=(16 if swept else 11, max(3.5, 0.5 * len(arms) + 2.5)))
    ax_forest, ax_curves = axes[0], axes[1]
    if swept:
        _plot_sweeps(axes[2], swept)
    for y, arm in enumerate(reversed(others)):
        pt = arm["paired_top1"]
        low, high = pt["ci95"]
        color = {"better": "tab:green", "worse": "tab:red"}.get(arm["verdict"], "tab:gray")
        if low is not None:
            ax_forest.errorbar(pt["mean"], y, xerr=[[pt["mean"] - low], [high - pt["mean"]]], fmt="o", color=color,
                               capsize=4)
        else:
            ax_forest.plot(pt["mean"], y, "o", color=color)
        ax_forest.plot(pt["differences"], [y] * len(pt["differences"]), "x", color=color, alpha=0.5)
    ax_forest.axvline(0, color="black", lw=0.8)
    ax_forest.set_ylim(-0.7, max(len(others), 1) - 0.3)
    ax_forest.set_yticks(range(len(others)), [a["name"] for a in reversed(others)])
    ax_forest.set(xlabel="top-1 difference vs control (points; x: one seed)", title="paired difference, 95% CI")
    ax_forest.grid(alpha=0.3, axis="x")
    styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]
    for i, arm in enumerate(arms):
        curve = summary["curves"].get(arm["slug"])
        if not curve:
            continue
        mean, std = curve["mean"], curve["std"]
        style, marker = styles[i % len(styles)]
        (line,) = ax_curves.plot(curve["epoch"], mean, linestyle=style, marker=marker, label=arm["name"])
        ax_curves.fill_between(curve["epoch"], [m - s for m, s in zip(mean, std, strict=True)],
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
        means = [a["paired_top1"]["mean"] for a in arms]
        (line,) = ax.plot(xs, means, "o-", label=parameter)
        for x, arm in zip(xs, arms, strict=True):
            pt = arm["paired_top1"]
            if pt["ci95"][0] is not None:
                ax.errorbar(x, pt["mean"], yerr=[[pt["mean"] - pt["ci95"][0]], [pt["ci95"][1] - pt["mean"]]],
                            color=line.get_color(), capsize=4)
            ax.plot([x] * len(pt["differences"]), pt["differences"], "x", color=line.get_color(), alpha=0.5)
        if not numeric:
            ax.set_xticks(xs, [str(v) for v in values])
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel=" / ".join(parameters), ylabel="top-1 difference vs control (points)",
           title="sweep: paired difference, 95% CI")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def write_report(spec: CompareSpec, out: Path) -> tuple[dict[str, Any], list[Path]]:
    """Rebuild and write the four report files atomically; returns the summary and their paths."""
    from netsurgeon.export.atomic import staged_files

    summary = summarize(spec, out)
    finals = [out / name for name in REPORT_FILES]
    with staged_files(finals) as (md, js, cs, png):
        md.write_text(_markdown(summary))
        js.write_text(json.dumps(summary, indent=1) + "\n")
        cs.write_text(_csv(summary))
        _plot(summary, png)
    return summary, finals
