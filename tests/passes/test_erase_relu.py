"""erase-relu: the pass's invariants (arXiv 1709.07634), config validation, and refusal paths."""

import pytest
import torch
from torch import fx, nn

import netsurgeon as ns
from netsurgeon.errors import ConfigError, NoMatchError, TraceError
from netsurgeon.graph.index import GraphIndex
from netsurgeon.graph.trace import trace
from netsurgeon.passes.erase_relu import select_blocks
from tests.conftest import state_equal


@pytest.fixture(scope="module")
def resnet18():
    return ns.load_model("torchvision:resnet18")


X32 = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_state_dict_and_parameters_unchanged_and_caller_untouched(resnet18):
    before = {k: v.clone() for k, v in resnet18.state_dict().items()}
    result = ns.apply(resnet18, ns.EraseReLU(), example_input=X32)
    assert state_equal(result.model.state_dict(), before)
    assert state_equal(resnet18.state_dict(), before)  # the input model is not mutated
    assert sum(isinstance(m, nn.ReLU) for m in resnet18.modules()) == 9
    assert not isinstance(resnet18, fx.GraphModule)
    v = result.report.verification
    assert v.state_unchanged and v.ok and not v.outputs_equal


def test_state_dict_loads_strictly_into_original_constructor(resnet18):
    import torchvision

    result = ns.apply(resnet18, ns.EraseReLU(), example_input=X32)
    fresh = torchvision.models.resnet18()
    fresh.load_state_dict(result.model.state_dict(), strict=True)


def test_erased_block_output_is_the_post_add_tensor_and_goes_negative(resnet18):
    """Invariant 3: the block now returns its add directly, so it has negative entries."""
    result = ns.apply(resnet18, ns.EraseReLU(), example_input=X32)
    captured = {}
    gm = result.model
    gm.layer1.get_submodule("0").bn2.register_forward_hook(lambda m, i, o: captured.setdefault("bn2", o))
    # the block's output is what layer1.1 receives first
    gm.layer1.get_submodule("1").conv1.register_forward_pre_hook(lambda m, i: captured.setdefault("in", i[0]))
    with torch.no_grad():
        gm(X32)
    assert (captured["in"] < 0).any()


def test_shared_relu_module_survives_and_is_called_once(resnet18):
    """Invariant 7: layer1.0.relu still exists and is called by exactly one site."""
    model = ns.apply(resnet18, ns.EraseReLU(), verify=False).model
    sites = GraphIndex(trace(model).gm).sites()
    assert [s.label for s in sites if s.target == "layer1.0.relu"] == ["layer1.0.relu"]
    assert isinstance(model.get_submodule("layer1.0.relu"), nn.ReLU)


def test_proportion_zero_is_identity(resnet18):
    with pytest.warns(ns.NoEffectWarning):
        result = ns.apply(resnet18, ns.EraseReLU(proportion=0.0), example_input=X32)
    v = result.report.verification
    assert v.outputs_equal and result.report.relu_sites_after == 17


@pytest.mark.parametrize("select,expected", [("even", [1, 3, 5, 7]), ("first", [0, 1, 2, 3]), ("last", [4, 5, 6, 7])])
def test_select_rules(select, expected):
    assert select_blocks(8, 0.5, select) == expected
    assert len(select_blocks(7, 0.3, select)) == 2  # floor(7 * 0.3)


def test_proportion_erases_evenly_spread_modules(resnet18):
    report = ns.plan(resnet18, ns.EraseReLU(proportion=0.5))
    assert [c.block for c in report.passes[0].changes] == ["layer1.1", "layer2.1", "layer3.1", "layer4.1"]
    assert report.relu_sites_after == 13


def test_stem_and_head_excluded_unless_included(tiny_convnet):
    base = ns.plan(tiny_convnet, ns.EraseReLU())
    assert base.relu_sites_after == 4  # 2 stages erased, the 2 classifier ReLUs kept
    head = ns.plan(tiny_convnet, ns.EraseReLU(include_head=True))
    assert [c.site for c in head.passes[0].changes][-1] == "classifier.4"


def test_include_stem_on_resnet_erases_stem_relu():
    model = ns.load_model("torchvision:resnet18")
    report = ns.plan(model, ns.EraseReLU(include_stem=True))
    assert report.passes[0].changes[0].site == "relu" and report.relu_sites_after == 8


def test_reapplying_is_refused_unless_asked(resnet18):
    once = ns.apply(resnet18, ns.EraseReLU(), verify=False).model
    with pytest.raises(ConfigError, match="already applied"):
        ns.apply(once, ns.EraseReLU(), verify=False)
    with pytest.warns(ns.NoEffectWarning):  # every block now ends linearly: skipped by default
        again = ns.apply(once, ns.EraseReLU(), verify=False, allow_reapply=True)
    assert again.report.relu_sites_after == 9
    twice = ns.apply(once, ns.EraseReLU(skip_linear_blocks=False), verify=False, allow_reapply=True)
    assert twice.report.relu_sites_after == 1  # the *new* last sites went too; the stem ReLU stays


def test_position_index_and_parallel_branch_refusal(resnet18):
    first = ns.plan(resnet18, ns.EraseReLU(position=0))
    assert first.passes[0].changes[0].site == "layer1.0.relu"
    googlenet = ns.load_model("torchvision:googlenet", init_weights=False)
    with pytest.raises(ns.NetsurgeonError, match="parallel branches"):
        ns.plan(googlenet, ns.EraseReLU(position=-1))


def test_include_patterns_select_modules_and_unmatched_raises(resnet18):
    report = ns.plan(resnet18, ns.EraseReLU(include=("layer4.*",)))
    assert [c.block for c in report.passes[0].changes] == ["layer4.0", "layer4.1"]
    with pytest.raises(NoMatchError, match="netsurgeon inspect"):
        ns.plan(resnet18, ns.EraseReLU(include=("nothing*",)))


def test_readd_relu_before_head_keeps_features_non_negative(resnet18):
    result = ns.apply(resnet18, ns.EraseReLU(readd_relu_before_head=True), example_input=X32)
    feats = {}
    result.model.avgpool.register_forward_pre_hook(lambda m, i: feats.setdefault("x", i[0]))
    with torch.no_grad():
        result.model(X32)
    assert (feats["x"] >= 0).all()
    assert result.report.relu_sites_after == 10


@pytest.mark.parametrize("bad", [{"proportion": 1.5}, {"proportion": "abc"}, {"select": "random"},
                                 {"act_types": ["GELU"]}, {"position": "first"}, {"act_types": []}])
def test_invalid_config_is_rejected(bad):
    with pytest.raises(ConfigError):
        ns.EraseReLU.from_dict(bad)


def test_unknown_parameter_suggests_the_closest():
    with pytest.raises(ConfigError, match="Did you mean 'proportion'"):
        ns.EraseReLU.from_dict({"proportoin": 0.5})


def test_set_style_strings_are_parsed():
    cfg = ns.EraseReLU.from_dict({"proportion": "0.25", "include_stem": "true", "act_types": "[ReLU, ReLU6]"})
    assert cfg.proportion == 0.25 and cfg.include_stem is True and cfg.act_types == ("ReLU", "ReLU6")


def test_untraceable_model_gets_a_clear_error():
    model = ns.load_model("netsurgeon:untraceable")
    with pytest.raises(TraceError, match="cannot be traced"):
        ns.apply(model, ns.EraseReLU())


def test_works_on_timm_test_model_and_keeps_outputs_finite():
    model = ns.load_model("timm:test_resnet")
    result = ns.apply(model, ns.EraseReLU(), input_size=(3, 32, 32))
    assert result.report.changed == 4 and result.report.verification.ok
    trace(result.model).gm.graph.lint()


def test_graph_is_linted_and_has_no_dead_nodes(resnet18):
    gm = trace(ns.apply(resnet18, ns.EraseReLU(), verify=False).model).gm  # a result can be traced again
    gm.graph.lint()
    assert not any(n.op != "output" and not n.users for n in gm.graph.nodes if n.op != "placeholder")
    assert isinstance(trace(gm).module, fx.GraphModule)  # a result can be traced again
