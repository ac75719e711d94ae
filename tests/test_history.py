"""The surgery history is typed: frozen entries, one JSON form (the header's steps), one parser."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle

import pytest

import netsurgeon as ns
from netsurgeon.errors import ArtifactError
from netsurgeon.export.header import header_problems
from netsurgeon.history import HistoryEntry, parse_history, step_problems
from netsurgeon.models.info import ModelInfo, get_info
from netsurgeon.registry import Contract, get_pass, registered_contract

STEP = {"pass": "gru-fc", "version": 1, "config": {"layers": ["fc"], "rounds": 2}, "sites": ["fc"],
        "resolved": {"mode": "weight_sign", "layers": ["fc"]}, "contract": "changes-function", "new_params": []}


def test_a_step_round_trips_through_its_entry():
    entry = HistoryEntry.from_json(STEP, registered=registered_contract)
    assert entry.pass_name == "gru-fc" and entry.contract is Contract.CHANGES_FUNCTION and entry.sites == ("fc",)
    assert entry.config == {"layers": ("fc",), "rounds": 2} and entry.resolved["mode"] == "weight_sign"
    assert entry.to_json() == STEP and HistoryEntry.from_json(entry.to_json(), registered=registered_contract) == entry
    assert json.loads(json.dumps(entry.to_json())) == STEP


def test_an_older_step_keeps_its_shape():
    old = {"pass": "erase-relu", "version": 1, "config": {"proportion": 1.0}, "sites": ["layer1.relu@1"]}
    entry = HistoryEntry.from_json(old, registered=registered_contract)
    assert entry.contract is get_pass("erase-relu").contract  # not recorded: the registered one
    assert entry.resolved == {} and entry.new_params == ()
    assert entry.to_json() == old  # a re-export writes it as it was read
    bare = HistoryEntry.from_json({"pass": "erase-relu", "version": 1, "config": {}}, registered=registered_contract)
    assert bare.sites is None and "sites" not in bare.to_json()


def test_entries_are_frozen_all_the_way_down():
    entry = HistoryEntry.from_json(STEP, registered=registered_contract)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.pass_name = "pd-relu"  # type: ignore[misc]
    with pytest.raises(TypeError):
        entry.config["rounds"] = 3  # type: ignore[index]
    with pytest.raises(TypeError):
        entry.resolved["layers"][0] = "head"  # type: ignore[index]
    assert STEP["config"] == {"layers": ["fc"], "rounds": 2}  # the parsed JSON is not shared


def test_entries_deepcopy_and_pickle():
    entry = HistoryEntry.from_json({k: v for k, v in STEP.items() if k != "resolved"}, registered=registered_contract)
    for again in (copy.deepcopy(entry), pickle.loads(pickle.dumps(entry))):
        assert again == entry and again.to_json() == entry.to_json() and "resolved" not in again.to_json()


def test_apply_records_typed_entries_and_the_model_info_writes_json():
    result = ns.apply(ns.load_model("netsurgeon:tiny_resnet", input_size=(3, 16, 16)), "erase-relu")
    info = get_info(result.model)
    (entry,) = info.history
    assert entry.pass_name == "erase-relu" and entry.contract is Contract.CHANGES_FUNCTION
    assert list(entry.sites) == [c.site for c in result.report.passes[0].changes]
    plain = info.to_dict()
    assert plain["history"] == [entry.to_json()] and json.loads(json.dumps(plain)) == plain
    assert ModelInfo.from_dict(plain, registered=registered_contract).history == info.history


def test_the_parser_refuses_what_the_header_refuses():
    bad = {**STEP, "version": True, "contract": "maybe", "extra": 1}
    problems = step_problems(bad, "passes[0]", registered=registered_contract)
    assert problems == ["passes[0]: unknown key 'extra'", "passes[0].version must be a positive integer, got bool",
                        "passes[0].contract must be one of exact, changes-function"]
    record = {"model": {"spec": "netsurgeon:tiny_resnet", "input_size": [3, 16, 16]}, "passes": [bad]}
    assert set(problems) <= set(header_problems(record))
    with pytest.raises(ArtifactError, match=r"passes\[0\]\.version must be a positive integer"):
        parse_history([bad], registered=registered_contract)
    with pytest.raises(ArtifactError, match="history entry must be a mapping, got list"):
        HistoryEntry.from_json([], registered=registered_contract)
