"""timm's own model tests (tests/test_models.py), re-stated here, over every pass: a result must pass what
the original passes. Checks: forward without NaN, backward reaching every parameter, forward_features /
forward_head agreement, reset_classifier(0) and (0, "") output shapes, the pretrained_cfg classifier and
first_conv keys present in the state_dict, forward_intermediates, fx forward equality and fx backward
(timm's fx feature extraction). A pass with no sites on a model (the ReLU passes on test_vit, whose
activations are GELU) is noted by a skip. Small inputs and one surgery per (model, pass) per session keep
the whole module under a minute on a CPU."""

import copy
import warnings

import pytest
import torch

import netsurgeon as ns

PASSES = [p.name for p in ns.list_passes()]
PARAMS: dict[str, dict] = {"gru-fc": {"mode": "weight_sign"}}
#: model -> input size (small: these are shape and gradient checks, not accuracy)
MODELS = {"resnet18": 64, "mobilenetv3_small_050": 64, "test_byobnet": 64, "test_vit": 160,
          "dla34": 64, "regnetx_002": 64, "densenet121": 64}
CELLS = [pytest.param(m, p, id=f"{m}-{p}") for m in MODELS for p in PASSES]
BATCH = 2


@pytest.fixture(scope="session")
def surgery(shared_model):
    """(model, pass) -> (result, input) or None when the pass has no sites there; built once per session,
    each base model once (shared by the passes)."""
    import timm

    cache: dict = {}

    def get(name: str, pass_name: str):
        if (name, pass_name) not in cache:
            model = shared_model(("timm", name), lambda: timm.create_model(name, num_classes=10).eval())
            size = MODELS[name]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ns.NoEffectWarning)
                result = ns.apply(model, (pass_name, PARAMS.get(pass_name, {})), input_size=(3, size, size))
            none = any(issubclass(w.category, ns.NoEffectWarning) for w in caught)
            x = torch.randn(BATCH, 3, size, size, generator=torch.Generator().manual_seed(1))
            cache[(name, pass_name)] = None if none else (result.model, x)
        return cache[(name, pass_name)]

    return get


def _get(surgery, name, pass_name):
    got = surgery(name, pass_name)
    if got is None:
        pytest.skip(f"{pass_name} has no sites on {name}")
    model, x = got
    return copy.deepcopy(model), x


@pytest.mark.parametrize(("name", "pass_name"), CELLS)
def test_forward_backward_and_head(surgery, name, pass_name):
    model, x = _get(surgery, name, pass_name)
    model.eval()
    with torch.no_grad():
        out = model(x)
        assert out.shape == (BATCH, 10) and not torch.isnan(out).any()
        # forward_features / forward_head agree with forward
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), out, rtol=1e-5, atol=1e-5)
    # backward reaches every parameter (train mode, as timm's test_model_backward)
    model.train()
    model(x).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing[:5]
    # the pretrained_cfg keys timm reads are in the state_dict
    state = model.state_dict()
    cfg = model.pretrained_cfg
    classifiers = [cfg["classifier"]] if isinstance(cfg["classifier"], str) else list(cfg["classifier"])
    for key in classifiers:
        assert f"{key}.weight" in state, key
    convs = [cfg["first_conv"]] if isinstance(cfg.get("first_conv"), str) else list(cfg.get("first_conv") or [])
    for key in convs:
        assert f"{key}.weight" in state, key
    assert model.num_classes == 10 and model.get_classifier() is not None


@pytest.mark.parametrize(("name", "pass_name"), CELLS)
def test_reset_classifier(surgery, name, pass_name):
    model, x = _get(surgery, name, pass_name)
    model.eval()
    model.reset_classifier(0)
    with torch.no_grad():
        pooled = model(x)
    # timm's own rule: the pre-logits width is head_hidden_size where the model has a hidden head layer
    assert pooled.shape == (BATCH, getattr(model, "head_hidden_size", None) or model.num_features)
    model.reset_classifier(0, "")
    with torch.no_grad():
        unpooled = model(x)
    assert unpooled.dim() in (3, 4) and unpooled.shape[0] == BATCH  # (B, C, H, W), or (B, N, C) for a ViT


@pytest.mark.parametrize(("name", "pass_name"), CELLS)
def test_forward_intermediates(surgery, name, pass_name):
    model, x = _get(surgery, name, pass_name)
    if not hasattr(model, "forward_intermediates"):
        pytest.skip(f"{name} has no forward_intermediates")
    model.eval()
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        features = model.forward_features(x)
    torch.testing.assert_close(final, features, rtol=1e-5, atol=1e-5)
    assert len(intermediates) == len(model.feature_info)


@pytest.mark.parametrize(("name", "pass_name"), CELLS)
def test_fx_forward_and_backward(surgery, name, pass_name):
    """timm's fx feature extraction of the result: same eval output, and a train-mode backward reaching
    every parameter (timm's test_model_forward_fx / test_model_backward_fx)."""
    from timm.models import get_graph_node_names
    from timm.models._features_fx import create_feature_extractor

    model, x = _get(surgery, name, pass_name)
    model.eval()
    with torch.no_grad():
        expected = model(x)
    train_nodes, eval_nodes = get_graph_node_names(model)
    fx_eval = create_feature_extractor(model, [eval_nodes[-1]]).eval()
    with torch.no_grad():
        (out,) = fx_eval(x).values()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    fx_train = create_feature_extractor(model, [train_nodes[-1]]).train()
    (train_out,) = fx_train(x).values()
    train_out.mean().backward()
    missing = [n for n, p in fx_train.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing[:5]
