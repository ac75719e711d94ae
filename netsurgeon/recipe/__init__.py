"""Declarative YAML recipes: model, surgery, fine-tuning and export written down once, checked, rerun.

``Recipe.from_yaml("recipes/digits-offline.yaml").run()``, or ``netsurgeon run RECIPE``. See
:mod:`netsurgeon.recipe.schema` for the shape and the validation rules.
"""

from netsurgeon.recipe.recipe import Recipe
from netsurgeon.recipe.run import RecipeResult, plan_recipe, run_recipe
from netsurgeon.recipe.schema import ExportSection, ModelSection, RecipeSpec

__all__ = ["ExportSection", "ModelSection", "Recipe", "RecipeResult", "RecipeSpec", "plan_recipe", "run_recipe"]
