#!/usr/bin/env bash
# The checks that need a GPU, in one short run (about 5 minutes on one H100-class GPU):
#   1. the tests marked gpu (AMP bf16/fp16, channels_last, export from a CUDA model);
#   2. fine-tune throughput at bf16 + channels_last: in-memory tensors, and the augmented pipeline
#      (decoded PNGs, augment=basic, workers=auto) against a hand loop with the same transform and loader;
#   3. pd-relu's training cost on CUDA.
# Run from anywhere:  bash benchmarks/gpu.sh   (PYTHON=/path/to/python to choose the interpreter)
# Paste the tables it prints into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible')"
echo "## gpu tests"
"$PY" -m pytest -m gpu -q tests
echo "## fine-tune throughput (bf16, channels_last)"
"$PY" benchmarks/finetune_throughput.py --device cuda --amp bf16 --batch 256 --size 64 --images 1437 \
    --aug-size 160 --aug-images 1024 --runs 5
echo "## pd-relu cost (CUDA)"
"$PY" benchmarks/pd_relu_cost.py --device cuda --amp bf16 --batch 64 --size 224
