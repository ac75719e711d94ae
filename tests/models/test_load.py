"""load_model: name resolution, checkpoints (safe reading, unwrapping, strict keys), offline errors."""

import pickle
import urllib.error

import pytest
import torch
from safetensors.torch import save_file

import netsurgeon as ns
from netsurgeon.errors import CheckpointError, ModelLoadError, PretrainedUnavailableError, UnknownNameError
from netsurgeon.models import get_info, resolve_spec
from tests.conftest import state_equal


def test_prefixes_and_bare_names_resolve():
    assert resolve_spec("timm:resnet50") == ("timm", "resnet50")
    assert resolve_spec("tv:resnet50") == ("torchvision", "resnet50")
    assert resolve_spec("resnet50") == ("torchvision", "resnet50")  # torchvision wins when both have it
    assert resolve_spec("resnet50d") == ("timm", "resnet50d")  # only timm has it


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet50'"):
        ns.load_model("resnt50")
    with pytest.raises(UnknownNameError, match="timm model"):
        ns.load_model("timm:resnet5O")
    with pytest.raises(UnknownNameError, match="prefix"):
        ns.load_model("keras:resnet50")


def test_loaded_model_is_in_eval_mode_with_provenance():
    model = ns.load_model("timm:resnet18", num_classes=7)
    info = get_info(model)
    assert not model.training and info.spec == "timm:resnet18" and info.kwargs == {"num_classes": 7}
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)


@pytest.fixture
def weights(tiny_resnet):
    return {k: v.clone() for k, v in tiny_resnet.state_dict().items()}


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module_prefix", "compile_prefix"])
def test_torch_checkpoints_are_unwrapped(tmp_path, weights, wrap):
    obj = {
        "plain": weights,
        "state_dict": {"state_dict": weights, "epoch": 3},
        "model": {"model": weights, "optimizer": {}},
        "module_prefix": {f"module.{k}": v for k, v in weights.items()},
        "compile_prefix": {f"_orig_mod.{k}": v for k, v in weights.items()},
    }[wrap]
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    model = ns.load_model("netsurgeon:tiny_resnet", checkpoint=path)
    assert state_equal(model.state_dict(), weights)
    assert len(get_info(model).checkpoint_sha256) == 64


def test_safetensors_checkpoint(tmp_path, weights):
    path = tmp_path / "w.safetensors"
    save_file(weights, str(path))
    assert state_equal(ns.load_model("netsurgeon:tiny_resnet", checkpoint=path).state_dict(), weights)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        ns.load_model("netsurgeon:tiny_resnet", checkpoint=tmp_path / "nope.pth")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_checkpoint(tmp_path, weights, suffix):
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save(weights, path)
    else:
        save_file(weights, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        ns.load_model("netsurgeon:tiny_resnet", checkpoint=path)


def test_corrupt_checkpoint(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError):
        ns.load_model("netsurgeon:tiny_resnet", checkpoint=path)


class _Payload:
    def __reduce__(self):
        return (print, ("code ran while unpickling",))


def test_pickle_carrying_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Payload()}, path, pickle_protocol=2)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        ns.load_model("netsurgeon:tiny_resnet", checkpoint=path)
    assert "code ran" not in capsys.readouterr().out


def test_unsupported_extension(tmp_path):
    path = tmp_path / "w.h5"
    path.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unsupported file type"):
        ns.load_model("netsurgeon:tiny_resnet", checkpoint=path)


def test_mismatched_keys_are_named(tmp_path, weights):
    weights.pop("fc.bias")
    weights["extra.weight"] = torch.zeros(1)
    path = tmp_path / "w.pth"
    torch.save(weights, path)
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\): fc.bias; unexpected 1 key\(s\): extra.weight"):
        ns.load_model("netsurgeon:tiny_resnet", checkpoint=path)


def test_class_count_mismatch_hints_num_classes(tmp_path, weights):
    """A mismatch outside the classifier stays an error (a new class count only re-initialises the head)."""
    path = tmp_path / "w.pth"
    bad = dict(weights)
    key = next(k for k in bad if k.endswith("weight") and bad[k].ndim == 4)
    bad[key] = torch.zeros(bad[key].shape[0] + 1, *bad[key].shape[1:])
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match="num-classes"):
        ns.load_model("netsurgeon:tiny_resnet", checkpoint=path, num_classes=3)


def test_bad_num_classes():
    with pytest.raises(ModelLoadError, match="positive"):
        ns.load_model("netsurgeon:tiny_resnet", num_classes=0)


def test_pretrained_torchvision_offline_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    with pytest.raises(PretrainedUnavailableError, match="--checkpoint"):
        ns.load_model("torchvision:resnet18", pretrained=True)


def test_pretrained_timm_offline_error(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(PretrainedUnavailableError, match="--checkpoint"):
        ns.load_model("timm:resnet18", pretrained=True)


def test_unpickling_safety_is_not_bypassed_by_extension(tmp_path):
    path = tmp_path / "w.bin"
    with open(path, "wb") as fh:
        pickle.dump(_Payload(), fh)
    with pytest.raises(CheckpointError):
        ns.load_model("netsurgeon:tiny_resnet", checkpoint=path)
