"""A recipe from Python: load, override, inspect the plan, run, and trace the model back to its recipe.

    python examples/recipe_from_python.py                 # the offline digits recipe as shipped
    python examples/recipe_from_python.py --quick         # shortened: smaller images, a few batches
"""

import argparse
import json

from safetensors import safe_open

from netsurgeon.recipe import Recipe

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true")
parser.add_argument("--out", default="out/example-recipe")
args = parser.parse_args()

overrides = {"export.overwrite": "true"}
if args.quick:
    overrides |= {"model.input_size": "[3,16,16]", "finetune.epochs": "1", "finetune.limit_train_batches": "3",
                  "finetune.limit_eval_batches": "2", "export.formats": "[safetensors]"}
recipe = Recipe.from_yaml("recipes/digits-offline.yaml", overrides=overrides)
print(recipe.plan().format())  # what the surgery will change, before any training

result = recipe.run(out_dir=args.out)
print(f"test top-1 {result.metrics[-1]['test_top1']:.1f}%; recipe sha256 {result.sha256[:16]}...")

with safe_open(f"{args.out}/model.safetensors", "pt") as fh:
    record = json.loads(fh.metadata()["netsurgeon"])
assert record["recipe"]["sha256"] == result.sha256  # the artifact names the exact recipe that made it
print(Recipe.from_text(record["recipe"]["yaml"]) == recipe and "the artifact's recipe equals the one run")
