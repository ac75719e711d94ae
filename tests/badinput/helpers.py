"""Shared helpers of the bad-input corpus: register cases, run a command, check the one-line refusal, and that
the files around it were left exactly as they were."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from netsurgeon.cli import app
from netsurgeon.errors import NetsurgeonError

runner = CliRunner()
TINY = "netsurgeon:tiny_resnet"

#: a case: a function ``(tmp, golden, monkeypatch) -> CLI args | callable``, and words its refusal must hold
Case = tuple[Callable, str]


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file and directory under ``root`` (hidden ones included) with its content digest and mode."""
    out: dict[str, tuple[str, int]] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir() and not p.is_symlink():
            out[rel] = ("dir", p.stat().st_mode)
        elif p.is_file():
            out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
        else:
            out[rel] = ("other", 0)
    return out


def cli(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def error_lines(result) -> list[str]:  # noqa: ANN001
    """stderr without the ``· step`` progress lines."""
    return [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("· ")]


def assert_refused(result, expected: str = "") -> str:  # noqa: ANN001
    """Exit code 1, exactly one line on stderr (besides progress), no traceback; returns that line."""
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), f"uncaught {type(exc).__name__}: {exc}\n{result.output}"
    assert result.exit_code == 1, result.output
    lines = error_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in result.output
    assert expected.lower() in lines[0].lower(), lines[0]
    return lines[0]


def tiny_state(num_classes: int = 10) -> dict[str, torch.Tensor]:
    from netsurgeon.testing import TinyResNet

    torch.manual_seed(0)
    return TinyResNet(num_classes=num_classes).state_dict()


def write_artifact(path: Path, record: object, tensors: dict[str, torch.Tensor]) -> Path:
    """A safetensors file with ``record`` (any JSON value, or raw text) as its netsurgeon header."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    text = record if isinstance(record, str) else json.dumps(record)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"format": "pt", "netsurgeon": text})
    return path


def read_record(path: Path) -> dict:
    from netsurgeon.export.artifact import read_provenance

    return read_provenance(path)


def case_registry(cases: dict[str, Case]) -> Callable[[str], Callable[[Callable], Callable]]:
    """``case = case_registry(CASES)``: then ``@case("words of the refusal")`` puts a case function into
    ``cases`` under its name."""

    def case(expected: str = "") -> Callable[[Callable], Callable]:
        def register(fn: Callable) -> Callable:
            cases[fn.__name__] = (fn, expected)
            return fn

        return register

    return case


def export_golden(out: Path) -> Path:
    """The valid artifact directory the cases copy and damage: erase-relu on the tiny ResNet at 16x16, seed 0."""
    import netsurgeon as ns
    from netsurgeon.export import export

    torch.manual_seed(0)
    model = ns.load_model(TINY, input_size=(3, 16, 16))
    result = ns.apply(model, "erase-relu")
    export(result.model, out, report=result.report, seed=0)
    return out


def run_case(case: Case, golden: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """Run one case, its inputs in ``tmp_path/case``: a CLI case must be refused in one line (``assert_refused``),
    a callable must raise a one-line NetsurgeonError holding the expected words, and no file under ``tmp_path``
    may be created, changed or removed. Returns a CLI case's refusal line (None for a callable)."""
    fn, expected = case
    inputs = tmp_path / "case"
    inputs.mkdir()
    action = fn(inputs, golden, monkeypatch)
    before = snapshot(tmp_path)
    line = None
    if callable(action):
        with pytest.raises(NetsurgeonError) as info:
            action()
        message = str(info.value)
        assert "\n" not in message and expected.lower() in message.lower(), message
    else:
        line = assert_refused(cli(*action), expected)
    assert snapshot(tmp_path) == before
    return line
