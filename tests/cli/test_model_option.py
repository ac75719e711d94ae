"""One CLI convention (issue 27 item 7): every command that takes a model takes ``--model/-m``; a positional
model stays accepted where it was; no unknown option is answered with "Possible options: --help"."""

from __future__ import annotations

import json

import pytest

from netsurgeon.cli import app
from tests.badinput.helpers import cli, error_lines

QUICK = ("--data", "digits", "--input-size", "3,8,8", "--epochs", "1", "--set", "limit_train_batches=1",
         "--set", "limit_eval_batches=1", "--set", "batch_size=16", "--set", "progress=false")


def test_finetune_takes_model_as_an_option_and_as_before_positionally(tmp_path):
    by_option = cli("finetune", "--model", "netsurgeon:tiny_resnet", *QUICK, "--out", tmp_path / "a",
                    "--format", "safetensors", "--json")
    assert by_option.exit_code == 0, by_option.output
    by_short = cli("finetune", "-m", "netsurgeon:tiny_resnet", *QUICK, "--out", tmp_path / "b", "--format", "none")
    assert by_short.exit_code == 0, by_short.output
    positional = cli("finetune", "netsurgeon:tiny_resnet", *QUICK, "--out", tmp_path / "c", "--format", "none")
    assert positional.exit_code == 0, positional.output
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    same = [json.loads(line) for line in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    assert [r["test_top1"] for r in rows] == [r["test_top1"] for r in same]
    verified = cli("verify", "--model", tmp_path / "a")
    assert verified.exit_code == 0, verified.output


def test_compare_takes_model_as_an_option(tmp_path):
    result = cli("compare", "--model", "netsurgeon:tiny_resnet", "--arm", "erase-relu", "--seeds", "1",
                 "--out", tmp_path / "c", *QUICK, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ran"] == 2
    dry = cli("compare", "-m", "netsurgeon:tiny_resnet", "--data", "digits", "--arm", "erase-relu",
              "--input-size", "3,8,8", "--dry-run")
    assert dry.exit_code == 0 and "erase-relu:" in dry.stdout


@pytest.mark.parametrize("command", ["finetune", "compare", "verify"])
def test_a_model_given_twice_and_different_is_one_line(command, tmp_path):
    args = {"finetune": ("--data", "digits", "--out", tmp_path / "o"), "compare": ("--data", "digits", "--arm",
            "erase-relu", "--out", tmp_path / "o"), "verify": ()}[command]
    result = cli(command, "netsurgeon:tiny_resnet", "--model", "netsurgeon:tiny_convnet", *args)
    assert result.exit_code == 1
    assert len(error_lines(result)) == 1 and "given twice and differs" in error_lines(result)[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", [c.name for c in app.registered_commands])
def test_no_unknown_option_is_pointed_at_help(command):
    import typer

    own = {o for p in typer.main.get_command(app).commands[command].params for o in p.opts}
    unknown = [o for o in ("--model", "--mode", "--modl", "--hello", "--held", "--hepl", "--data", "--jobs")
               if o not in own]
    assert unknown
    for option in unknown:
        result = cli(command, option, "x")
        assert result.exit_code == 2 and "No such option" in result.output, (command, option, result.output)
        assert "Possible options: --help" not in result.output, (command, option, result.output)
