"""A property of every failed command (issue 29): whatever ``--out`` held before (nothing, an empty directory, a
finished run, a finished run beside a user's file), a command that fails (bad input, a full disk at the checkpoint
or at the export, a signal before training, a diverged run, non-finite outputs at export) leaves it exactly as
it was (or absent, when it was absent), and ``verify`` says of it after what it said before.

An interruption during training is not a failure in this sense: it keeps the new run's checkpoint (resumable,
``tests/faults/test_sigterm.py``), and no file of the previous run beside it."""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.badinput.helpers import cli, snapshot
from tests.faults.helpers import TINY, TRAIN

STATES = ["missing", "empty", "finished", "finished+user"]
FINETUNE_FAILURES = ["bad-input", "disk-full-checkpoint", "disk-full-export", "sigterm-before-training", "diverged",
                     "non-finite-export"]
APPLY_FAILURES = ["bad-input", "disk-full-export", "non-finite-export"]
FAILURES = st.one_of(st.tuples(st.just("finetune"), st.sampled_from(FINETUNE_FAILURES)),
                     st.tuples(st.just("apply"), st.sampled_from(APPLY_FAILURES)))


def _prepare(root: Path, state: str, finished: Path) -> Path:
    out = root / "out"
    if state == "empty":
        out.mkdir()
    elif state.startswith("finished"):
        shutil.copytree(finished, out)
        if state.endswith("user"):
            (out / "notes.txt").write_text("mine\n")
    return out


def _inject(mp: pytest.MonkeyPatch, failure: str) -> None:
    """Arm a failure that happens inside the run (the others are arguments: ``_command``)."""
    import safetensors.torch
    from safetensors import SafetensorError

    import netsurgeon.train.state as state
    from netsurgeon.train import loop

    if failure == "disk-full-checkpoint":
        def full_save(payload, path, *args, **kwargs):  # noqa: ANN001, ANN202
            Path(path).write_bytes(b"PK")
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

        mp.setattr(state.torch, "save", full_save)
    elif failure == "disk-full-export":
        def full_write(tensors, filename, metadata=None):  # noqa: ANN001, ANN202
            Path(filename).write_bytes(b"\0" * 64)
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

        mp.setattr(safetensors.torch, "save_file", full_write)
    elif failure == "sigterm-before-training":
        original = loop.evaluate

        def signalled(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            os.kill(os.getpid(), signal.SIGTERM)  # the run's handler is installed: it only sets a flag
            return original(*args, **kwargs)

        mp.setattr(loop, "evaluate", signalled)
    elif failure == "non-finite-export":
        export_pkg = importlib.import_module("netsurgeon.export")  # the package (netsurgeon.export is also a function)
        mp.setattr(export_pkg, "outputs_finite", lambda model, example: False)


def _command(kind: str, failure: str, out: Path, state: str) -> list[object]:
    overwrite = ["--overwrite"] if state.startswith("finished") else []
    if kind == "apply":
        name = "no-such-pass" if failure == "bad-input" else "erase-relu"
        return ["apply", name, "-m", TINY, "--input-size", "3,8,8", "--format", "safetensors", "--out", out,
                *overwrite]
    extra = {"bad-input": ["--set", "lr=-1"], "diverged": ["--set", "lr=1e6", "--set", "limit_train_batches=5"]}
    return [*TRAIN, "--out", out, *overwrite, *extra.get(failure, [])]


def _verdict(out: Path) -> int | None:
    return cli("verify", out).exit_code if out.exists() else None


def _fails_leaving_out_as_it_was(finished: Path, state: str, failure: tuple[str, str]) -> None:
    kind, what = failure
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        root = Path(tmp)
        out = _prepare(root, state, finished)
        before, verdict = snapshot(root), _verdict(out)
        _inject(mp, what)
        result = cli(*_command(kind, what, out, state))
        mp.undo()
        assert result.exit_code != 0, (kind, what, state, result.output)
        assert "Traceback" not in result.output
        assert snapshot(root) == before, (kind, what, state, result.output[-500:])
        assert _verdict(out) == verdict


PROPERTY = {"deadline": None, "database": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


@settings(max_examples=3, **PROPERTY)
@given(state=st.sampled_from(STATES), failure=FAILURES)
@example(state="finished", failure=("finetune", "disk-full-export"))  # the cases, always
@example(state="finished+user", failure=("finetune", "sigterm-before-training"))
@example(state="finished", failure=("finetune", "diverged"))
def test_a_failed_command_leaves_out_as_it_was_and_verify_says_the_same(finished, state, failure):
    _fails_leaving_out_as_it_was(finished, state, failure)


@pytest.mark.slow
@settings(max_examples=60, **PROPERTY)
@given(state=st.sampled_from(STATES), failure=FAILURES)
def test_a_failed_command_leaves_out_as_it_was_many_examples(finished, state, failure):
    _fails_leaving_out_as_it_was(finished, state, failure)
