"""Sites count only on a block's input-to-output data path, and a later activation of another type is
respected (issue 14): erase-relu and proportional-relu on Swin-V2 and on small models built to show it."""

import warnings

import pytest
import torch
from torch import nn

import netsurgeon as ns
from netsurgeon.graph.index import GraphIndex
from netsurgeon.graph.trace import trace


class BiasBlock(nn.Module):
    """A residual block with a bias table computed from constants by an MLP with a ReLU (Swin-V2's cpb_mlp)."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.register_buffer("coords", torch.randn(1, 2))
        self.bias_mlp = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, c))
        self.conv1, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.act1, self.act2 = nn.ReLU(), nn.ReLU()

    def forward(self, x):
        bias = self.bias_mlp(self.coords).view(1, -1, 1, 1)
        y = self.conv2(self.act1(self.conv1(x))) + bias
        return self.act2(y + x)


class GeluAfterBlock(nn.Module):
    """ReLU inside, then a GELU after the add: the block has no last ReLU."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.act1, self.act2 = nn.ReLU(), nn.GELU()

    def forward(self, x):
        return self.act2(self.conv2(self.act1(self.conv1(x))) + x)


def _net(block: type[nn.Module]) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), block(), block(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))


def test_side_branch_relu_is_off_the_data_path():
    index = GraphIndex(trace(_net(BiasBlock)).gm)
    block = index.blocks()[0]
    on_path = {s.label: index.on_data_path(block, s) for s in index.sites() if index.site_node(s) in block.node_set}
    assert on_path == {"1.bias_mlp.1": False, "1.act1": True, "1.act2": True}
    report = ns.plan(_net(BiasBlock), ns.EraseReLU())
    assert [c.site for c in report.passes[0].changes] == ["1.act2", "2.act2"]


def test_proportional_relu_never_owns_an_off_path_site():
    report = ns.plan(_net(BiasBlock), ns.ProportionalReLU())  # 2:1, phase 0: erase conv1's, keep conv2's
    assert [c.site for c in report.passes[0].changes] == ["1.act1", "2.act1"]
    assert "4 counted convolution(s) owning 4 ReLU site(s)" in report.passes[0].notes[0]  # not the bias MLP's


def test_later_gelu_means_no_last_relu():
    with pytest.warns(ns.NoEffectWarning):
        report = ns.plan(_net(GeluAfterBlock), ns.EraseReLU())
    assert report.passes[0].changes == []
    assert any("another activation type" in n for n in report.passes[0].notes)


def test_erase_relu_leaves_swin_v2_position_bias_mlp_alone():
    model = ns.load_model("torchvision:swin_v2_t")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ns.NoEffectWarning)
        erase = ns.plan(model, ns.EraseReLU())
        proportional = ns.plan(model, ns.ProportionalReLU())
    assert erase.relu_sites_before == 12  # the 12 cpb_mlp.1 ReLUs
    assert erase.passes[0].changes == [] and erase.relu_sites_after == 12
    assert proportional.passes[0].changes == []


class LogitsPlusBias(nn.Module):
    """Attention arithmetic: two products of the input added, no activation (halonet's relative logits)."""

    def forward(self, x):
        return x * 2.0 + x.mean(dim=1, keepdim=True)


class AttnBlock(nn.Module):
    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.conv, self.attn, self.act = nn.Conv2d(c, c, 1), LogitsPlusBias(), nn.ReLU()

    def forward(self, x):
        return self.act(self.attn(self.conv(x)) + x)


def test_merge_scope_without_activation_is_no_block():
    index = GraphIndex(trace(_net(AttnBlock)).gm)
    assert [(b.name, b.kind) for b in index.blocks()] == [("1", "residual"), ("2", "residual")]
    report = ns.plan(_net(AttnBlock), ns.EraseReLU())
    assert [c.site for c in report.passes[0].changes] == ["1.act", "2.act"]
