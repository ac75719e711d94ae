"""Issue 23's findings that are behaviour, not refusals: a user's hooks on a module a pass swaps. Failed before."""

from __future__ import annotations

import pytest
import torch

import netsurgeon as ns


def test_15_forward_hooks_on_a_swapped_relu_move_to_its_replacement():
    model = ns.load_model("netsurgeon:tiny_convnet")
    seen: list[str] = []
    model.features[1].register_forward_hook(lambda module, args, out: seen.append(type(module).__name__))
    model.features[1].register_forward_pre_hook(lambda module, args: seen.append("pre"))
    with pytest.warns(UserWarning, match=r"module swap at features\.1: the hooks on features\.1 now run on its "
                                         r"replacement PDReLU"):
        result = ns.apply(model, "pd-relu")
    assert type(result.model.features[1]).__name__ == "PDReLU"
    seen.clear()
    result.model(torch.randn(1, *ns.models.info.model_input_size(result.model)))
    assert seen == ["pre", "PDReLU"]


def test_15_a_forward_hook_on_the_head_survives_spinal_head():
    model = ns.load_model("netsurgeon:tiny_resnet", input_size=(3, 16, 16))
    logits: list[torch.Size] = []
    model.fc.register_forward_hook(lambda module, args, out: logits.append(out.shape))
    with pytest.warns(UserWarning, match=r"the hooks on fc now run on its replacement SpinalHead"):
        result = ns.apply(model, "spinal-head")
    logits.clear()
    result.model(torch.randn(2, 3, 16, 16))
    assert logits == [torch.Size([2, 10])]
