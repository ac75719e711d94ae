"""gru-fc: the weight-sign and gradient-contribution rules, layer selection, determinism, and the
fine-tuning hooks (Knowledge-Based Systems 248, 108797, 2022)."""

import json
import socket
import warnings

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import netsurgeon as ns
from netsurgeon.cli import app
from netsurgeon.errors import ConfigError, SurgeryError
from netsurgeon.graph.index import GraphIndex
from netsurgeon.graph.trace import trace
from netsurgeon.passes.gru_fc import resolve_layers
from netsurgeon.passes.gru_fc_hooks import attach_to_optimizer, reset_optimizer_state
from netsurgeon.passes.gru_fc_rule import GradientRectifiedFC, accumulate_delta
from tests.conftest import state_equal


def batches(n_batches=4, size=6, classes=10, seed=0, all_classes=True):
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(n_batches):
        y = torch.randint(0, classes, (size,), generator=g)
        if all_classes and k == 0:
            y = torch.arange(size) % classes
        out.append((torch.randn(size, 3, 32, 32, generator=g), y))
    if all_classes:
        out.append((torch.randn(classes, 3, 32, 32, generator=g), torch.arange(classes)))
    return out


def others_unchanged(before: dict, after: dict, changed: set[str]) -> bool:
    return before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before if k not in changed)


def test_weight_sign_zeroes_exactly_the_negative_entries(tiny_resnet):
    before = {k: v.clone() for k, v in tiny_resnet.state_dict().items()}
    result = ns.apply(tiny_resnet, "gru-fc")
    after = result.model.state_dict()
    w_old, w_new = before["fc.weight"], after["fc.weight"]
    assert torch.equal(w_new == 0, (w_old < 0) | (w_old == 0))
    assert torch.equal(w_new[w_old >= 0], w_old[w_old >= 0])  # every other entry bitwise unchanged
    assert torch.equal(after["fc.bias"], before["fc.bias"])
    assert others_unchanged(before, after, {"fc.weight"})
    assert result.report.passes[0].keys_changed == ["fc.weight"] and result.report.verification.ok
    assert state_equal(tiny_resnet.state_dict(), before)  # the caller's model is untouched


def test_grad_contrib_rule_and_delta_equals_class_counts(tiny_resnet):
    data = batches()
    gm = trace(tiny_resnet).gm
    delta = accumulate_delta(gm, ["fc"], data)["fc"]
    counts = torch.bincount(torch.cat([y for _, y in data]), minlength=10).double()
    assert torch.equal(delta, counts)  # single FC, target=label: delta is the per-class count
    cfg = GradientRectifiedFC(mode="grad_contrib", threshold=0.01)
    result = ns.apply(tiny_resnet, cfg, data=data)
    w_old, w_new = tiny_resnet.fc.weight, result.model.fc.weight
    contribution = w_old.double() * delta[:, None]
    assert torch.equal(w_new == 0, (contribution < -0.01) | (w_old == 0))
    assert torch.equal(w_new[w_new != 0], w_old[w_new != 0])


def test_single_fc_grad_contrib_equals_weight_sign_when_every_class_occurs(tiny_resnet):
    data = batches()
    sign = ns.apply(tiny_resnet, GradientRectifiedFC(mode="weight_sign")).model.fc.weight
    contrib = ns.apply(tiny_resnet, GradientRectifiedFC(mode="grad_contrib"), data=data).model.fc.weight
    assert torch.equal(sign == 0, contrib == 0)


def test_absent_classes_keep_their_rows(tiny_resnet):
    data = [(torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2]))]
    w = ns.apply(tiny_resnet, GradientRectifiedFC(mode="grad_contrib"), data=data).model.fc.weight
    assert torch.equal(w[3:], tiny_resnet.fc.weight[3:])


def test_mask_does_not_depend_on_batch_order(tiny_convnet):
    data = batches(n_batches=6, all_classes=False)
    a = ns.apply(tiny_convnet, "gru-fc", data=data).model.state_dict()
    b = ns.apply(tiny_convnet, "gru-fc", data=list(reversed(data))).model.state_dict()
    for key in ("classifier.3.weight", "classifier.6.weight"):
        assert torch.equal(a[key] == 0, b[key] == 0)


@pytest.mark.parametrize(("spec", "expected"), [
    ("torchvision:vgg16_bn", ["classifier.3", "classifier.6"]),
    ("torchvision:alexnet", ["classifier.4", "classifier.6"]),
])
def test_gru_fc_2l_selects_the_last_two_linear_layers(spec, expected):
    with torch.device("meta"):  # structure only: no weights needed to pick the layers
        model = ns.load_model(spec)
    index = GraphIndex(trace(model).gm)
    assert resolve_layers(index, GradientRectifiedFC()) == (expected, "grad_contrib")


@pytest.mark.parametrize(("spec", "expected"), [
    ("timm:test_convnext", (["head.fc"], "weight_sign")),  # not the last block's pointwise MLP (fc1, fc2)
    ("timm:test_mambaout", (["head.pre_logits.fc", "head.fc"], "grad_contrib")),  # a real 2-layer MLP head
])
def test_the_classifier_ends_at_pooling_and_residual_adds(spec, expected):
    """Linear layers behind the global pooling or a residual add act per position (like 1x1 convolutions:
    a block's MLP, Swin's patch merging, Hiera's stage projections) and are not FC layers of the head."""
    index = GraphIndex(trace(ns.load_model(spec)).gm)
    assert resolve_layers(index, GradientRectifiedFC()) == expected


class _Distilled(nn.Module):
    """Two FC heads averaged, as timm LeViT, EfficientFormer and SwiftFormer do in eval mode."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head, self.head_dist = nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x):
        x = self.body(x)
        return (self.head(x) + self.head_dist(x)) / 2


def test_two_averaged_heads_are_named_by_the_user():
    model = _Distilled().eval()
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(SurgeryError, match="distillation head"):
        ns.apply(model, "gru-fc", example_input=x)
    data = [(x, torch.tensor([0, 1, 2, 0, 1, 2]))]
    result = ns.apply(model, ("gru-fc", {"layers": ["head", "head_dist"], "mode": "grad_contrib"}),
                      example_input=x, data=data)
    assert sorted(result.report.passes[0].keys_changed) == ["head.weight", "head_dist.weight"]
    with pytest.raises(SurgeryError, match="only holds for a single layer making the logits"):
        ns.apply(model, ("gru-fc", {"layers": ["head"], "mode": "weight_sign"}), example_input=x)


def test_single_fc_model_auto_picks_weight_sign():
    index = GraphIndex(trace(ns.load_model("torchvision:resnet18")).gm)
    assert resolve_layers(index, GradientRectifiedFC()) == (["fc"], "weight_sign")


def test_grad_contrib_on_vgg_changes_only_the_two_layers():
    model = ns.load_model("torchvision:vgg11_bn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = batches(n_batches=2, size=4, classes=1000, all_classes=False)
    result = ns.apply(model, "gru-fc", data=data, example_input=data[0][0])
    after = result.model.state_dict()
    assert others_unchanged(before, after, {"classifier.3.weight", "classifier.6.weight"})
    assert (after["classifier.3.weight"] == 0).sum() > (before["classifier.3.weight"] == 0).sum()


def test_freeze_zeros_survives_a_step_with_weight_decay_and_reset_clears_momentum(tiny_resnet):
    model = ns.apply(tiny_resnet, GradientRectifiedFC(freeze_zeros=True)).model.train()
    zeros = model.fc.weight == 0
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    attach_to_optimizer(model, opt)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.arange(4)).backward()
        opt.step()
    assert torch.equal(model.fc.weight[zeros], torch.zeros(int(zeros.sum())))
    assert (model.fc.weight[~zeros] != tiny_resnet.fc.weight[~zeros]).any()  # the rest trains
    assert reset_optimizer_state(opt, [model.fc.weight]) == 1 and opt.state[model.fc.weight] == {}


def test_without_freeze_zeros_weights_regrow():
    model = ns.apply(ns.load_model("netsurgeon:tiny_resnet"), "gru-fc").model.train()
    zeros = model.fc.weight == 0
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.arange(4)).backward()
    opt.step()
    assert (model.fc.weight[zeros] != 0).any()


def test_config_and_data_errors(tiny_convnet):
    with pytest.raises(ConfigError, match="needs data: give --data"):
        ns.apply(tiny_convnet, "gru-fc")
    with pytest.raises(ConfigError, match="rounds=3 needs every_n_epochs"):
        GradientRectifiedFC(rounds=3)
    with pytest.raises(SurgeryError, match="only holds for the logits layer"):
        ns.apply(tiny_convnet, GradientRectifiedFC(mode="weight_sign", layers=("classifier.3",)))
    with pytest.raises(SurgeryError, match="not an nn.Linear"):
        ns.apply(tiny_convnet, GradientRectifiedFC(layers=("features.0",)), data=batches())


def test_cli_weight_sign_needs_no_data_and_grad_contrib_asks_for_it(tmp_path):
    model = ns.load_model("netsurgeon:tiny_resnet")
    torch.save(model.state_dict(), tmp_path / "w.pth")
    runner = CliRunner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ok = runner.invoke(app, ["apply", "gru-fc", "--model", "netsurgeon:tiny_resnet", "--checkpoint",
                                 str(tmp_path / "w.pth"), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["report"]["passes"][0]["changes"][0]["site"] == "fc"
    asks = runner.invoke(app, ["apply", "gru-fc", "--model", "netsurgeon:tiny_convnet", "--out", str(tmp_path / "o")])
    assert asks.exit_code == 1 and "--data" in asks.output and "Traceback" not in asks.output
    assert not (tmp_path / "o").exists()


def test_cli_grad_contrib_with_embedded_digits_data():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = CliRunner().invoke(app, ["apply", "gru-fc", "--model", "netsurgeon:tiny_convnet", "--data", "digits",
                                          "--json"])
    assert result.exit_code == 0, result.output
    changes = json.loads(result.stdout)["report"]["passes"][0]["changes"]
    assert [c["site"] for c in changes] == ["classifier.3", "classifier.6"] and "grad_contrib" in changes[0]["after"]


def _rank_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = ns.load_model("netsurgeon:tiny_convnet")
        shard = batches(n_batches=6, all_classes=False)[rank::world]  # each rank sees different data
        result = ns.apply(model, "gru-fc", data=shard)
        torch.save(result.model.state_dict(), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_distributed_ranks_get_the_same_mask_as_one_process_on_all_data(tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    torch.manual_seed(0)
    single = ns.apply(ns.load_model("netsurgeon:tiny_convnet"), "gru-fc",
                      data=batches(n_batches=6, all_classes=False)).model.state_dict()
    for key in ("classifier.3.weight", "classifier.6.weight"):
        assert torch.equal(ranks[0][key], ranks[1][key])
        assert torch.equal(ranks[0][key] == 0, single[key] == 0)


def test_labels_outside_the_models_classes_are_refused_in_python_too():
    """Issue 15 item 15 through the Python API: a clear ConfigError, not an IndexError."""
    model = ns.load_model("netsurgeon:tiny_convnet")
    data = [(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 50]))]
    with pytest.raises(ns.NetsurgeonError, match="falls outside the model's"):
        ns.apply(model, ns.GradientRectifiedFC(mode="grad_contrib"), data=data)
