"""Property-based: whatever text or values a recipe holds, the loader raises only RecipeError."""

import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsurgeon.errors import RecipeError
from netsurgeon.recipe import Recipe

#: FUZZ_EXAMPLES=2000 for a longer hunt; the suite's default keeps this file to seconds
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**30, max_value=10**30),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=12)
KNOWN = {
    "model": ["name", "checkpoint", "num_classes", "input_size", "pretrained"],
    "finetune": ["data", "epochs", "lr", "batch_size", "schedule", "step_epochs", "amp", "clip_grad_norm"],
    "export": ["dir", "formats", "overwrite"],
}
PASS_KEYS = ["proportion", "position", "N", "M", "scope", "family", "alpha", "width", "variant", "mode", "layers",
             "rounds", "every_n_epochs", "include", "num_classes"]
PASSES = st.sampled_from(["erase-relu", "proportional-relu", "pd-relu", "spinal-head", "gru-fc", "erase", ""])


def _load(text: str) -> None:
    try:
        Recipe.from_text(text)
    except RecipeError as err:
        assert str(err) and err.problems  # a message and at least one located problem


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(text):
    _load(text)


@FUZZ
@given(values)
def test_arbitrary_yaml_documents(document):
    _load(yaml.safe_dump(document))


@FUZZ
@given(st.fixed_dictionaries({section: st.dictionaries(st.sampled_from(keys), values, max_size=4)
                              for section, keys in KNOWN.items()}),
       st.lists(st.builds(lambda name, params: {"pass": name, **params}, PASSES,
                          st.dictionaries(st.sampled_from(PASS_KEYS), values, max_size=3)), max_size=3),
       scalars)
def test_known_keys_with_random_values(sections, surgery, seed):
    _load(yaml.safe_dump({**sections, "surgery": surgery, "seed": seed}))


@FUZZ
@given(st.dictionaries(st.sampled_from(["model.name", "finetune.epochs", "surgery.0.proportion", "surgery.9.x",
                                        "seed", "export.formats", "model", "a..b", "finetune.data.x"]),
                       st.text(max_size=15), max_size=3))
def test_random_overrides(overrides):
    try:
        Recipe.from_yaml("recipes/digits-offline.yaml", overrides=overrides)
    except RecipeError as err:
        assert err.problems
