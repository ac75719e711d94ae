"""Edits applied at the smallest scope: swaps, block and root rewrites, and what is refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

import netsurgeon as ns
from netsurgeon.errors import SurgeryError
from netsurgeon.graph.codegen import base_class
from netsurgeon.layers.pd_relu import PDReLU


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()  # shared: called twice

    def forward(self, x):
        out = self.relu(self.conv1(x))
        return self.relu(self.conv2(out) + x)

    def extra_method(self) -> str:
        return "kept"


class Net(nn.Module):
    def __init__(self, mode_branch: bool = False, block_branch: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = ModeBlock() if block_branch else Block()
        self.fc = nn.Linear(4, 5)
        self.mode_branch = mode_branch

    def forward(self, x):
        x = F.relu(self.stem(x))  # a functional site in the root's own forward
        x = self.block(x)
        if self.mode_branch and self.training:
            x = x * 2
        return self.fc(x.mean((2, 3)))

    def features(self, x):
        return self.block(F.relu(self.stem(x)))


class ModeBlock(Block):
    def forward(self, x):
        out = self.relu(self.conv1(x))
        out = F.dropout(out, 0.5, training=self.training)  # frozen by tracing: this block must not be re-traced
        return self.relu(self.conv2(out) + x)


X = torch.randn(2, 3, 8, 8)


def test_block_and_root_rewrites_keep_classes_methods_and_keys():
    torch.manual_seed(0)
    model = Net().eval()
    result = ns.apply(model, "pd-relu", example_input=X)
    scopes = {c.site: c.scope for c in result.report.passes[0].changes}
    assert scopes == {"<model>[relu]": "root", "block.relu": "block:block", "block.relu@1": "block:block"}
    out = result.model
    assert isinstance(out, Net) and base_class(out) is Net and type(out).__name__ == "Net"
    assert isinstance(out.block, Block) and out.block.extra_method() == "kept"
    assert not hasattr(out.block, "relu")  # the shared ReLU is called by no site any more: dropped
    assert sum(isinstance(m, PDReLU) for m in out.modules()) == 3
    assert set(out.state_dict()) == set(model.state_dict())
    with torch.no_grad():
        assert torch.equal(out(X), model(X))
    assert "root rewrite" in result.report.format() and "block rewrite at block" in result.report.format()
    assert result.report.to_dict()["scopes"] == {"swap": 0, "block": 2, "root": 1}
    assert type(model) is Net and isinstance(model.block.relu, nn.ReLU)  # the caller's model is untouched


def test_a_root_that_reads_self_training_is_never_retraced():
    with pytest.raises(SurgeryError, match=r"the model \(Net\) behaves differently in train mode"):
        ns.apply(Net(mode_branch=True).eval(), "pd-relu", example_input=X)
    # a smaller scope is still fine: leave the root's site out
    result = ns.apply(Net(mode_branch=True).eval(), ns.PseudoDerivativeReLU(exclude=("<model>*",)), example_input=X)
    assert result.report.scope_counts() == {"swap": 0, "block": 2, "root": 0}


def test_a_block_that_reads_self_training_is_refused_naming_it():
    with pytest.raises(SurgeryError, match=r"block \(ModeBlock\) behaves differently in train mode"):
        ns.apply(Net(block_branch=True).eval(), ns.PseudoDerivativeReLU(include=("block*",)), example_input=X)


def test_an_unshared_module_is_swapped_in_place():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)).eval()
    model(X)
    result = ns.apply(model, "pd-relu", example_input=X)
    assert type(result.model) is nn.Sequential and isinstance(result.model[1], PDReLU)
    assert result.report.scope_counts() == {"swap": 1, "block": 0, "root": 0}


def test_a_users_own_fx_graph_module_is_edited_directly():
    torch.manual_seed(0)
    gm = fx.symbolic_trace(Net().eval())
    result = ns.apply(gm, "pd-relu", example_input=X)
    assert isinstance(result.model, fx.GraphModule)
    assert sum(isinstance(m, PDReLU) for m in result.model.modules()) == 3
    with torch.no_grad():
        assert torch.equal(result.model(X), gm(X))


def test_train_mode_of_each_module_is_kept():
    model = Net().train()
    model.block.conv1.eval()  # a user's mixed modes (a frozen part)
    result = ns.apply(model, "pd-relu", example_input=X).model
    assert result.training and result.block.training and not result.block.conv1.training


class OptionalArg(nn.Module):
    """timm DLA-like: an optional shortcut that is None for one call site and a tensor for another."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x, shortcut=None):
        if shortcut is None:
            shortcut = x
        return F.relu(self.conv(x) + shortcut)


class ListInput(nn.Module):
    """timm HRNet-like: the forward takes a list of branch inputs and assigns into it."""

    def __init__(self) -> None:
        super().__init__()
        self.branches = nn.ModuleList([nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)])

    def forward(self, x):
        for i, branch in enumerate(self.branches):
            x[i] = F.relu(branch(x[i]))
        return x


class CalledAsRecorded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.a, self.b, self.multi = OptionalArg(), OptionalArg(), ListInput()
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        x = self.stem(x)
        y = self.a(x)  # shortcut None
        y = self.b(y, x)  # shortcut given
        y0, y1 = self.multi([y, x])
        return self.fc((y0 + y1).mean((2, 3)))


def test_modules_with_optional_or_list_arguments_are_traced_as_they_are_called():
    torch.manual_seed(0)
    model = CalledAsRecorded().eval()
    result = ns.apply(model, "pd-relu", example_input=X)
    assert result.report.scope_counts() == {"swap": 0, "block": 4, "root": 0}
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(result.model(x), model(x))
    assert isinstance(result.model.a, OptionalArg) and isinstance(result.model.multi, ListInput)
