"""A rewritten block keeps its class's calling convention (timm DLA's DlaBasic.forward(x, shortcut=None,
children=None)): names, defaults and their meaning; a call no edited variant was traced for is refused
naming the block. Models whose output is a list or dict (timm features_only) go through apply."""

import inspect

import pytest
import torch

import netsurgeon as ns
from netsurgeon.graph.codegen import base_class


@pytest.fixture(scope="module")
def dla():
    import timm

    torch.manual_seed(0)
    model = timm.create_model("dla34", num_classes=10).eval()
    return model, ns.apply(model, "erase-relu", input_size=(3, 64, 64)).model


def _basic_blocks(model):
    return [(path, m) for path, m in model.named_modules() if type(m).__name__ == "DlaBasic"]


def test_dla_block_rewritten_by_erase_relu_works_as_its_class_documents(dla):
    original, result = dla
    blocks = _basic_blocks(result)
    assert blocks and all(base_class(m) is not type(m) for _, m in blocks)  # every one was rewritten
    for path, block in blocks:
        params = inspect.signature(type(block).forward).parameters
        assert list(params) == ["self", "x", "shortcut", "children"], path  # names kept (no children_1)
        assert params["shortcut"].default is None and params["children"].default is None
    block = result.get_submodule("level3.tree1.tree2")  # stride 1: block(x) is a valid call
    x = torch.randn(1, 128, 8, 8)
    with torch.no_grad():
        alone = block(x)  # shortcut defaults to x, as DlaBasic.forward says
        assert torch.equal(alone, block(x, x)) and torch.equal(alone, block(x, shortcut=x))
        # erase-relu removed the block's last ReLU: the original's output is that ReLU of this one
        assert torch.equal(torch.relu(alone), original.get_submodule("level3.tree1.tree2")(x))
        other = torch.randn(1, 128, 8, 8)
        assert torch.equal(torch.relu(block(x, other)), original.get_submodule("level3.tree1.tree2")(x, other))


def test_a_call_no_variant_was_traced_for_is_refused_naming_the_block(dla):
    _, result = dla
    block = result.get_submodule("level3.tree1.tree2")
    x = torch.randn(1, 128, 8, 8)
    with pytest.raises(RuntimeError, match=r"level3\.tree1\.tree2 \(DlaBasic\) was rewritten by netsurgeon"):
        block(x, children=[x])


@pytest.mark.parametrize("feature_cls", ["list", "dict"])
@pytest.mark.parametrize("pass_name", ["pd-relu", "erase-relu"])
def test_apply_on_a_features_only_model(feature_cls, pass_name):
    import timm

    model = timm.create_model("resnet18", features_only=True, out_indices=(1, 2), feature_cls=feature_cls).eval()
    result = ns.apply(model, pass_name, input_size=(3, 64, 64))
    verification = result.report.verification
    assert verification.ok and verification.outputs_equal == (pass_name == "pd-relu")
    with torch.no_grad():
        out = result.model(torch.randn(1, 3, 64, 64))
    assert len(out) == 2


def test_a_head_pass_on_a_features_only_model_is_one_line():
    import timm

    model = timm.create_model("resnet18", features_only=True, out_indices=(1, 2)).eval()
    with pytest.raises(ns.NetsurgeonError) as err:
        ns.apply(model, "spinal-head", input_size=(3, 64, 64))
    assert "\n" not in str(err.value)


def test_an_output_that_is_not_tensors_is_refused_in_one_line():
    class Text(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return {"label": "cat", "map": torch.relu(self.conv(x))}

    with pytest.raises(ns.NetsurgeonError, match="returns a dict holding str") as err:
        ns.apply(Text(), "pd-relu", input_size=(3, 16, 16))
    assert "\n" not in str(err.value)
