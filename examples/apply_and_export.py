"""Apply a pass to a model, read the report, export it, and rebuild it from the artifact alone.

    python examples/apply_and_export.py                   # torchvision resnet50, erase-relu, to out/example-apply
    python examples/apply_and_export.py --quick           # a tiny model (seconds)
"""

import argparse

import torch

import netsurgeon as ns

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="a tiny model instead of resnet50")
parser.add_argument("--out", default="out/example-apply")
args = parser.parse_args()

# 1. Load a model. Real use: ns.load_model("timm:resnet50", checkpoint="weights/resnet50.safetensors").
model = ns.load_model("netsurgeon:tiny_resnet" if args.quick else "torchvision:resnet50")

# 2. Apply one or more passes to a copy; the input model is never modified.
result = ns.apply(model, [ns.EraseReLU(proportion=0.5), ns.PseudoDerivativeReLU(family="leaky", alpha=0.05)])
print(result.report.format())

# 3. Export: safetensors with the provenance in its header, ONNX checked against eager in onnxruntime.
exported = ns.export(result.model, args.out, report=result.report, overwrite=True)
print("wrote", *exported.files, f"(ONNX parity max |diff| {exported.onnx_max_abs_diff:.2g})")

# 4. Rebuild from the artifact alone: the base architecture, the passes replayed, the weights loaded.
rebuilt = ns.load_model(args.out)
x = torch.randn(2, *ns.models.info.get_info(model).input_size)
with torch.no_grad():
    assert torch.equal(rebuilt(x), result.model.eval()(x))
print("reloaded: identical logits")
