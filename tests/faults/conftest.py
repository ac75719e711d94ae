"""The fault tests' reference: the uninterrupted run that an interrupted one must resume to."""

from __future__ import annotations

import pytest
import torch

from tests.badinput.helpers import cli
from tests.faults.helpers import TRAIN, weights


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("baseline")
    result = cli(*TRAIN, "--out", out)
    assert result.exit_code == 0, result.output
    return weights(out)
