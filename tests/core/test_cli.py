"""The torchrig command: help and version, without importing torch."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import torchrig


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torchrig", *args], capture_output=True, text=True, timeout=60)


def test_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"torchrig {torchrig.__version__}"


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from torchrig._cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'numpy', 'torchmetrics') if m in sys.modules]\n"
        "print('imported:', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "usage: torchrig" in result.stdout
    assert "imported: []" in result.stdout


def test_lazy_public_names():
    """Every public name is either imported eagerly or mapped to the module that defines it."""
    eager = {"__version__", "TorchrigError", "InputError", "did_you_mean", "check_on_error"}
    assert set(torchrig._LAZY) == set(torchrig.__all__) - eager
    for name, module in torchrig._LAZY.items():
        value = getattr(torchrig, name)
        assert value is getattr(importlib.import_module(module, "torchrig"), name), name
    with pytest.raises(AttributeError, match="no attribute 'Traner'"):
        torchrig.Traner  # noqa: B018
