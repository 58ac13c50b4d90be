"""The shipped vision recipes, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_digits_recipe_reaches_its_accuracy(tmp_path):
    run = tmp_path / "digits"
    result = subprocess.run([sys.executable, "-m", "torchrig", "train", str(REPO / "recipes/vision/digits.yaml"),
                             "--out", str(run), "--quiet"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] >= 0.985, summary["test"]
    assert summary["classes"] == [str(i) for i in range(10)]
    assert "run dir:" in result.stdout and "test" in result.stdout

    # predict a real digit saved as a PNG, from the run dir alone
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    seven = digits.images[digits.target == 7][-1]
    Image.fromarray((seven * 255 / 16).astype("uint8")).resize((16, 16)).save(tmp_path / "seven.png")
    predicted = subprocess.run([sys.executable, "-m", "torchrig", "predict", str(run), str(tmp_path / "seven.png")],
                               capture_output=True, text=True, timeout=300)
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.split(": ", 1)[1].startswith("7 ")
