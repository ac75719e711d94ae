"""Sites, blocks and heads on real torchvision/timm models: ReLU sites as `netsurgeon/graph/sites.py` defines them,
basic modules and their last sites as erase-relu selects them (`netsurgeon/passes/erase_relu.py`; arXiv 1709.07634)."""

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

import netsurgeon as ns
from netsurgeon.errors import SurgeryError
from netsurgeon.graph.index import GraphIndex
from netsurgeon.graph.rewrite import check_inplace_safe
from netsurgeon.graph.trace import Rung, trace

# (model spec, kwargs, ReLU sites before, after erase-relu with defaults: its "last ReLU of each basic module" rule)
ERASE_TABLE = [
    ("torchvision:resnet18", {}, 17, 9),
    ("torchvision:resnet50", {}, 49, 33),
    ("torchvision:resnext50_32x4d", {}, 49, 33),
    ("torchvision:vgg16", {}, 15, 10),
    ("torchvision:vgg16_bn", {}, 15, 10),
    ("torchvision:densenet121", {}, 121, 63),
    ("torchvision:regnet_y_400mf", {}, 65, 49),
    ("torchvision:mnasnet1_0", {}, 35, 35),  # inverted residuals already end linearly
    ("timm:resnet18", {}, 17, 9),
    ("timm:resnet50", {}, 49, 33),
    ("timm:resnet50d", {}, 51, 35),
    ("timm:seresnext26d_32x4d", {}, 35, 27),  # the SE ReLUs are not the blocks' last ReLU
    ("timm:resnetv2_50", {}, 49, 33),  # pre-activation: norm3.act
    ("timm:densenet121", {}, 121, 63),
    ("timm:vgg16", {}, 15, 10),  # needs the timm-leaves rung
    ("torchvision:wide_resnet101_2", {}, 100, 67),
    ("torchvision:googlenet", {"aux_logits": False, "init_weights": False}, 57, 21),
    ("torchvision:inception_v3", {"aux_logits": False, "init_weights": False}, 94, 50),
    ("torchvision:squeezenet1_0", {}, 26, 10),
]




def _structure(spec: str, **kwargs) -> nn.Module:
    """A full-size model on the meta device: the graph and its sites without allocating or initialising weights."""
    with torch.device("meta"):
        return ns.load_model(spec, **kwargs)


META_UNBUILDABLE = {"torchvision:regnet_y_400mf"}  # its constructor reads a tensor's value: small, built on the CPU


def _site_count_cases():
    for spec, kwargs, before, after in ERASE_TABLE:
        if spec in META_UNBUILDABLE:
            yield pytest.param(spec, kwargs, before, after, "cpu", id=f"{spec}-cpu")
            continue
        yield pytest.param(spec, kwargs, before, after, "meta", id=f"{spec}-meta")
        yield pytest.param(spec, kwargs, before, after, "cpu", id=f"{spec}-cpu", marks=pytest.mark.slow)


@pytest.mark.parametrize("spec,kwargs,before,after,device", list(_site_count_cases()))
def test_erase_relu_site_counts(spec, kwargs, before, after, device):
    """Counting sites needs the structure only: the default run plans meta-device models (regnet aside); -m slow
    repeats the table on real weights."""
    with torch.device(device):
        model = ns.load_model(spec, **kwargs)
    report = ns.plan(model, ns.EraseReLU())
    assert (report.relu_sites_before, report.relu_sites_after) == (before, after)
    assert report.keys_added == [] and report.keys_removed == []


def test_mobilenet_v2_relu6_is_opt_in_and_blocks_are_linear():
    model = _structure("torchvision:mobilenet_v2")
    index = GraphIndex(trace(model).gm)
    assert len(index.sites(("ReLU",))) == 0
    assert len(index.sites(("ReLU6",))) == 35
    with pytest.warns(ns.NoEffectWarning):
        report = ns.plan(model, ns.EraseReLU(act_types=("ReLU6",)))
    assert report.changed == 0
    assert any("end linearly" in n for n in report.passes[0].notes)


def test_shared_module_calls_are_separate_sites():
    gm = trace(_structure("torchvision:resnet18")).gm
    sites = GraphIndex(gm).sites()
    shared = [s for s in sites if s.target == "layer1.0.relu"]
    assert [s.label for s in shared] == ["layer1.0.relu", "layer1.0.relu@1"]
    assert sum(isinstance(m, nn.ReLU) for m in gm.modules()) == 9


def test_functional_and_method_sites_are_found():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            x = F.relu(self.conv(x))
            x = torch.relu(x)
            return x.relu()

    sites = GraphIndex(fx.symbolic_trace(M())).sites()
    assert [s.kind for s in sites] == ["function", "function", "method"]


def test_timm_vgg16_uses_leaf_rung_and_reaches_nested_activations():
    traced = trace(_structure("timm:vgg16"))
    assert traced.rung is Rung.FX_TIMM_LEAVES
    assert traced.failures and traced.failures[0].startswith("fx:")
    sites = GraphIndex(traced.gm).sites()
    assert sum(s.kind == "nested" for s in sites) == 2  # ConvMlp's two activations


def test_untraceable_model_falls_back_to_module_tree():
    traced = trace(ns.load_model("netsurgeon:untraceable"))
    assert traced.rung is Rung.MODULE_TREE and not traced.has_graph


def test_tracing_never_touches_the_callers_instance(tiny_resnet):
    before = {k: v.clone() for k, v in tiny_resnet.state_dict().items()}
    traced = trace(tiny_resnet)
    assert traced.module is not tiny_resnet
    assert all(torch.equal(before[k], v) for k, v in tiny_resnet.state_dict().items())


def test_untraced_stateful_modules_stay_in_state_dict():
    model = _structure("torchvision:googlenet", init_weights=False)  # aux heads: not called in eval
    gm = trace(model).gm
    assert gm.state_dict().keys() == model.state_dict().keys()


@pytest.mark.parametrize("spec,target", [("torchvision:resnet18", "fc"), ("torchvision:vgg16", "classifier.6"),
                                          ("torchvision:densenet121", "classifier"), ("timm:resnet18", "fc"),
                                          ("netsurgeon:tiny_convnet", "classifier.6")])
def test_head_is_found_by_walking_back_from_the_output(spec, target):
    head = GraphIndex(trace(_structure(spec)).gm).head()
    assert head is not None and head.target == target


def test_inplace_guard_refuses_when_input_is_read_later():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            y = self.conv(x)
            z = self.act(y)  # mutates y
            return z + y  # reads y after the in-place ReLU

    index = GraphIndex(fx.symbolic_trace(M()))
    (site,) = index.sites()
    with pytest.raises(SurgeryError, match="read again afterwards"):
        check_inplace_safe(index, site)


def test_residual_blocks_found_structurally_in_model_without_known_classes(tiny_resnet):
    blocks = GraphIndex(trace(tiny_resnet).gm).blocks()
    assert [(b.name, b.kind) for b in blocks] == [("layer1", "residual"), ("layer2", "residual"),
                                                  ("layer3", "residual")]
