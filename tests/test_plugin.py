"""A pass defined only in this file works end to end: a pass is a self-contained plug-in.

The toy pass swaps the model's first ReLU module for a fresh one (a structural edit, so artifacts replay
it) and counts optimizer steps through a training hook, whose count is saved in training checkpoints.
Nothing in ``netsurgeon/train``, ``netsurgeon/recipe`` or ``netsurgeon/export`` knows about it. Everything
the pass needs comes from ``netsurgeon.surgery``, and it never repeats its own name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

import netsurgeon as ns
from netsurgeon.cli.passes import describe_passes
from netsurgeon.surgery import (
    Contract,
    EpochStart,
    PassConfig,
    PassOutcome,
    SurgeryError,
    TrainingHooks,
    Workspace,
    register_pass,
    site_change,
    unregister_pass,
)
from netsurgeon.train import FinetuneConfig, finetune, resolve_data
from tests.train.test_loop import SigintAt

SIZE = (3, 16, 16)
QUICK = {"batch_size": 32, "lr": 0.05, "progress": False}


@dataclass(frozen=True)
class CountSteps(PassConfig):
    """Swap the first ReLU for a fresh one and count optimizer steps while fine-tuning (a toy plug-in)."""

    every: int = 1
    """Count one in every this many steps."""

    def validate(self) -> None:
        if self.every < 1:
            self.fail(f"every must be at least 1, got {self.every}.")


class StepCounter(TrainingHooks):
    instances: list[StepCounter] = []

    def __init__(self, every: int) -> None:
        self.every, self.steps, self.seen, self.epochs = every, 0, 0, []
        StepCounter.instances.append(self)

    @classmethod
    def from_history(cls, model: nn.Module, entry: dict[str, Any]) -> StepCounter:
        return cls(CountSteps.from_dict(entry["config"]).every)

    def on_epoch_start(self, model: nn.Module, event: EpochStart) -> str | None:
        self.epochs.append(event.epoch)
        return f"count-steps: {self.steps} so far"

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.seen += 1
        if self.seen % self.every == 0:
            self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.steps, self.seen = int(state["steps"]), int(state["seen"])


def count_steps(ws: Workspace, cfg: CountSteps) -> PassOutcome:
    site = next(s for s in ws.index().sites() if s.kind == "module")
    edit = ws.editor().swap(site.target, nn.ReLU())
    return PassOutcome([site_change(site, edit, after="a fresh nn.ReLU")],
                       notes=[f"counting every {cfg.every} step(s)"])


@pytest.fixture(scope="module", autouse=True)
def registered():
    register_pass("count-steps", CountSteps, contract=Contract.EXACT, structural=True, hooks=StepCounter)(count_steps)
    yield
    unregister_pass("count-steps")


@pytest.fixture(scope="module")
def digits():
    model = ns.load_model("netsurgeon:tiny_resnet", input_size=SIZE)
    train, test, _ = resolve_data("digits", model)
    return train, test


def _model():
    torch.manual_seed(0)
    return ns.apply(ns.load_model("netsurgeon:tiny_resnet", input_size=SIZE), ("count-steps", {"every": 1})).model


def test_apply_reports_and_records_the_toy_pass():
    result = ns.apply(ns.load_model("netsurgeon:tiny_resnet", input_size=SIZE), "count-steps")
    assert result.report.changed == 1 and result.report.verification.ok
    assert result.report.passes[0].notes == ["counting every 1 step(s)"]
    assert result.report.passes[0].changes[0].scope == "swap" and result.report.passes[0].changes[0].after == \
        "a fresh nn.ReLU"
    (row,) = describe_passes(["count-steps"])  # `netsurgeon passes count-steps` shows its field docs
    assert row["training_hooks"] and row["parameters"] == {"every": 1} and row["fields"] == [
        {"name": "every", "type": "int", "default": 1, "allowed": None, "help": "Count one in every this many steps."}]


def test_finetune_interrupt_and_resume_restore_the_hook_state(digits, tmp_path):
    train, test = digits
    cfg = FinetuneConfig(epochs=2, limit_train_batches=4, **QUICK)
    StepCounter.instances.clear()
    full = finetune(_model(), digits, cfg, out_dir=tmp_path / "full", formats=())
    assert StepCounter.instances[-1].steps == 8 and StepCounter.instances[-1].epochs == [0, 1]
    saved = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    assert saved["hooks"] == [{"steps": 8, "seen": 8}]
    with pytest.raises(ns.TrainingInterrupted):
        finetune(_model(), (SigintAt(train, 6 * 32 - 3), test), cfg, out_dir=tmp_path / "cut", formats=())
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert cut["hooks"][0]["steps"] == 6  # epoch 1 (4 steps) + 2 steps of epoch 2 when the SIGINT came
    StepCounter.instances.clear()
    resumed = finetune(_model(), digits, cfg, out_dir=tmp_path / "cut", resume=True, formats=())
    (counter,) = StepCounter.instances
    assert counter.steps == 8 and counter.epochs == []  # restored at 6, two more steps; no epoch started anew
    assert all(torch.equal(a, b) for a, b in zip(full.model.state_dict().values(),
                                                 resumed.model.state_dict().values(), strict=True))


def test_a_recipe_names_the_toy_pass_and_its_artifact_replays_it(tmp_path):
    recipe = ns.Recipe.from_text(
        "model:\n  name: netsurgeon:tiny_resnet\n  input_size: [3, 16, 16]\n"
        "surgery:\n  - pass: count-steps\n    every: 2\n"
        "finetune:\n  data: digits\n  epochs: 1\n  limit_train_batches: 4\n  batch_size: 32\n"
        f"export:\n  dir: {tmp_path / 'out'}\n  formats: [safetensors]\nseed: 0\n")
    StepCounter.instances.clear()
    recipe.run()
    assert StepCounter.instances[-1].steps == 2  # every 2nd of 4 steps: the recipe's value reached the hook
    with pytest.raises(ns.RecipeError, match="every"):
        ns.Recipe.from_text("model:\n  name: netsurgeon:tiny_resnet\nsurgery:\n  - pass: count-steps\n    every: 0\n")
    loaded = ns.load_model(tmp_path / "out")
    history = ns.get_info(loaded).history
    assert history[0]["pass"] == "count-steps" and history[0]["config"] == {"every": 2}
    StepCounter.instances.clear()
    finetune(loaded, "digits", FinetuneConfig(epochs=1, limit_train_batches=2, **QUICK))
    assert StepCounter.instances[-1].steps == 1  # the artifact's history brought the hook back


@dataclass(frozen=True)
class ReturnsAList(PassConfig):
    """Return a plain list instead of a PassOutcome (a broken plug-in)."""


def _returns_a_list(ws: Workspace, cfg: ReturnsAList) -> list:
    return []


def test_a_pass_returning_anything_but_a_pass_outcome_is_named():
    register_pass("returns-a-list", ReturnsAList, contract=Contract.EXACT, structural=True)(_returns_a_list)
    try:
        with pytest.raises(SurgeryError, match="returns-a-list: the pass returned list, not a PassOutcome"):
            ns.apply(ns.load_model("netsurgeon:tiny_resnet", input_size=SIZE), "returns-a-list")
    finally:
        unregister_pass("returns-a-list")


def test_the_workspace_graph_is_for_a_running_pass():
    ws = Workspace.of(ns.load_model("netsurgeon:tiny_resnet", input_size=SIZE))
    with pytest.raises(SurgeryError, match="for a running pass"):
        ws.index()
    with ws.running("count-steps"):
        assert ws.index().sites() and ws.editor().index is ws.index()
