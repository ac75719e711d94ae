"""The papers' comparison at small scale on Fashion-MNIST, over several seeds.

For each seed: train a baseline (torchvision resnet18 at 32x32, from scratch), then give the control
("fine-tune only") and each of the five passes the same fine-tuning budget (``netsurgeon.demo``'s
procedure). Prints, and writes to ``docs/replication.md`` with ``--write``, the mean and the standard
deviation over seeds of the test top-1 right after surgery and after fine-tuning, and the difference
to the control. Honest numbers: a pass helped only where its fine-tuned accuracy beats the control's
by more than the spread.

    python benchmarks/replicate.py                      # 3 seeds, Fashion-MNIST from Debian's package
    python benchmarks/replicate.py --data fashion-mnist:DIR --seeds 0 1 2 3 4 --write
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import environment  # noqa: E402

from netsurgeon.demo import run_demo  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--baseline-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-batches", type=int, default=50, help="batches of 64 per epoch")
    parser.add_argument("--eval-batches", type=int, default=40, help="test batches of 64 (None: all)")
    parser.add_argument("--write", action="store_true", help="write the table to docs/replication.md")
    args = parser.parse_args()
    started = time.perf_counter()
    per_variant: dict[str, list] = {}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as out:
            result = run_demo(args.data, out, baseline_epochs=args.baseline_epochs, epochs=args.epochs,
                              limit_train_batches=args.train_batches, limit_eval_batches=args.eval_batches,
                              seed=seed, progress=False)
        for row in result.rows:
            per_variant.setdefault(row.variant, []).append(row)
        print(f"seed {seed} done ({result.seconds:.0f} s)", file=sys.stderr, flush=True)
    control = [r.top1_finetuned for r in per_variant["fine-tune only"]]
    lines = [
        f"Fashion-MNIST, torchvision resnet18 at 32x32 trained from scratch for {args.baseline_epochs} epochs of "
        f"{args.train_batches} batches of 64, then {args.epochs} fine-tuning epochs per variant; test top-1 (%) "
        f"on {args.eval_batches * 64 if args.eval_batches else 'all'} test images; mean ± standard deviation over "
        f"seeds {args.seeds}. {environment(torch.device('cpu'))}; {time.perf_counter() - started:.0f} s in all.",
        "",
        "| variant | baseline | right after surgery | after fine-tuning | vs fine-tune only (paired) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for variant, rows in per_variant.items():
        base = [r.top1_baseline for r in rows]
        after = [r.top1_after_surgery for r in rows]
        tuned = [r.top1_finetuned for r in rows]
        delta = [t - c for t, c in zip(tuned, control, strict=True)]
        lines.append(f"| {variant} | {_ms(base)} | {_ms(after)} | {_ms(tuned)} | "
                     f"{'-' if variant == 'fine-tune only' else _ms(delta, signed=True)} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        docs = Path(__file__).resolve().parents[1] / "docs" / "replication.md"
        command = "python benchmarks/replicate.py " + " ".join(sys.argv[1:])
        notes = ""
        if docs.exists() and NOTES_MARKER in docs.read_text():
            notes = "\n" + NOTES_MARKER + docs.read_text().split(NOTES_MARKER, 1)[1]
            print("kept the hand-written reading below the table: revise it for the new numbers",
                  file=sys.stderr)
        docs.write_text(f"# Small-scale replication\n\nProduced by `{command}`.\n\n{table}\n{notes}")
        print(f"wrote {docs}", file=sys.stderr)


NOTES_MARKER = "<!-- reading: kept by --write -->"


def _ms(values: list[float], signed: bool = False) -> str:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:+.2f} ± {spread:.2f}" if signed else f"{mean:.2f} ± {spread:.2f}"


if __name__ == "__main__":
    main()
