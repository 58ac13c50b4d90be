"""The torchrig command: help and version, without importing torch."""

from __future__ import annotations

import subprocess
import sys

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
    assert set(torchrig.__all__) <= set(dir(torchrig))
    for name in torchrig.__all__:
        assert getattr(torchrig, name) is not None
