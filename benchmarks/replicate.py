"""The papers' comparison at small scale, over several seeds, through ``netsurgeon compare``.

Trains one baseline (torchvision resnet18 at 32x32, from scratch, seed 0), then runs one comparison:
the control ("fine-tune only") and each pass, fine-tuned from that baseline for the same budget once
per seed (paired: the same start, sample order and test images per seed). Prints the comparison's
table (mean ± standard deviation over seeds, the paired difference to the control with its bootstrap
interval, the exact sign-flip test over seeds, Holm-corrected, and a verdict: docs/statistics.md) and,
with ``--write``, puts it and
its picture into ``docs/replication.md`` / ``docs/replication.png``.

    python benchmarks/replicate.py                      # 3 seeds, Fashion-MNIST from Debian's package
    python benchmarks/replicate.py --data digits --arms erase-relu pd-relu --write
    python benchmarks/replicate.py --data fashion-mnist:DIR --seeds 5 --executor slurm --write
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import environment  # noqa: E402

from netsurgeon.compare import CompareSpec, SlurmOptions, run_spec  # noqa: E402
from netsurgeon.data import count_classes  # noqa: E402
from netsurgeon.loading import load_model  # noqa: E402
from netsurgeon.train import FinetuneConfig, finetune  # noqa: E402

PASSES = ["erase-relu", "proportional-relu", "pd-relu", "spinal-head", "gru-fc"]
NOTES_MARKER = "<!-- reading: kept by --write -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--arms", nargs="+", default=PASSES, help="compare --arm values")
    parser.add_argument("--baseline-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-batches", type=int, default=50, help="batches of 64 per epoch (0: all)")
    parser.add_argument("--eval-batches", type=int, default=40, help="test batches of 64 (0: all)")
    parser.add_argument("--out", type=Path, help="keep the baseline and the comparison here (default: temporary)")
    parser.add_argument("--executor", default="local", choices=["local", "slurm"])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="write docs/replication.md and docs/replication.png")
    args = parser.parse_args()
    started = time.perf_counter()
    temp = None if args.out else tempfile.mkdtemp(prefix="replicate-")
    out = args.out or Path(temp)
    common = {"batch_size": 64, "progress": False, "limit_train_batches": args.train_batches or None,
              "limit_eval_batches": args.eval_batches or None}
    try:
        baseline_dir = out / "baseline"
        if not (baseline_dir / "model.safetensors").exists():
            torch.manual_seed(0)
            base = load_model("torchvision:resnet18", num_classes=count_classes(args.data), input_size=(3, 32, 32))
            finetune(base, args.data, FinetuneConfig(epochs=args.baseline_epochs, lr=0.05, warmup_epochs=0.5,
                                                     seed=0, **common), out_dir=baseline_dir, formats=("safetensors",))
            print("baseline trained", file=sys.stderr, flush=True)
        spec = CompareSpec.build(str(baseline_dir), args.data, args.arms, args.seeds,
                                 FinetuneConfig(epochs=args.epochs, lr=0.01, **common))
        result = run_spec(spec, out / "compare", executor=args.executor, jobs=args.jobs, slurm=SlurmOptions())
        report = (out / "compare" / "compare.md").read_text().split("\n", 2)[2]  # without the title
        images = f"{args.eval_batches * 64} test images" if args.eval_batches else "the whole test split"
        header = (f"{args.data}, torchvision resnet18 at 32x32 trained from scratch once (seed 0) for "
                  f"{args.baseline_epochs} epochs of {args.train_batches or 'all'} batches of 64, then "
                  f"{args.epochs} fine-tuning epochs per arm and seed; test top-1 (%) on {images}. "
                  f"{environment(torch.device('cpu'))}; {time.perf_counter() - started:.0f} s in all.")
        print(header + "\n\n" + report)
        if args.write:
            docs = Path(__file__).resolve().parents[1] / "docs"
            command = "python benchmarks/replicate.py " + " ".join(sys.argv[1:])
            notes = ""
            page = docs / "replication.md"
            if page.exists() and NOTES_MARKER in page.read_text():
                notes = "\n" + NOTES_MARKER + page.read_text().split(NOTES_MARKER, 1)[1]
                print("kept the hand-written reading below the table: revise it for the new numbers",
                      file=sys.stderr)
            shutil.copyfile(out / "compare" / "compare.png", docs / "replication.png")
            page.write_text(f"# Small-scale replication\n\nProduced by `{command}` (a `netsurgeon compare` run; "
                            f"{result.ran} jobs).\n\n{header}\n\n{report.strip()}\n\n"
                            f"![paired differences and test-accuracy curves](replication.png)\n{notes}")
            print(f"wrote {page}", file=sys.stderr)
    finally:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
