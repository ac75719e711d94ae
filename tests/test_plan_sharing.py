"""A dry run (``plan``) of passes that never edit a tensor in place shares the caller's tensors instead of
cloning them (most of the copy's cost), and the caller's model still comes out bitwise unchanged."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import netsurgeon as ns
from netsurgeon import api
from netsurgeon.config import PassConfig
from netsurgeon.outcome import PassOutcome
from netsurgeon.registry import _REGISTRY, Contract, get_pass, register_pass
from netsurgeon.report import SiteChange
from netsurgeon.workspace import Workspace

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def spy(monkeypatch):
    """Record the ``share_tensors`` of every workspace ``apply``/``plan`` makes."""
    seen: list[bool] = []
    original = Workspace.of.__func__

    def of(cls, model, *, share_tensors=False, **kwargs):
        seen.append(share_tensors)
        return original(cls, model, share_tensors=share_tensors, **kwargs)

    monkeypatch.setattr(api.Workspace, "of", classmethod(of))
    return seen


def _snapshot(model: nn.Module) -> dict[str, tuple[torch.Tensor, int]]:
    return {k: (v.clone(), v._version) for k, v in model.state_dict(keep_vars=True).items()}


def _unchanged(model: nn.Module, snapshot: dict[str, tuple[torch.Tensor, int]]) -> bool:
    state = model.state_dict(keep_vars=True)
    return state.keys() == snapshot.keys() and all(
        torch.equal(state[k], t) and state[k]._version == v for k, (t, v) in snapshot.items())


def test_the_working_copy_shares_only_tensors():
    model = ns.load_model("torchvision:resnet18")
    ws = Workspace.of(model, share_tensors=True)
    assert ws.model.fc.weight is model.fc.weight and ws.model.bn1.running_mean is model.bn1.running_mean
    assert ws.model.fc is not model.fc and ws.model.layer1[0] is not model.layer1[0]
    assert Workspace.of(model).model.fc.weight is not model.fc.weight  # apply's copy owns its tensors


@pytest.mark.parametrize("pass_name", ["erase-relu", "proportional-relu", "pd-relu", "spinal-head"])
def test_plan_shares_the_callers_tensors_and_leaves_them_unchanged(spy, pass_name):
    model = ns.load_model("torchvision:resnet18")
    before = _snapshot(model)
    report = ns.plan(model, pass_name, example_input=X)
    assert spy == [True] and not get_pass(pass_name).edits_weights
    assert report.dry_run and report.changed > 0
    assert _unchanged(model, before)
    assert report == ns.apply(model, pass_name, example_input=X, verify=False).report  # same report as a copy
    assert spy == [True, False] and _unchanged(model, before)


def test_plan_of_a_pass_that_edits_weights_clones_them(spy):
    model = ns.load_model("torchvision:resnet18")
    before = _snapshot(model)
    report = ns.plan(model, ("gru-fc", {"mode": "weight_sign"}), example_input=X)
    assert spy == [False] and report.passes[0].keys_changed == ["fc.weight"]
    assert _unchanged(model, before)  # gru-fc zeroed the copy's fc weights, not the caller's


@dataclass(frozen=True)
class ZeroFirstConv(PassConfig):
    """Zero the first convolution's weights in place while claiming not to (a broken plug-in)."""


def _zero_first_conv(ws, cfg: ZeroFirstConv) -> PassOutcome:
    conv = next(m for m in ws.model.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        conv.weight.mul_(0)
    return PassOutcome([SiteChange(site="conv", before="weights", after="zeros", scope="weights")])


def test_a_pass_breaking_its_no_in_place_promise_is_named():
    register_pass("zero-first-conv", ZeroFirstConv, contract=Contract.CHANGES_FUNCTION, structural=False,
                  edits_weights=False)(_zero_first_conv)
    try:
        with pytest.raises(ns.NetsurgeonError, match="zero-first-conv changed the caller's tensors in place"):
            ns.plan(ns.load_model("torchvision:resnet18"), "zero-first-conv", example_input=X)
    finally:
        _REGISTRY.pop("zero-first-conv")
