"""Any timm optimizer trains (issue 28): ``optimizer=`` takes timm's names, ``optimizer_args`` their own arguments,
through the CLI, Python and a recipe; sgd and adamw train exactly as before; a Lion run resumes bit for bit; a bad
name or argument is one line."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch

import netsurgeon as ns
from netsurgeon.errors import CheckpointError, ConfigError, TrainingInterrupted
from netsurgeon.train import FinetuneConfig, run_training
from netsurgeon.train import components as components_module
from netsurgeon.train.components import make_optimizer, param_groups
from tests.badinput.helpers import assert_refused, cli
from tests.conftest import state_equal

TINY, SIZE = "netsurgeon:tiny_resnet", (3, 8, 8)
QUICK = {"epochs": 2, "batch_size": 16, "limit_train_batches": 3, "limit_eval_batches": 1, "lr": 0.05,
         "weight_decay": 1e-3, "progress": False, "workers": 0, "log": "none"}
INTERRUPTED = 130


@pytest.fixture
def model():
    torch.manual_seed(0)
    return ns.load_model(TINY, num_classes=10, input_size=SIZE)


def _headed(model):  # noqa: ANN001, ANN202
    """The model with a spinal head: parameters a pass created (their own learning rate)."""
    headed = ns.apply(model, ns.SpinalHeadConfig(width=8)).model
    return headed, set(ns.models.info.get_info(headed).history[0].new_params)


def test_the_optimizer_is_any_timm_name_in_any_case():
    assert FinetuneConfig(optimizer="LION").optimizer == "lion"
    assert FinetuneConfig.from_dict({"optimizer": " Lamb "}).optimizer == "lamb"
    with pytest.raises(ConfigError) as err:
        FinetuneConfig(optimizer="lion-x")
    message = str(err.value)
    assert "\n" not in message and "'lion-x' is not a timm optimizer (closest: lion" in message
    assert all(f" {name}," in message for name in ("adamw", "lamb", "lion", "sgd"))


def test_an_unknown_optimizer_through_the_cli_is_one_line(tmp_path):
    line = assert_refused(cli("finetune", TINY, "--data", "digits", "--out", tmp_path / "o", "--input-size", "3,8,8",
                              "--set", "optimizer=lion-x"), "not a timm optimizer")
    assert "lion" in line and "adamw" in line and not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_sgd_and_adamw_train_exactly_as_before(model, name, monkeypatch):
    """sgd is plain momentum SGD (not timm's Nesterov sgd) and adamw torch's AdamW: the weights equal those of
    the optimizer built by hand as before timm built it."""
    headed, new = _headed(model)
    cfg = FinetuneConfig(optimizer=name, momentum=0.8, **QUICK)
    built = make_optimizer(headed, cfg, new)
    assert type(built) is (torch.optim.SGD if name == "sgd" else torch.optim.AdamW)
    if name == "sgd":
        assert all(g["momentum"] == 0.8 and g["nesterov"] is False for g in built.param_groups)
    got = run_training(headed, "digits", cfg).model.state_dict()

    def by_hand(model, cfg, new_params):  # noqa: ANN001, ANN202 - the optimizers as netsurgeon built them before
        groups = param_groups(model, cfg, new_params)
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
        return torch.optim.AdamW(groups, lr=cfg.lr)

    monkeypatch.setattr(components_module, "make_optimizer", by_hand)
    want = run_training(headed, "digits", cfg).model.state_dict()
    assert state_equal(got, want)


def test_optimizer_args_reach_the_optimizer_and_the_groups_are_kept(model):
    headed, new = _headed(model)
    cfg = FinetuneConfig.from_dict({"optimizer": "lion", "optimizer_args.betas": "[0.8,0.9]", "lr": "0.01",
                                    "momentum": "0.5"})
    assert cfg.optimizer_args == {"betas": (0.8, 0.9)} and cfg.to_dict()["optimizer_args"] == {"betas": [0.8, 0.9]}
    assert FinetuneConfig.from_dict({"optimizer": "lion", "optimizer_args": "{betas: [0.8, 0.9]}"}).optimizer_args \
        == cfg.optimizer_args
    built = make_optimizer(headed, cfg, new)
    assert type(built).__name__ == "Lion" and len(built.param_groups) == 4
    want = param_groups(headed, cfg, new)
    for group, expected in zip(built.param_groups, want, strict=True):
        assert group["betas"] == (0.8, 0.9) and "momentum" not in group  # Lion has no momentum: timm leaves it out
        assert [id(p) for p in group["params"]] == [id(p) for p in expected["params"]]
        for key in ("lr", "initial_lr", "weight_decay", "netsurgeon_new"):
            assert group[key] == expected[key], key
    assert make_optimizer(headed, FinetuneConfig(optimizer="lion"), new).param_groups[0]["betas"] == (0.9, 0.99)


@pytest.mark.parametrize(("args", "words"), [
    ({"bets": [0.9, 0.99]}, "optimizer_args 'bets' is not an argument of lion (Lion); valid: betas,"),
    ({"lr": 0.1}, "optimizer_args 'lr' is a setting of its own: use --set lr="),
    ({"betas": [2.0, 0.99]}, "optimizer 'lion' refuses its settings"),
])
def test_a_bad_optimizer_argument_is_one_line(args, words):
    with pytest.raises(ConfigError, match=re.escape(words)) as err:
        FinetuneConfig(optimizer="lion", optimizer_args=args)
    assert "\n" not in str(err.value)


def test_a_bad_optimizer_argument_through_the_cli_is_one_line(tmp_path):
    assert_refused(cli("finetune", TINY, "--data", "digits", "--out", tmp_path / "o", "--input-size", "3,8,8",
                       "--set", "optimizer=lion", "--set", "optimizer_args.bets=[0.9,0.99]"),
                   "optimizer_args 'bets' is not an argument of lion")


def test_a_second_order_optimizer_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="adahessian' is a second-order optimizer"):
        FinetuneConfig(optimizer="adahessian")


@pytest.mark.skipif(bool(importlib.util.find_spec("bitsandbytes")) and torch.cuda.is_available(),
                    reason="bitsandbytes works here")
def test_an_optimizer_whose_package_is_missing_is_one_line_before_any_work(model, tmp_path):
    cfg = FinetuneConfig(optimizer="bnbadamw", **QUICK)  # a config reads back anywhere
    with pytest.raises(ConfigError, match="optimizer 'bnbadamw' is not available here") as err:
        run_training(model, "no-such-data", cfg, out_dir=tmp_path / "o")  # refused before the data is read
    assert "\n" not in str(err.value) and not (tmp_path / "o").exists()


@pytest.mark.parametrize(("name", "args"), [("lamb", {}), ("adan", {"betas": [0.98, 0.92, 0.99]})])
def test_lamb_and_adan_fine_tune_from_python(model, name, args):
    result = run_training(model, "digits", FinetuneConfig(optimizer=name, optimizer_args=args, **QUICK))
    assert result.config.optimizer == name and len(result.metrics) == 3
    changed = [k for k, v in model.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, result.model.state_dict()[k])]
    assert changed and all(torch.isfinite(t).all() for t in result.model.state_dict().values())


def test_lion_through_the_cli_resumes_bit_identically(tmp_path, monkeypatch):
    """``--set optimizer=lion`` fine-tunes; stopped inside the second epoch and resumed, it ends with the weights
    and optimizer state of the run that was never stopped."""
    from netsurgeon.train import loop

    args = ["finetune", TINY, "--data", "digits", "--input-size", "3,8,8", "--num-classes", "10", "--format", "none",
            "--set", "optimizer=lion", "--set", "optimizer_args.betas=[0.95,0.98]",
            *[a for k, v in QUICK.items() if k != "progress" for a in ("--set", f"{k}={v}")]]
    whole = cli(*args, "--out", tmp_path / "whole")
    assert whole.exit_code == 0, whole.output
    with monkeypatch.context() as mp:
        mp.setattr(loop._Run, "_stop_requested", lambda self, stop: self.state.epoch == 1 and self.state.batch == 1)
        cut = cli(*args, "--out", tmp_path / "cut")
    assert cut.exit_code == INTERRUPTED and "epoch 2, after batch 1" in cut.output, cut.output
    resumed = cli(*args, "--out", tmp_path / "cut", "--resume")
    assert resumed.exit_code == 0, resumed.output
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=True) for d in ("whole", "cut"))
    assert a["config"]["optimizer"] == "lion" and a["config"]["optimizer_args"] == {"betas": [0.95, 0.98]}
    assert state_equal(a["model"], b["model"])
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert all(g["betas"] == (0.95, 0.98) for g in a["optimizer"]["param_groups"])
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert state_a.keys() == state_b.keys() and all(
        state_equal(state_a[k], state_b[k]) for k in state_a)  # Lion's exp_avg, bit for bit


def test_a_checkpoint_from_before_optimizer_args_resumes(model, tmp_path, monkeypatch):
    """A field an older checkpoint's config lacks had its default: the run resumes (other settings still count)."""
    from netsurgeon.train import loop

    cfg = FinetuneConfig(**QUICK)
    with monkeypatch.context() as mp:
        mp.setattr(loop._Run, "_stop_requested", lambda self, stop: self.state.step > 0)
        with pytest.raises(TrainingInterrupted):
            run_training(model, "digits", cfg, out_dir=tmp_path)
    path = tmp_path / "checkpoint.pt"
    payload = torch.load(path, weights_only=True)
    del payload["config"]["optimizer_args"]  # as written before the field existed
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=re.escape("optimizer_args: {} -> {'nesterov': True}")):
        run_training(model, "digits", FinetuneConfig(**QUICK, optimizer_args={"nesterov": True}), out_dir=tmp_path,
                     resume=True)
    assert run_training(model, "digits", cfg, out_dir=tmp_path, resume=True).metrics[-1]["epoch"] == 2
