"""Random bytes and random JSON as an artifact: ``verify`` and ``load_model`` raise only NetsurgeonErrors."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netsurgeon as ns
from netsurgeon.errors import NetsurgeonError
from netsurgeon.export import verify_artifact
from tests.badinput.helpers import read_record, write_artifact

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    from netsurgeon.export import export

    out = tmp_path_factory.mktemp("fuzz") / "art"
    model = ns.load_model("netsurgeon:tiny_resnet", input_size=(3, 8, 8))
    export(ns.apply(model, ["erase-relu", "spinal-head"]).model, out, formats=["safetensors"])
    return read_record(out / "model.safetensors"), load_file(str(out / "model.safetensors"))


def _paths(value, prefix=()):  # noqa: ANN001, ANN202
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _replaced(record: dict, path: tuple, new: object) -> object:
    if not path:
        return new
    out = copy.deepcopy(record)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return out


def _only_netsurgeon_errors(path: Path) -> None:
    for call in (lambda: verify_artifact(path), lambda: ns.load_model(path)):
        try:
            call()
        except NetsurgeonError as err:
            assert "\n" not in str(err)


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_as_the_artifact(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        path.write_bytes(data)
        _only_netsurgeon_errors(path)


@FUZZ
@given(new=json_values, pick=st.integers(0, 10**6), whole=st.booleans())
def test_random_json_in_the_header(source, new, pick, whole):
    record, tensors = source
    paths = list(_paths(record))
    header = new if whole else _replaced(record, paths[pick % len(paths)], new)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_artifact(Path(tmp) / "model.safetensors", json.loads(json.dumps(header)), tensors)
        _only_netsurgeon_errors(path)
