"""The fault tests' reference: the uninterrupted run that an interrupted one must resume to (and the previous run
that a failed one must leave as it was)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.badinput.helpers import cli
from tests.faults.helpers import TRAIN, weights


@pytest.fixture(scope="session")
def finished(tmp_path_factory) -> Path:
    """A finished run of ``TRAIN``: the previous run that a failed command in its ``--out`` must leave as it was
    (copy it before use)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = cli(*TRAIN, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def baseline(finished) -> dict[str, torch.Tensor]:
    """The weights of the uninterrupted run."""
    return weights(finished)
