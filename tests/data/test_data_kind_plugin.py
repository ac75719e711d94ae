"""A data kind defined outside the package (in tests/) works end to end: a data kind is a self-contained plug-in.

The toy kind ``toy:N`` (``tests/data/toy_kind.py``) gives N seeded random 3x8x8 images of four classes. It is
registered here (one ``register_data_kind`` line), fine-tuned on through the CLI (in-process, so the
registration is visible), and removed again; nothing in ``netsurgeon/`` knows about it. The built-in kinds'
lists (the README's, the grammar each kind defines once) are checked against the registry too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from netsurgeon.data import (
    DataKind,
    DataSpec,
    count_classes,
    data_grammar,
    data_help,
    data_kind,
    data_kinds,
    load_dataset,
    register_data_kind,
    unregister_data_kind,
)
from netsurgeon.errors import ConfigError, UnknownNameError
from tests.badinput.helpers import cli
from tests.data.toy_kind import CLASSES, toy_kind

ROOT = Path(__file__).resolve().parents[2]
BUILT_IN = ("digits", "fashion-mnist", "folder", "torchvision")
TOY = toy_kind("toy")


@pytest.fixture
def toy():
    kind = register_data_kind(TOY)
    try:
        yield kind
    finally:
        unregister_data_kind("toy")


def test_a_kind_registered_in_a_test_file_parses_loads_and_is_listed(toy):
    spec = DataSpec.parse("toy:32")
    assert spec == DataSpec("toy", "32") and spec.label() == "toy:32" and spec.data_kind is toy
    assert data_kind("toy") is toy and data_kinds()[-1] is toy
    train = load_dataset("toy:32", "train", (3, 8, 8))
    assert len(train) == 32 and train.num_classes == CLASSES and train[0][0].shape == (3, 8, 8)
    assert count_classes("toy:32") == CLASSES
    assert data_grammar().endswith(", torchvision:NAME:ROOT or toy:N")
    assert "toy:N (N seeded random" in data_help()
    with pytest.raises(ConfigError, match=r"unknown data spec 'toy:x'; use .*torchvision:NAME:ROOT or toy:N "
                                          r"\(for example torchvision:CIFAR10:~/data\)\."):
        DataSpec.parse("toy:x")


def test_a_second_kind_of_the_same_name_is_refused(toy):
    with pytest.raises(ValueError, match="data kind 'toy' is already registered"):
        register_data_kind(TOY)
    with pytest.raises(ValueError, match="already registered"):
        register_data_kind(DataKind("folder", "folder:X", "another folder", TOY.parse, TOY.load))
    with pytest.raises(ValueError, match="lowercase words"):
        register_data_kind(DataKind("Toy2", "Toy2:N", "x", TOY.parse, TOY.load))
    with pytest.raises(ValueError, match="must start with its name"):
        register_data_kind(DataKind("toy2", "toy:N", "x", TOY.parse, TOY.load))
    assert [k.name for k in data_kinds()] == [*BUILT_IN, "toy"]


def test_an_unregistered_kind_is_gone():
    assert "toy" not in [k.name for k in data_kinds()]
    with pytest.raises(ConfigError, match="unknown data spec 'toy:8'"):
        DataSpec.parse("toy:8")
    with pytest.raises(UnknownNameError, match="unknown data kind 'toy'"):
        unregister_data_kind("toy")


def test_finetune_on_the_toy_kind_through_the_cli(toy, tmp_path):
    out = tmp_path / "o"
    result = cli("finetune", "--model", "netsurgeon:tiny_resnet", "--data", "toy:32", "--out", out,
                 "--input-size", "3,8,8", "--epochs", "1", "--format", "safetensors", "--json",
                 "--set", "batch_size=16", "--set", "limit_eval_batches=1", "--set", "progress=false")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [r["epoch"] for r in payload["metrics"]] == [0, 1]
    assert (out / "model.safetensors").is_file() and (out / "metrics.jsonl").is_file()
    assert "with 4 classes (the data's)" in result.stderr  # the head was sized by the kind's class count
    checkpoint = torch.load(next(out.rglob("*.pt")), map_location="cpu", weights_only=True)
    assert "toy:32" in json.dumps(checkpoint, default=str)  # the run identity records the spec's label


def test_the_built_in_kinds_are_registered_once_each_in_order():
    assert [k.name for k in data_kinds()] == list(BUILT_IN)
    assert data_grammar() == "digits, fashion-mnist[:DIR], folder:DIR or torchvision:NAME:ROOT"
    assert data_kind("folder").image_tree and not data_kind("digits").image_tree


def test_the_readme_lists_the_registered_kinds():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Data (`--data`)", 1)[1].split("\n#", 1)[0]
    assert data_help() in " ".join(section.replace("`", "").split())


def test_each_grammar_is_defined_once_in_the_package():
    """A kind's grammar is written once, in its own module: everything else reads the registry."""
    for kind in data_kinds():
        if ":" not in kind.grammar:
            continue
        found = [f"{p.relative_to(ROOT)}:{i}" for p in sorted((ROOT / "netsurgeon").rglob("*.py"))
                 for i, line in enumerate(p.read_text().splitlines(), 1) if kind.grammar in line]
        assert len(found) == 1 and re.search(rf"kinds/{kind.name.replace('-', '_')}\.py:", found[0]), found
