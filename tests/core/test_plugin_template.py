"""The one end-to-end test of third-party plugins: pip-install examples/plugin-template into a
throwaway folder, then see its components in `torchrig list`, Python and a 1-epoch recipe."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[2] / "examples" / "plugin-template"


def _can_build_wheels_here() -> bool:
    """setuptools >= 70.1 builds wheels by itself; older ones need the wheel package."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    from importlib.metadata import version

    major, minor = (int(p) for p in version("setuptools").split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
           "--target", str(target), str(TEMPLATE)]
    if _can_build_wheels_here():
        cmd.insert(4, "--no-build-isolation")  # build with the setuptools we have, no registry
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]))
    return target, env


def torchrig(env, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "torchrig", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_installed_plugin_appears_everywhere(installed, tmp_path):
    target, env = installed
    assert (target / "torchrig_acme").is_dir()

    listed = torchrig(env, "list", "models", "--plugin", "acme")
    assert listed.returncode == 0, listed.stderr
    assert "acme: wide_mlp" in listed.stdout

    info = torchrig(env, "info", "acme/wide_mlp")
    assert info.returncode == 0 and "width" in info.stdout and "one-hidden-layer MLP" in info.stdout, info.stderr
    checked = torchrig(env, "check-plugin", "acme")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    plugins = torchrig(env, "plugins")
    assert "torchrig-acme 0.1.0" in plugins.stdout and "ok (4 components)" in plugins.stdout

    code = "import torchrig; print(type(torchrig.get_model('acme/wide_mlp', num_classes=3)).__name__)"
    python = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert python.stdout.strip() == "Sequential", python.stderr

    run = tmp_path / "run"
    trained = torchrig(env, "train", str(TEMPLATE / "recipe.yaml"), "--out", str(run),
                       "--set", "trainer.max_epochs=1", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["test"]["accuracy"] > 0.8
    assert summary["versions"]["torchrig-acme"] == "0.1.0"

    predicted = torchrig(env, "predict", str(run), str(TEMPLATE / "sample.csv"))
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.startswith(f"{TEMPLATE / 'sample.csv'}: blob")

    own_tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TEMPLATE / "tests")],
                               env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert own_tests.returncode == 0, own_tests.stdout + own_tests.stderr


@pytest.mark.slow
def test_broken_install_is_reported_not_fatal(installed, tmp_path):
    target, env = installed
    broken = tmp_path / "broken_site"
    (broken / "torchrig_broken-0.0.1.dist-info").mkdir(parents=True)
    (broken / "torchrig_broken-0.0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: torchrig-broken\nVersion: 0.0.1\n")
    (broken / "torchrig_broken-0.0.1.dist-info" / "entry_points.txt").write_text("[torchrig.plugins]\nbroken = torchrig_broken:plugin\n")
    (broken / "torchrig_broken.py").write_text("import a_module_that_is_not_installed\n")
    env = dict(env, PYTHONPATH=os.pathsep.join([str(broken), env["PYTHONPATH"]]))
    info = torchrig(env, "info", "acme/wide_mlp")
    assert info.returncode == 0 and "width" in info.stdout and "one-hidden-layer MLP" in info.stdout, info.stderr
    checked = torchrig(env, "check-plugin", "acme")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    plugins = torchrig(env, "plugins")
    assert plugins.returncode == 0
    assert "broken     torchrig-broken 0.0.1" in plugins.stdout and "failed" in plugins.stdout
    assert "fix:   pip install a_module_that_is_not_installed" in plugins.stdout
    listed = torchrig(env, "list", "models")
    assert "acme: wide_mlp" in listed.stdout and "plugin 'broken' (torchrig-broken 0.0.1) failed" in listed.stderr
