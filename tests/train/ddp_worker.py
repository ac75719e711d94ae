"""Run by test_distributed under torchrun: fine-tune, then write this rank's weight digest."""

import hashlib
import sys
from pathlib import Path

import torch

import netsurgeon as ns
from netsurgeon.train import FinetuneConfig, finetune

out_dir, digest_dir = Path(sys.argv[1]), Path(sys.argv[2])
torch.manual_seed(int(__import__("os").environ["RANK"]))  # different init per rank: DDP must broadcast rank 0's
model = ns.load_model("netsurgeon:tiny_resnet", input_size=(3, 16, 16))
surgery = ns.apply(model, ns.EraseReLU())
cfg = FinetuneConfig(epochs=2, batch_size=32, lr=0.05, limit_train_batches=6, progress=False)
result = finetune(surgery.model, "digits", cfg, out_dir=out_dir)
digest = hashlib.sha256()
for name, tensor in sorted(result.model.state_dict().items()):
    digest.update(name.encode() + tensor.cpu().contiguous().numpy().tobytes())
rank = __import__("os").environ["RANK"]
(digest_dir / f"rank{rank}.txt").write_text(f"{digest.hexdigest()} {result.final.get('test_top1')}\n")
