"""``Recipe``: a validated recipe (:class:`~netsurgeon.recipe.schema.RecipeSpec`) that can also plan and run."""

from __future__ import annotations

from pathlib import Path

from netsurgeon.recipe.run import RecipeResult, plan_recipe, run_recipe
from netsurgeon.recipe.schema import RecipeSpec
from netsurgeon.report import SurgeryReport

__all__ = ["Recipe"]


class Recipe(RecipeSpec):
    """A validated recipe. Build it with :meth:`from_yaml` (or :meth:`from_text` / :meth:`from_dict`)."""

    def plan(self) -> SurgeryReport | None:
        """Dry run: build the model and report the sites each pass would change; trains and writes nothing."""
        return plan_recipe(self)

    def run(self, *, out_dir: str | Path | None = None, progress: bool = True) -> RecipeResult:
        """Surgery, fine-tuning and export as written."""
        if self.compare is not None:
            from netsurgeon.errors import ConfigError

            raise ConfigError(f"{self.source} has a compare section: run it with netsurgeon compare --recipe "
                              f"{self.source.split(' + ')[0]}.")
        return run_recipe(self, out_dir=out_dir, progress=progress)
