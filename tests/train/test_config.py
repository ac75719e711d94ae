"""FinetuneConfig: validation and the learning-rate schedule."""

import math

import pytest

from netsurgeon.errors import ConfigError
from netsurgeon.train import FinetuneConfig


def test_cosine_with_warmup_starts_low_peaks_and_ends_at_min():
    cfg = FinetuneConfig(epochs=4, warmup_epochs=1, min_lr_ratio=0.1)
    factors = [cfg.lr_factor(s, 10) for s in range(40)]
    assert factors[0] == pytest.approx(0.01)
    assert factors[5] == pytest.approx(0.01 + 0.99 * 0.5)
    assert factors[10] == pytest.approx(1.0)  # warm-up done: the cosine starts at the peak
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))  # then only decreases
    assert factors[39] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 29 / 30)))


def test_step_schedule_multiplies_at_the_given_epochs():
    cfg = FinetuneConfig(epochs=6, schedule="step", step_epochs=(2, 4), step_gamma=0.5)
    assert [cfg.lr_factor(e * 3, 3) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]


def test_constant_schedule():
    assert {FinetuneConfig(schedule="constant").lr_factor(s, 7) for s in range(21)} == {1.0}


@pytest.mark.parametrize("values, words", [
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"lr": -1}, "lr must be positive"),
    ({"schedule": "step"}, "needs step_epochs"),
    ({"step_epochs": [3, 2], "schedule": "step"}, "increasing"),
    ({"warmup_epochs": 3, "epochs": 3}, "shorter than epochs"),
    ({"optimizer": "adamx"}, r"optimizer 'adamx' is not a timm optimizer \(closest: adamax, .*\); use one of: .*lion"),
    ({"label_smoothing": 1.0}, "label_smoothing must be below 1"),
    ({"epoch": 3}, "Did you mean 'epochs'"),
])
def test_bad_values_are_one_clear_error(values, words):
    with pytest.raises(ConfigError, match=words):
        FinetuneConfig.from_dict(values)


def test_set_style_strings_are_parsed():
    cfg = FinetuneConfig.from_dict({"epochs": "5", "clip_grad_norm": "1.5", "step_epochs": "[2,4]",
                                    "schedule": "step", "channels_last": "false"})
    assert (cfg.epochs, cfg.clip_grad_norm, cfg.step_epochs, cfg.channels_last) == (5, 1.5, (2, 4), False)
