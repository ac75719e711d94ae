"""Does the training pipeline help where an unaugmented fine-tune overfits? augment=none vs basic vs basic + EMA.

Data: Fashion-MNIST when Debian's ``dataset-fashion-mnist`` is installed (``--data fashion-mnist``),
else scikit-learn's embedded digits (the default). The training split is cut to ``--train-images``
(a fixed subset, the same for every arm and seed) so a small CNN memorises it within the budget; the
whole test split is evaluated. Each arm trains the same model from the same initial weights (per seed)
with the same schedule; only the augmentation and the EMA differ. ``basic`` is the padded random crop
(here without the horizontal flip: digits and clothes are not mirror-symmetric the way the CIFAR
classes are; ``--hflip 0.5`` puts it back). Prints the mean and standard deviation over seeds of the
final train and test top-1 (the EMA arm: its EMA weights' test top-1 too) as a Markdown table.

    python benchmarks/augmentation_evidence.py                      # digits, 3 seeds
    python benchmarks/augmentation_evidence.py --seeds 0 1 2 3 4 --epochs 40 --train-images 500
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import environment  # noqa: E402
from torch.utils.data import Subset  # noqa: E402

import netsurgeon as ns  # noqa: E402
from netsurgeon.data import Augment, eval_transform, load_dataset, model_data_config, train_transform  # noqa: E402
from netsurgeon.train import FinetuneConfig, finetune  # noqa: E402

ARMS = {"augment=none": {"augment": "none"}, "augment=basic": {"augment": "basic"},
        "augment=basic + EMA": {"augment": "basic", "ema_decay": 0.99, "ema_export": "ema"}}


class _Named(Subset):
    num_classes = 10


def datasets(spec: str, model: torch.nn.Module, size: tuple[int, int, int], augment: Augment, images: int):
    config = model_data_config(model)
    train = load_dataset(spec, "train", size, transform=train_transform(config, size, augment))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(1234))[:images]
    return _Named(train, order.tolist()), load_dataset(spec, "test", size, transform=eval_transform(config, size))


def _stat(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows if key in r]
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--model", default="torchvision:resnet18")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train-images", type=int, default=300)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--hflip", type=float, default=0.0)
    args = parser.parse_args()
    size = (3, args.size, args.size)
    finals: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    started = time.perf_counter()
    for seed in args.seeds:
        torch.manual_seed(seed)
        model = ns.load_model(args.model, num_classes=10, input_size=size)
        for arm, knobs in ARMS.items():
            augment = Augment(knobs["augment"], hflip=args.hflip)
            data = datasets(args.data, model, size, augment, args.train_images)
            cfg = FinetuneConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, warmup_epochs=1, seed=seed,
                                 progress=False, workers=0, log="none", eval_every=args.epochs,
                                 hflip=args.hflip, **knobs)
            row = finetune(model, data, cfg).final
            finals[arm].append(row)
            ema = f", EMA {row['ema_test_top1']:.2f}" if "ema_test_top1" in row else ""
            print(f"seed {seed} {arm}: train top-1 {row['train_top1']:.2f}, test top-1 {row['test_top1']:.2f}{ema}",
                  file=sys.stderr, flush=True)
    print(f"# {environment(torch.device('cpu'))}; {args.model} at {args.size}x{args.size} on {args.data} "
          f"({args.train_images} training images, whole test split), {args.epochs} epochs of batch {args.batch}, "
          f"SGD lr {args.lr} cosine, hflip {args.hflip}, seeds {args.seeds}, "
          f"{time.perf_counter() - started:.0f} s in all")
    print("| arm | train top-1 | test top-1 (raw) | test top-1 (EMA) | test gap to none |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base = statistics.mean(r["test_top1"] for r in finals["augment=none"])
    for arm, rows in finals.items():
        best = max(statistics.mean(r.get("ema_test_top1", r["test_top1"]) for r in rows),
                   statistics.mean(r["test_top1"] for r in rows))
        print(f"| {arm} | {_stat(rows, 'train_top1')} | {_stat(rows, 'test_top1')} | {_stat(rows, 'ema_test_top1')} | "
              f"{best - base:+.2f} |")


if __name__ == "__main__":
    main()
