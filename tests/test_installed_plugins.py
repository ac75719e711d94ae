"""An installed plug-in (a ``netsurgeon.plugins`` entry point) is loaded by ``import netsurgeon`` in every process:
its data kind works in the CLI and in compare's job processes (``--jobs 2``), which register nothing themselves;
a broken plug-in is one warning naming it, and netsurgeon goes on.

Each test installs a toy distribution into a temporary folder (a ``.dist-info`` with ``entry_points.txt`` beside
the plug-in's module, the way pip lays out a wheel) and puts that folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import netsurgeon.plugins as plugins
from netsurgeon.data import data_kind, data_kinds, unregister_data_kind
from netsurgeon.errors import PluginWarning

ROOT = Path(__file__).resolve().parents[1]

#: the plug-in module: the toy kind of tests/data/toy_kind.py, registered as ``toyplug:N``
TOY_KIND = ("from netsurgeon.data import register_data_kind\n"
            "from tests.data.toy_kind import toy_kind\n\n"
            "register_data_kind(toy_kind('toyplug'))\n")


def install(site: Path, module: str, source: str, name: str = "toy") -> Path:
    """A distribution ``netsurgeon-NAME`` with one ``netsurgeon.plugins`` entry point, ``NAME = MODULE``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"netsurgeon_{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: netsurgeon-{name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{plugins.GROUP}]\n{name} = {module}\n")
    return site


def python(site: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, cwd=ROOT, **kwargs)


def test_import_netsurgeon_loads_an_installed_data_kind_in_a_new_process(tmp_path):
    site = install(tmp_path, "netsurgeon_toy_plugin", TOY_KIND)
    done = python(site, "-c", "import netsurgeon.data as d; print(d.data_kind('toyplug').grammar, d.data_grammar())")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() [0] == "toyplug:N" and done.stdout.rstrip().endswith("or toyplug:N")


def test_a_broken_plugin_is_one_warning_naming_it_and_netsurgeon_goes_on(tmp_path):
    site = install(tmp_path, "netsurgeon_broken_plugin", "raise ImportError('needs foo>=2')\n", name="broken")
    done = python(site, "-W", "always::netsurgeon.errors.PluginWarning", "-c",
                  "import netsurgeon.data as d; print([k.name for k in d.data_kinds()])")
    assert done.returncode == 0, done.stderr
    assert "['digits', 'fashion-mnist', 'folder', 'torchvision']" in done.stdout
    lines = [line for line in done.stderr.splitlines() if "PluginWarning" in line]
    assert len(lines) == 1, done.stderr
    assert "plug-in 'broken' (netsurgeon_broken_plugin) failed to load (ImportError: needs foo>=2)" in lines[0]


def test_load_plugins_loads_each_entry_point_once_and_calls_a_callable(tmp_path, monkeypatch):
    site = install(tmp_path, "netsurgeon_toy_plugin", TOY_KIND)
    (site / "netsurgeon_hook_plugin.py").write_text("CALLS = []\n\ndef setup():\n    CALLS.append(1)\n")
    (site / "netsurgeon_toy-0.1.dist-info" / "entry_points.txt").write_text(
        f"[{plugins.GROUP}]\ntoy = netsurgeon_toy_plugin\nhook = netsurgeon_hook_plugin:setup\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(plugins, "_loaded", {})
    try:
        assert sorted(plugins.load_plugins()) == ["hook", "toy"]
        assert plugins.load_plugins() == []  # loaded once: a second call registers nothing twice
        assert data_kind("toyplug").grammar == "toyplug:N" and data_kinds()[-1].name == "toyplug"
        assert sys.modules["netsurgeon_hook_plugin"].CALLS == [1]
    finally:
        unregister_data_kind("toyplug")
        sys.modules.pop("netsurgeon_toy_plugin", None)
        sys.modules.pop("netsurgeon_hook_plugin", None)


def test_a_failing_plugin_warns_in_process(tmp_path, monkeypatch):
    site = install(tmp_path, "netsurgeon_broken_plugin", "raise RuntimeError('boom')\n", name="broken")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(plugins, "_loaded", {})
    with pytest.warns(PluginWarning, match=r"plug-in 'broken' .*RuntimeError: boom.*fix or uninstall it"):
        assert plugins.load_plugins() == []


@pytest.mark.slow
def test_compare_jobs_in_child_processes_see_an_installed_data_kind(tmp_path):
    """``compare --jobs 2`` runs each job in its own ``python -m netsurgeon.compare.job``: the plug-in's kind is
    known there only because ``import netsurgeon`` loads installed plug-ins."""
    site = install(tmp_path / "site", "netsurgeon_toy_plugin", TOY_KIND)
    out = tmp_path / "cmp"
    done = python(site, "-m", "netsurgeon", "compare", "--model", "netsurgeon:tiny_resnet", "--data", "toyplug:32",
                  "--arm", "erase-relu", "--seeds", "1", "--jobs", "2", "--input-size", "3,8,8", "--out", str(out),
                  "--set", "epochs=1", "--set", "batch_size=16", "--set", "progress=false", timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    jobs = sorted(out.rglob("job.json"))
    assert len(jobs) == 2, done.stderr[-2000:]
    for path in jobs:
        assert json.loads(path.read_text())["data"] == "toyplug:32"
