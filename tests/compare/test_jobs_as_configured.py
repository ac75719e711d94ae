"""Every compare job trains exactly as configured (issue 27 item 1).

* For one seed the control's job *is* ``netsurgeon finetune MODEL --data D`` with the same settings: its final
  weights equal a plain fine-tune's bit for bit on the CPU, under each augmentation preset with non-default
  knobs, for every executor (here, ``--jobs 2``, submitit's local executor).
* Every ``FinetuneConfig`` field, set to a non-default value, reaches the training loop through every entry
  point (finetune CLI and Python, run, compare CLI, Python and recipe, demo where it takes the field): the
  loop's config is captured, nothing is trained.
* gru-fc in a compare job measures on ``surgery_loader``'s unaugmented batches, as ``apply --data`` does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from netsurgeon.compare import SlurmOptions, compare
from netsurgeon.data import DataSpec
from netsurgeon.train import FinetuneConfig
from netsurgeon.workflows import FinetuneSettings, finetune_from_settings
from tests.badinput.helpers import cli

MODEL, SIZE = "netsurgeon:tiny_resnet", (3, 8, 8)
CHEAP = {"epochs": 1, "batch_size": 16, "limit_train_batches": 2, "limit_eval_batches": 1, "lr": 0.05,
         "progress": False, "workers": 0}
AUGMENT = {
    "none": {"augment": "none"},
    "basic": {"augment": "basic", "crop_padding": 2, "hflip": 0.0},
    "timm": {"augment": "timm", "auto_augment": "rand-m9-mstd0.5", "hflip": 0.25},
}
EXECUTORS = {"local": {}, "jobs2": {"jobs": 2},
             "slurm-local": {"executor": "slurm", "slurm": SlurmOptions(cluster="local", poll_s=0.05)},
             "slurm-debug": {"executor": "slurm", "slurm": SlurmOptions(cluster="debug", poll_s=0.05)}}
#: (executor, augment) pairs in the default run: every preset here and submitit's in-process debug executor;
#: the executors that start a Python per job (--jobs 2, submitit's local executor: about 30 s each on 2 busy
#: cores) run in the slow set
DEFAULT = {("local", "none"), ("local", "basic"), ("local", "timm"), ("slurm-debug", "timm")}


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """The plain ``finetune`` run of each preset (seed 0), made once."""
    made: dict[str, Path] = {}

    def run(preset: str) -> Path:
        if preset not in made:
            out = tmp_path_factory.mktemp(f"plain-{preset}")
            finetune_from_settings(FinetuneSettings(MODEL, "digits", out, config={**CHEAP, **AUGMENT[preset]},
                                                    input_size=SIZE, formats="safetensors"))
            made[preset] = out
        return made[preset]

    return run


@pytest.mark.parametrize(("executor", "preset"), [
    pytest.param(e, a, marks=() if (e, a) in DEFAULT else pytest.mark.slow) for e in EXECUTORS for a in AUGMENT])
def test_the_control_job_is_a_plain_finetune_bit_for_bit(executor, preset, plain, tmp_path):
    reference = plain(preset)
    out = tmp_path / "cmp"
    compare(MODEL, "digits", [], [0], {**CHEAP, **AUGMENT[preset]}, out=out, input_size=SIZE, progress=False,
            **EXECUTORS[executor])
    job = out / "jobs" / "control" / "seed-0"
    got, want = weights(job), weights(reference)
    assert got.keys() == want.keys()
    differ = [k for k in want if not torch.equal(got[k], want[k])]
    assert not differ, f"{len(differ)} tensors differ from the plain finetune's, e.g. {differ[:3]}"
    record = json.loads((job / "job.json").read_text())
    assert record["config"]["augment"] == preset and record["config"]["seed"] == 0
    train = record["transforms"]["train"]
    if preset == "none":
        assert train.startswith("ImageTransform(") and "Random" not in train
    elif preset == "basic":
        assert "RandomCrop" in train and "padding=[2, 2, 2, 2]" in train and "RandomHorizontalFlip(p=0.0)" in train
    else:
        assert "RandAugment" in train
    assert "Random" not in record["transforms"]["test"]


# ------------------------------------------------------------------ every field reaches the loop
#: one non-default value of every FinetuneConfig field, valid together
NON_DEFAULT = {
    "epochs": 2, "batch_size": 7, "optimizer": "lion", "optimizer_args": {"betas": (0.95, 0.98)}, "lr": 0.02,
    "new_param_lr_scale": 3.0, "momentum": 0.8,
    "weight_decay": 0.001, "schedule": "step", "warmup_epochs": 0.5, "step_epochs": (1,), "step_gamma": 0.5,
    "min_lr_ratio": 0.1, "label_smoothing": 0.1, "clip_grad_norm": 1.0, "amp": "off", "channels_last": False,
    "compile": True, "device": "cpu", "seed": 5, "workers": 0, "accumulate_steps": 2, "augment": "timm",
    "scale": (0.5, 1.0), "ratio": (0.8, 1.25), "hflip": 0.25, "crop_padding": 2, "color_jitter": 0.3,
    "auto_augment": "rand-m9-mstd0.5", "re_prob": 0.1, "mixup": 0.2, "cutmix": 0.5, "mixup_prob": 0.9,
    "mixup_switch_prob": 0.4, "ema_decay": 0.99, "ema_warmup": False, "ema_export": "ema", "log": "none",
    "wandb_project": "elsewhere", "eval_every": 2, "bn_recalibrate": "on", "bn_batches": 3,
    "limit_train_batches": 2, "limit_eval_batches": 1, "progress": False,
}


def test_the_non_default_values_cover_every_field():
    default = FinetuneConfig()
    assert set(NON_DEFAULT) == set(FinetuneConfig.field_names())
    assert [k for k, v in NON_DEFAULT.items() if getattr(default, k) == v] == []
    FinetuneConfig(**NON_DEFAULT)  # valid together


def _text(value: object) -> str:
    if isinstance(value, dict):
        return json.dumps(value)  # a YAML flow mapping
    if isinstance(value, tuple):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _sets(values: dict) -> list[str]:
    return [a for k, v in values.items() for a in ("--set", f"{k}={_text(v)}")]


def _yaml(values: dict) -> str:
    """The fields (seed left out: a recipe's seed is top-level) as YAML flow-mapping items."""
    return ", ".join(f"{k}: {json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in values.items()
                     if k != "seed")


class _Captured(Exception):
    pass


@pytest.fixture
def loop_config(monkeypatch):
    """The config (and the data argument) the training loop is built with; the loop then stops."""
    from netsurgeon.train import loop

    seen: list[tuple[FinetuneConfig, object]] = []

    def capture(self, model, data, cfg, ctx, out, **kwargs):
        seen.append((cfg, data))
        raise _Captured(str(out))

    monkeypatch.setattr(loop._Run, "__init__", capture)
    return seen


def _entry_points(tmp: Path) -> dict:
    seed = NON_DEFAULT["seed"]
    others = {k: v for k, v in NON_DEFAULT.items() if k != "seed"}
    recipe = tmp / "r.yaml"
    recipe.write_text(f'model: {{name: "{MODEL}", input_size: [3, 8, 8]}}\n'
                      f"finetune: {{data: digits, {_yaml(NON_DEFAULT)}}}\n"
                      f"seed: {seed}\nexport: {{dir: {tmp / 'r-out'}, formats: [safetensors]}}\n")
    compare_recipe = tmp / "c.yaml"
    compare_recipe.write_text(recipe.read_text().replace(str(tmp / "r-out"), str(tmp / "c-out"))
                              + "compare: {arms: [erase-relu], seeds: [5]}\n")
    return {
        "finetune CLI": lambda: cli("finetune", "--model", MODEL, "--data", "digits", "--out", tmp / "f1",
                                    "--input-size", "3,8,8", *_sets(NON_DEFAULT)),
        "finetune Python": lambda: finetune_from_settings(FinetuneSettings(
            MODEL, "digits", tmp / "f2", config=dict(NON_DEFAULT), input_size=SIZE)),
        "run recipe": lambda: cli("run", recipe),
        "compare CLI": lambda: cli("compare", "--model", MODEL, "--data", "digits", "--arm", "erase-relu",
                                   "--seeds", f"{seed},{seed + 1}", "--out", tmp / "c1", "--input-size", "3,8,8",
                                   *_sets(others)),
        "compare Python": lambda: compare(MODEL, "digits", ["erase-relu"], [seed], dict(others), out=tmp / "c2",
                                          input_size=SIZE, progress=False),
        "compare recipe": lambda: cli("compare", "--recipe", compare_recipe),
    }


@pytest.mark.parametrize("entry", ["finetune CLI", "finetune Python", "run recipe", "compare CLI", "compare Python",
                                   "compare recipe"])
def test_every_field_reaches_the_training_loop(entry, loop_config, tmp_path):
    run = _entry_points(tmp_path)[entry]
    try:
        result = run()
    except _Captured:
        result = None
    if result is not None and getattr(result, "exception", None) is not None \
            and not isinstance(result.exception, _Captured):
        raise result.exception
    assert loop_config, f"{entry} never reached the training loop: {getattr(result, 'output', '')}"
    cfg, data = loop_config[0]
    wrong = {k: (getattr(cfg, k), v) for k, v in NON_DEFAULT.items() if getattr(cfg, k) != v}
    assert not wrong, f"{entry}: fields that did not reach the loop (got, set): {wrong}"
    assert isinstance(data, (str, DataSpec)), f"{entry}: the loop got {type(data).__name__}, not the data spec"


def test_the_demos_settings_reach_every_training_loop(loop_config, monkeypatch, tmp_path):
    """The demo takes batch_size, seed, the batch limits and the epochs (augment=none for every run)."""
    import netsurgeon.demo as demo
    from netsurgeon.train import loop

    monkeypatch.undo()  # the baseline trains (one batch); the first compare job is captured
    real = loop._Run.__init__
    seen = loop_config

    def capture(self, model, data, cfg, ctx, out, **kwargs):
        seen.append((cfg, data))
        if "compare" in str(out):
            raise _Captured(str(out))
        real(self, model, data, cfg, ctx, out, **kwargs)

    monkeypatch.setattr(loop._Run, "__init__", capture)
    with pytest.raises(_Captured):
        demo.run_demo("digits", tmp_path / "d", model=MODEL, input_size=SIZE, baseline_epochs=1, epochs=2,
                      batch_size=7, limit_train_batches=1, limit_eval_batches=1, seed=3, progress=False)
    (baseline, _), (job, job_data) = seen
    for cfg in (baseline, job):
        assert (cfg.batch_size, cfg.seed, cfg.limit_train_batches, cfg.limit_eval_batches, cfg.augment) == \
            (7, 3, 1, 1, "none")
    assert (baseline.epochs, job.epochs) == (1, 2) and isinstance(job_data, str)


# ------------------------------------------------------------------ gru-fc measures unaugmented
def test_gru_fc_in_compare_measures_on_surgery_loaders_unaugmented_batches(monkeypatch, tmp_path):
    from netsurgeon.data import surgery_loader
    from netsurgeon.loading import load_model
    from netsurgeon.passes import gru_fc_rule

    calls: list[list[torch.Tensor]] = []
    real = gru_fc_rule.accumulate_delta

    def recording(model, layers, data, **kwargs):
        calls.append([])

        def batches():
            for x, y in data:
                calls[-1].append(x.clone())
                yield x, y
        return real(model, layers, batches(), **kwargs)

    monkeypatch.setattr(gru_fc_rule, "accumulate_delta", recording)
    tune = {**CHEAP, "augment": "basic", "hflip": 1.0, "limit_train_batches": 1}  # flipped images: visible if used
    compare(MODEL, "digits", ["gru-fc:mode=grad_contrib"], [0], tune, out=tmp_path / "c", input_size=SIZE,
            formats=(), progress=False)
    job = calls[-1]  # the job's measurement (the arm's plan measured before any training, the same way)
    assert job
    torch.manual_seed(0)
    base = load_model(MODEL, num_classes=10, input_size=SIZE)
    want = [x for x, _ in surgery_loader("digits", base, batch_size=CHEAP["batch_size"], seed=0)]
    assert len(job) <= len(want)
    for got, expected in zip(job, want, strict=False):
        assert torch.equal(got, expected)
