"""Surgery, then fine-tuning: a spinal head on a small ResNet, trained on the embedded digits.

    python examples/finetune_after_surgery.py             # torchvision resnet18 at 32x32, 3 epochs
    python examples/finetune_after_surgery.py --quick     # a tiny model, one short epoch
"""

import argparse

import netsurgeon as ns
from netsurgeon.train import FinetuneConfig, finetune

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true")
parser.add_argument("--out", default="out/example-finetune")
args = parser.parse_args()

name, size = ("netsurgeon:tiny_resnet", (3, 16, 16)) if args.quick else ("torchvision:resnet18", (3, 32, 32))
model = ns.load_model(name, num_classes=10, input_size=size)

# The new head's parameters get new_param_lr_scale x the learning rate (10x by default).
headed = ns.apply(model, ns.SpinalHeadConfig(variant="progressive", width=64)).model

config = FinetuneConfig(epochs=1 if args.quick else 3, lr=0.05, batch_size=64, warmup_epochs=0.5,
                        limit_train_batches=4 if args.quick else None)
# Checkpoints every epoch (resume=True continues one), metrics.csv/jsonl, curves.png, and the final
# model exported with the training config and metrics in its provenance.
result = finetune(headed, "digits", config, out_dir=args.out, overwrite=True)
print(f"test top-1 before fine-tuning {result.metrics[0]['test_top1']:.1f}%, after {result.final['test_top1']:.1f}%")
print("wrote", *result.files)
