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


def test_list_takes_a_pattern_without_a_kind_and_a_singular_kind(capsys):
    from torchrig._cli import main

    assert main(["list", "resnet1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("models (4):") and "resnet18" in out and "datasets" not in out
    assert main(["list", "model", "small_cnn"]) == 0
    assert capsys.readouterr().out == "models (1):\n  vision: small_cnn\n"
    assert main(["list", "zzz"]) == 0
    assert "nothing matches 'zzz'" in capsys.readouterr().out
    assert main(["list", "transforms", "*box*"]) == 0  # detection-only v2 transforms are not offered
    assert capsys.readouterr().out.endswith("transforms (0):\n")
    assert main(["list", "foo", "bar"]) == 2
    assert "'foo' is not a kind; the kinds are models, datasets, transforms" in capsys.readouterr().err


def test_set_with_a_space_gets_a_key_value_hint(capsys):
    from torchrig._cli import main

    with pytest.raises(SystemExit) as exited:
        main(["train", "r.yaml", "--set", "trainer.max_epochs", "1"])
    assert exited.value.code == 2
    assert "--set takes key=value as one word: --set trainer.max_epochs=1" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["predict", "run", "x.png", "--top", "0"], "argument --top: must be at least 1, got 0"),
    (["predict", "run", "x.png", "--top", "two"], "argument --top: expected a whole number, got 'two'"),
    (["train", "r.yaml", "--nproc", "0"], "argument --nproc: must be at least 1, got 0"),
])
def test_counts_below_one_are_refused_before_any_work(argv, message, capsys):
    """--top 0 printed no labels, --top -2 ended in an internal error, --nproc 0 trained on one
    process without a word."""
    from torchrig._cli import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_predict_in_python_refuses_top_k_below_one(tmp_path):
    from torchrig._run import predict

    with pytest.raises(torchrig.TorchrigError, match="top_k must be at least 1"):
        predict(tmp_path, ["x.png"], top_k=0)


def test_suggestions_name_the_closest_first():
    import torchrig

    assert torchrig.did_you_mean("smal_cnn", ["small_cnn", "alexnet", "mall_cnx"]) == \
        " Did you mean 'small_cnn'? Close: mall_cnx."
