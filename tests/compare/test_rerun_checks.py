"""What a ``compare`` rerun checks before it skips a finished job (issue 29, items 3, 10 and 15).

A rerun on other data (images added to one class), over a hand-edited ``predictions.csv`` or
``compare-config.json``, or over a damaged job (``job.json`` not JSON, ``{}``, a truncated
``predictions.csv``) is refused in one line naming what changed or the job folder to remove, and nothing
in the comparison's folder is touched. One tiny comparison on a folder data set of 8x8 PNGs, copied per case.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from netsurgeon.compare import compare
from netsurgeon.errors import ConfigError
from tests.badinput.helpers import cli, error_lines, snapshot

pytestmark = pytest.mark.filterwarnings("ignore::netsurgeon.errors.StatisticsWarning")

TUNE = {"epochs": 1, "batch_size": 4, "limit_train_batches": 1, "lr": 0.05, "progress": False}


def add_images(root: Path, cls: str, count: int, start: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(start + 7 * len(cls))
    (root / cls).mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")


def make_folder(root: Path) -> Path:
    """``DIR/CLASS/*.png``: two classes of four images (both splits)."""
    for cls in ("a", "b"):
        add_images(root, cls, 4)
    return root


def run(data: Path, out: Path, *, lr: float = 0.05, formats: tuple[str, ...] = ()):
    return compare("netsurgeon:tiny_resnet", f"folder:{data}", ["erase-relu"], 1, {**TUNE, "lr": lr}, out=out,
                   input_size=(3, 8, 8), formats=formats, progress=False)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished comparison (control + erase-relu, one seed) and its data."""
    root = tmp_path_factory.mktemp("cmp")
    data = make_folder(root / "data")
    run(data, root / "out")
    return data, root / "out"


@pytest.fixture
def copy(finished, tmp_path):
    """A copy of the finished comparison (the same data folder: the spec names it)."""
    data, out = finished
    shutil.copytree(out, tmp_path / "out")
    return data, tmp_path / "out"


def job(out: Path, slug: str = "erase-relu") -> Path:
    return out / "jobs" / slug / "seed-0"


def refused(data: Path, out: Path, *expected: str, **kwargs) -> str:
    before = snapshot(out)
    with pytest.raises(ConfigError) as err:
        run(data, out, **kwargs)
    message = str(err.value)
    assert "\n" not in message and all(text in message for text in expected), message
    assert snapshot(out) == before  # nothing touched
    return message


def test_a_clean_rerun_skips_every_job(copy):
    data, out = copy
    result = run(data, out)
    assert (result.ran, result.skipped) == (0, 2)


# ------------------------------------------------------------------ item 3: the data's identity
def test_a_rerun_on_changed_folder_data_is_refused_naming_what_changed(tmp_path):
    """Images added to one class (same class count): before, the finished jobs were kept and the rest trained on
    the new data and pooled with them; now the rerun is refused and nothing changes on disk."""
    data = make_folder(tmp_path / "data")
    out = tmp_path / "out"
    run(data, out)
    shutil.rmtree(job(out))  # a job still to run: it would train on the new data
    add_images(data, "a", 3, start=4)
    message = refused(data, out, "other data", "training images: 8 -> 11", "test images: 8 -> 11",
                      "restore the data")
    assert "classes" not in message  # the same class count
    assert not job(out).exists()
    identity = json.loads((out / "compare-config.json").read_text())["identity"]  # as finetune --resume records it
    assert (identity["data"], identity["training images"], identity["classes"]) == (f"folder:{data}", 8, 2)


# ------------------------------------------------------------------ item 10: hand-edited files
def test_an_edited_predictions_row_is_refused_naming_the_file(copy):
    data, out = copy
    path = job(out) / "predictions.csv"
    lines = path.read_text().splitlines()
    index, label, prediction, top5 = lines[1].split(",")
    lines[1] = ",".join([index, label, str(1 - int(prediction)), top5])  # this image now counts the other way
    path.write_text("\n".join(lines) + "\n")
    refused(data, out, str(path), "differs from the one its job wrote", f"remove the folder {job(out)}")


def test_an_edited_finetune_setting_in_compare_config_is_refused(copy):
    """The same command as before is caught by the configuration check (as before this change); a command that
    matches the edited file was accepted, reporting lr=0.1 for jobs trained with 0.05: now refused."""
    data, out = copy
    path = out / "compare-config.json"
    config = json.loads(path.read_text())
    config["spec"]["finetune"]["lr"] = 0.1
    path.write_text(json.dumps(config, indent=1) + "\n")
    refused(data, out, "another configuration", "finetune.lr: 0.1 -> 0.05")  # checked before too
    message = refused(data, out, "job.json was trained with other settings", "finetune.lr: 0.05 -> 0.1",
                      "remove the folder", lr=0.1)
    assert str(job(out, "control")) in message  # the first job of the grid


def test_an_edited_format_in_compare_config_is_refused_by_the_settings_digest(copy):
    data, out = copy
    path = out / "compare-config.json"
    config = json.loads(path.read_text())
    config["spec"]["formats"] = ["safetensors"]
    path.write_text(json.dumps(config, indent=1) + "\n")
    refused(data, out, "trained with other settings", "the model, data, formats or the arm's passes",
            formats=("safetensors",))


# ------------------------------------------------------------------ item 15: damaged jobs
@pytest.mark.parametrize(("damage", "expected"), [
    (lambda d: (d / "job.json").write_text('{"arm": "erase'), "is damaged (not JSON)"),
    (lambda d: (d / "job.json").write_text("{}"), "is not a finished job's record (missing arm, slug"),
    (lambda d: (d / "predictions.csv").write_bytes((d / "predictions.csv").read_bytes()[:-7]),
     "predictions.csv differs from the one its job wrote"),
], ids=["job-json-not-json", "job-json-empty-object", "predictions-truncated"])
def test_a_damaged_finished_job_is_refused_naming_its_folder(copy, damage, expected):
    data, out = copy
    damage(job(out))
    refused(data, out, expected, f"remove the folder {job(out)} and run the same compare command again")


def test_the_cli_says_it_in_one_line(copy):
    data, out = copy
    (job(out) / "job.json").write_text("{}")
    result = cli("compare", "netsurgeon:tiny_resnet", "--data", f"folder:{data}", "--arm", "erase-relu",
                 "--seeds", "1", "--input-size", "3,8,8", "--epochs", "1", "--set", "batch_size=4",
                 "--set", "limit_train_batches=1", "--set", "lr=0.05", "--set", "progress=false", "--format", "none",
                 "--out", out)
    assert result.exit_code == 1, result.output
    lines = error_lines(result)
    assert len(lines) == 1 and "not a finished job's record" in lines[0], result.output


def test_a_comparison_from_before_a_new_setting_resumes_with_its_default(copy):
    """A comparison written before a FinetuneConfig field existed (optimizer_args, issue 28) trained with its
    default: its rerun skips the finished jobs instead of refusing them as trained with other settings."""
    data, out = copy
    config = json.loads((out / "compare-config.json").read_text())
    del config["spec"]["finetune"]["optimizer_args"]
    (out / "compare-config.json").write_text(json.dumps(config))
    for slug in ("control", "erase-relu"):
        record = json.loads((job(out, slug) / "job.json").read_text())
        del record["config"]["optimizer_args"]
        (job(out, slug) / "job.json").write_text(json.dumps(record))
    result = run(data, out)
    assert (result.ran, result.skipped) == (0, 2)
