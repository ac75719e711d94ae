"""``netsurgeon export-hub``: a fine-tuned artifact as a hub folder (config.json, model.safetensors with the
header, README.md model card), read back by ``ModelCard.load``, ``load_model`` and ``verify``; ``--push``
offline fails in one line and keeps the folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import netsurgeon as ns
from netsurgeon.errors import ExportError
from netsurgeon.models.info import probe_input
from netsurgeon.train import FinetuneConfig, finetune
from netsurgeon.workflows.hub import HubSettings, export_hub
from tests.badinput.helpers import assert_refused, cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """An erase-relu model fine-tuned for a few batches of digits, exported with its ONNX file."""
    torch.manual_seed(0)
    model = ns.load_model("netsurgeon:tiny_resnet", input_size=(3, 8, 8))
    operated = ns.apply(model, ns.EraseReLU(proportion=0.5)).model
    out = tmp_path_factory.mktemp("tuned")
    cfg = FinetuneConfig(epochs=1, batch_size=32, limit_train_batches=2, limit_eval_batches=2, progress=False,
                         log="none", workers=0)
    result = finetune(operated, "digits", cfg, out_dir=out, formats=("safetensors", "onnx"))
    return out, result


@pytest.fixture(scope="module")
def hub(tuned, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hub") / "tiny-erase-relu"
    return folder, export_hub(HubSettings(tuned[0], folder))


def test_the_hub_folder_holds_timms_files_and_the_artifacts_header(tuned, hub):
    folder, result = hub
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.onnx", "model.safetensors"]
    assert (folder / "model.safetensors").read_bytes() == (tuned[0] / "model.safetensors").read_bytes()
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "tiny_resnet" and config["num_classes"] == 10
    assert config["pretrained_cfg"]["input_size"] == [3, 8, 8] and config["pretrained_cfg"]["num_classes"] == 10
    assert config["netsurgeon"]["passes"] == ["erase-relu"]
    assert result.verify.ok and result.url is None


def test_the_model_card_parses_and_says_what_was_done(tuned, hub):
    from huggingface_hub import ModelCard

    folder, result = hub
    card = ModelCard.load(folder / "README.md")
    meta = card.data.to_dict()
    assert meta["library_name"] == "netsurgeon" and meta["datasets"] == ["digits"]
    assert meta["netsurgeon"]["base_model"] == "netsurgeon:tiny_resnet"
    assert [p["pass"] for p in meta["netsurgeon"]["passes"]] == ["erase-relu"]
    assert meta["netsurgeon"]["passes"][0]["changed"] == ["proportion=0.5"]
    assert "erase-relu" in meta["tags"]
    final = tuned[1].final["test_top1"]
    assert card.data.eval_results[0].metric_value == pytest.approx(final)
    text = card.text
    assert "EraseReLU (Dong et al." in text and "proportion=0.5" in text  # the pass, its parameter, its paper
    assert f"| after fine-tuning | {final:.2f}% |" in text
    assert f"| after surgery, before fine-tuning | {tuned[1].metrics[0]['test_top1']:.2f}% |" in text
    assert f"max |diff| {result.verify.onnx_max_abs_diff:.3g}" in text
    with safe_open(str(folder / "model.safetensors"), "pt") as fh:
        header = json.loads(fh.metadata()["netsurgeon"])
    assert header["tensors"]["sha256"] in text


def test_load_model_and_verify_accept_the_folder_and_give_the_artifacts_logits(tuned, hub):
    folder, _ = hub
    artifact, from_folder = ns.load_model(tuned[0]), ns.load_model(folder)
    x = probe_input(artifact)
    with torch.no_grad():
        assert torch.equal(from_folder(x), artifact(x))
        assert torch.allclose(from_folder(x), tuned[1].model.cpu().eval()(x), atol=1e-6)
    verified = cli("verify", folder)
    assert verified.exit_code == 0 and "ONNX parity" in verified.stdout and verified.stdout.strip().endswith("ok")


def test_push_offline_fails_in_one_line_and_keeps_the_folder(tuned, hub, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    folder = tmp_path / "pushed"
    started = time.perf_counter()
    line = assert_refused(cli("export-hub", tuned[0], "--out", folder, "--push", "someone/tiny-erase-relu"),
                          "could not push")
    assert "OfflineModeIsEnabled" in line and "the folder is kept" in line
    assert time.perf_counter() - started < 60
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.onnx", "model.safetensors"]


@pytest.mark.slow
def test_push_to_an_unreachable_hub_fails_in_one_line_within_a_bounded_time(tuned, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_dummy", "HF_HUB_ETAG_TIMEOUT": "5",
           "PYTHONPATH": str(ROOT)}
    env.pop("HF_HUB_OFFLINE", None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "netsurgeon", "export-hub", str(tuned[0]), "--out",
                           str(tmp_path / "pushed"), "--push", "someone/tiny"], env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 1
    lines = [x for x in done.stderr.splitlines() if x.strip() and not x.startswith("· ")]
    assert len(lines) == 1 and "could not push" in lines[0], done.stderr
    assert time.perf_counter() - started < 180
    assert (tmp_path / "pushed" / "README.md").is_file()


def test_the_folder_never_replaces_the_artifact_and_asks_before_replacing_a_folder(tuned, hub):
    with pytest.raises(ExportError, match="input"):
        export_hub(HubSettings(tuned[0], tuned[0], overwrite=True))
    with pytest.raises(ExportError):
        export_hub(HubSettings(tuned[0], hub[0]))
    again = export_hub(HubSettings(tuned[0], hub[0], overwrite=True))
    assert (Path(again.folder) / "README.md").read_text() == (hub[0] / "README.md").read_text()


@pytest.mark.slow  # a two-job comparison (~25 s on the shared machine); the card's other content is in the default set
def test_a_compare_jobs_card_holds_the_comparisons_table_and_verdict(tmp_path):
    from huggingface_hub import ModelCard

    from netsurgeon.compare import compare
    from netsurgeon.compare.report import format_table

    tune = {"epochs": 1, "batch_size": 32, "limit_train_batches": 2, "limit_eval_batches": 2, "progress": False,
            "log": "none"}
    result = compare("netsurgeon:tiny_resnet", "digits", ["erase-relu"], 1, tune, out=tmp_path / "cmp",
                     input_size=(3, 8, 8), progress=False)
    hub = export_hub(HubSettings(tmp_path / "cmp" / "jobs" / "erase-relu" / "seed-0", tmp_path / "hub"))
    text = ModelCard.load(Path(hub.folder) / "README.md").text
    assert "This model is the `erase-relu` arm, seed 0" in text
    assert format_table(result.summary) in text and result.verdicts[0] in text


def test_the_card_names_timms_hub_weights_as_base_model(hub):
    from netsurgeon.export.artifact import read_provenance
    from netsurgeon.workflows.hub import model_card

    folder, result = hub
    record = read_provenance(folder)
    pretrained = {**record, "model": {**record["model"], "spec": "timm:test_resnet"},
                  "weights": {"source": "pretrained", "tag": "timm:test_resnet.r160_in1k"}}
    assert model_card(pretrained, result.verify).data.base_model == "timm/test_resnet.r160_in1k"
    assert model_card(record, result.verify).data.base_model is None  # random init: no hub weights to name
