"""proportional-relu: the keep formula, the window rule, the worked examples (arXiv 1709.06247)."""

import warnings

import pytest
import torch

import netsurgeon as ns
from netsurgeon.errors import ConfigError
from netsurgeon.graph.index import GraphIndex
from netsurgeon.graph.trace import trace
from netsurgeon.passes.proportional_relu import ProportionalReLU, keeps, kept_count, plan_proportional
from netsurgeon.workspace import record_shapes
from tests.conftest import state_equal

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def _labels(model, act_types=("ReLU",)) -> set[str]:
    return {s.label for s in GraphIndex(trace(model).gm).sites(act_types)}


def _apply(spec: str, cfg: ProportionalReLU):
    model = ns.load_model(spec)
    gm = trace(model).gm
    shapes = record_shapes(gm, X) if cfg.scope == "stage" else None
    plans = plan_proportional(GraphIndex(gm), cfg, shapes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ns.apply(model, cfg, example_input=X)
    return model, plans, result


def test_keep_rule_matches_the_spec_examples():
    assert [keeps(i, 2, 1, 0) for i in range(4)] == [False, True, False, True]  # conv..conv -> ReLU
    assert [keeps(i, 2, 1, 1) for i in range(2)] == [True, False]  # phase N-1: at the start
    assert [i for i in range(3) if keeps(i, 3, 2, 0)] == [1, 2]
    assert [i for i in range(3) if keeps(i, 3, 2, 2)] == [0, 2]
    for n, m, phase, count in [(2, 1, 0, 5), (3, 2, 1, 7), (5, 3, 4, 11), (4, 1, 2, 3)]:
        assert kept_count(count, n, m, phase) == sum(keeps(i, n, m, phase) for i in range(count))


CASES = [
    ("torchvision:resnet18", ProportionalReLU()),
    ("torchvision:resnet18", ProportionalReLU(N=3, M=1)),  # 2-conv blocks: min_keep protects them
    ("torchvision:resnet50", ProportionalReLU(N=3, M=2)),
    ("torchvision:resnet50", ProportionalReLU(N=4, M=3, scope="stage", phase=2)),
    ("torchvision:vgg16", ProportionalReLU(scope="stage")),
    ("torchvision:densenet121", ProportionalReLU(scope="network", N=5, M=2, phase=1)),
    ("timm:resnetv2_50", ProportionalReLU()),
    ("timm:seresnext26d_32x4d", ProportionalReLU(N=3, M=1, min_keep=0, include_stem=True)),
]


@pytest.mark.parametrize(("spec", "cfg"), CASES, ids=[f"{s}-{c.N}:{c.M}-{c.scope}" for s, c in CASES])
def test_kept_count_per_scope_and_every_full_window(spec, cfg):
    model, plans, result = _apply(spec, cfg)
    survivors = _labels(result.model)
    assert state_equal(result.model.state_dict(), model.state_dict())  # invariant 3
    total_erased = 0
    for plan in plans:
        owned = [s.label if s else None for s in plan.owned]
        kept = [label for label in owned if label in survivors]
        total_erased += sum(label is not None and label not in survivors for label in owned)
        if all(owned):  # invariant 1: the formula (raised to min_keep)
            expected = max(kept_count(len(owned), cfg.N, cfg.M, cfg.phase), min(cfg.min_keep, len(owned)))
            assert len(kept) == expected, plan.name
        if not plan.raised:  # invariant 2: exactly M survivors in every full window of N
            windows: dict[int, list[str | None]] = {}
            for i, label in enumerate(owned):
                windows.setdefault((i + cfg.phase) // cfg.N, []).append(label)
            for members in windows.values():
                if len(members) == cfg.N and all(members):
                    assert sum(label in survivors for label in members) == cfg.M, plan.name
    assert result.report.relu_sites_before - result.report.relu_sites_after == total_erased


def test_resnet18_2_to_1_erases_the_mid_relu_and_phase_1_is_erase_relu():
    resnet18 = ns.load_model("torchvision:resnet18")
    result = ns.apply(resnet18, ProportionalReLU(), example_input=X)
    assert (result.report.relu_sites_before, result.report.relu_sites_after) == (17, 9)
    erased = {c.site for c in result.report.passes[0].changes}
    assert erased == {f"layer{i}.{j}.relu" for i in range(1, 5) for j in range(2)}  # call 0: after conv1
    shifted = ns.apply(resnet18, ProportionalReLU(phase=1), example_input=X).report.passes[0].changes
    erase_relu = ns.apply(resnet18, ns.EraseReLU(), example_input=X).report.passes[0].changes
    assert [c.site for c in shifted] == [c.site for c in erase_relu]


def test_resnet50_3_to_2_keeps_conv2_and_post_add():
    _, _, result = _apply("torchvision:resnet50", ProportionalReLU(N=3, M=2))
    assert (result.report.relu_sites_before, result.report.relu_sites_after) == (49, 33)
    assert all(c.site.endswith(".relu") for c in result.report.passes[0].changes)  # the first call only


def test_vgg16_stage_keeps_one_relu_per_stage_and_the_classifier():
    _, plans, result = _apply("torchvision:vgg16", ProportionalReLU(scope="stage"))
    assert [len(p.convs) for p in plans] == [2, 2, 3, 3, 3]
    survivors = _labels(result.model)
    assert [sum(s.label in survivors for s in p.owned) for p in plans] == [1, 1, 1, 1, 1]
    assert {"classifier.1", "classifier.4"} <= survivors
    assert len(survivors) == 7


def test_shortcut_se_and_stem_are_not_counted():
    model, plans, result = _apply("timm:seresnext26d_32x4d", ProportionalReLU())
    before = _labels(model)
    survivors = _labels(result.model)
    se = {label for label in before if ".se." in label}
    stem = {label for label in before if label.startswith("stem") or label == "act1"}
    assert se and stem and se <= survivors and stem <= survivors  # invariant 5
    counted = {c for p in plans for c in p.convs}
    assert not any("downsample" in c or "_se_" in c for c in counted)
    assert all(len(p.convs) == 3 for p in plans)  # conv1, conv2, conv3 per bottleneck


def test_include_stem_counts_the_stem():
    plans = plan_proportional(GraphIndex(trace(ns.load_model("torchvision:resnet18")).gm),
                              ProportionalReLU(include_stem=True))
    assert plans[0].name == "stem" and len(plans[0].convs) == 1


@pytest.mark.parametrize(("params", "message"), [
    ({"N": 2, "M": 2}, "N must be greater than M"),
    ({"M": 0}, "M must be at least 1"),
    ({"phase": 2}, "phase must be between 0 and N-1=1"),
    ({"scope": "layer"}, "scope='layer' is invalid"),
])
def test_bad_ratios_are_rejected(params, message):
    with pytest.raises(ConfigError, match=message):
        ns.get_pass("proportional-relu").make_config(params)


def test_cli_apply_proportional_relu(tmp_path):
    from typer.testing import CliRunner

    from netsurgeon.cli import app

    result = CliRunner().invoke(app, ["apply", "proportional-relu", "-m", "netsurgeon:tiny_resnet",
                                      "--set", "N=3", "--set", "M=2", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "proportional-relu" in result.output and (tmp_path / "o" / "model.safetensors").exists()
