"""Registry and plugin discovery, with faked entry points (no install needed)."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

import torchrig
from torchrig import Plugin, TorchrigError
from torchrig import _plugins


@pytest.fixture
def fake_plugins(monkeypatch, tmp_path):
    """Write plugin modules into tmp_path and expose them as entry points of our group."""
    points: list[EntryPoint] = []
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_plugins, "_entry_points", lambda: list(points))
    _plugins.reset()

    def add(name: str, source: str, module: str | None = None, attr: str = "plugin") -> None:
        module = module or f"fake_{name}_{len(points)}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        sys.modules.pop(module, None)
        points.append(EntryPoint(name=name, value=f"{module}:{attr}", group=_plugins.GROUP))
        _plugins.reset()

    yield add
    _plugins.reset()


GOOD = """
import torchrig
plugin = torchrig.Plugin("good")

@plugin.model
def tiny(*, num_classes: int = 10, width: int = 8):
    "A tiny model."
    return ("tiny", num_classes, width)

@plugin.dataset
def numbers(*, n: int = 5, split: str = "train"):
    return list(range(n))

@plugin.transform
def double():
    return lambda x: 2 * x
"""


def test_lookup_list_and_kwargs(fake_plugins):
    fake_plugins("good", GOOD)
    assert torchrig.list_models() == ["good/tiny"]
    assert torchrig.list_datasets(plugin="good") == ["good/numbers"]
    assert torchrig.list_transforms("dou*") == ["good/double"]
    assert torchrig.list_models(plugin="other") == []
    assert torchrig.get_model("good/tiny", num_classes=3) == ("tiny", 3, 8)
    assert torchrig.get_transform("good/double")(4) == 8
    with pytest.raises(TorchrigError, match=r"model 'good/tiny' got an unexpected argument 'num_class'\. "
                                            r"Did you mean 'num_classes'\? It takes: num_classes, width"):
        torchrig.get_model("good/tiny", num_class=3)


def test_unknown_name_lists_close_matches(fake_plugins):
    fake_plugins("good", GOOD)
    with pytest.raises(TorchrigError, match=r"Unknown model 'good/tinny'\. Did you mean 'good/tiny'\? "
                                            r"Available: good/tiny\. Run `torchrig list models`"):
        torchrig.get_model("good/tinny")
    with pytest.raises(TorchrigError, match=r"Unknown model 'tiny'\. Did you mean 'good/tiny'"):
        torchrig.get_model("tiny")


def test_loading_is_lazy_and_once(fake_plugins, tmp_path):
    fake_plugins("good", GOOD + "\nimport pathlib\npathlib.Path(__file__).with_suffix('.count').open('a').write('x')\n")
    assert not _plugins._loaded
    torchrig.list_models()
    torchrig.get_model("good/tiny")
    torchrig.list_datasets()
    counts = list(tmp_path.glob("*.count"))
    assert len(counts) == 1 and counts[0].read_text() == "x"


def test_a_broken_plugin_is_isolated_and_reported(fake_plugins):
    fake_plugins("good", GOOD)
    fake_plugins("broken", "import torchrig\nraise RuntimeError('boom at import')\n")
    fake_plugins("needsdep", "import not_a_real_module_xyz\n")
    assert torchrig.get_model("good/tiny")[0] == "tiny"  # the others still work
    statuses = {s.name: s for s in torchrig.plugin_statuses()}
    assert statuses["good"].state == "ok" and statuses["good"].components == 3
    assert statuses["broken"].state == "failed" and "RuntimeError: boom at import" in statuses["broken"].error
    assert statuses["needsdep"].hint.startswith("pip install not_a_real_module_xyz")
    with pytest.raises(TorchrigError, match=r"Unknown model 'broken/x': the plugin 'broken' .* failed to load: "
                                            r"RuntimeError: boom at import\. Fix: "):
        torchrig.get_model("broken/x")


def test_entry_point_must_be_a_plugin(fake_plugins):
    fake_plugins("odd", "plugin = 42\n")
    (status,) = torchrig.plugin_statuses()
    assert status.state == "failed" and "is a int, not a torchrig.Plugin" in status.error


def test_two_sources_claiming_one_name_is_an_error_naming_both(fake_plugins):
    fake_plugins("good", GOOD)
    fake_plugins("good", GOOD.replace('"A tiny model."', '"Another one."'), module="fake_clone")
    with pytest.raises(TorchrigError, match=r"The model 'good/tiny' is registered by both "
                                            r"'(fake_good_0|fake_clone):plugin' and '(fake_clone|fake_good_0):plugin'"):
        torchrig.get_model("good/tiny")
    failed = [s for s in torchrig.plugin_statuses() if s.state == "failed"]
    assert len(failed) == 1 and "registered by both" in failed[0].error


def test_env_vars_restrict_plugins(fake_plugins, monkeypatch):
    fake_plugins("good", GOOD)
    fake_plugins("other", GOOD.replace('Plugin("good")', 'Plugin("other")'))
    monkeypatch.setenv("TORCHRIG_PLUGINS", "other")
    assert torchrig.list_models() == ["other/tiny"]
    with pytest.raises(TorchrigError, match=r"the plugin 'good' .* is disabled by TORCHRIG_PLUGINS"):
        torchrig.get_model("good/tiny")
    monkeypatch.delenv("TORCHRIG_PLUGINS")
    monkeypatch.setenv("TORCHRIG_DISABLE_PLUGINS", "other, nothing")
    _plugins.reset()
    assert torchrig.list_models() == ["good/tiny"]


def test_plugin_decorators_validate():
    with pytest.raises(TorchrigError, match=r"Plugin name 'Bad Name' is not valid"):
        Plugin("Bad Name")
    plugin = Plugin("mine")

    @plugin.model
    def net():
        return 1

    with pytest.raises(TorchrigError, match=r"Plugin 'mine' registers the model 'net' twice"):
        plugin.model(net)
    assert repr(plugin) == "Plugin('mine', 1 components)"


@pytest.mark.parametrize("cls_name, key", [
    ("RandomResizedCrop", "random_resized_crop"), ("MulticlassAUROC", "multiclass_auroc"),
    ("RandomIoUCrop", "random_iou_crop"), ("GaussianBlur", "gaussian_blur"), ("CosineAnnealingLR", "cosine_annealing_lr"),
    ("RGB", "rgb"), ("ToPILImage", "to_pil_image"), ("MeanSquaredError", "mean_squared_error"),
])
def test_snake_case_keys(cls_name, key):
    assert torchrig.snake_case(cls_name) == key


def test_register_plugin_at_runtime_and_info(fake_plugins):
    fake_plugins("good", GOOD)
    plugin = Plugin("notebook")

    @plugin.model
    def mlp(*, num_classes: int = 2, hidden: tuple = (8, 8)):
        """An MLP for notebooks.

        Args:
            num_classes: outputs.
        """
        return num_classes

    torchrig.register_plugin(plugin)
    assert torchrig.get_model("notebook/mlp", num_classes=5) == 5
    from torchrig._registry import component_info

    _, text = component_info("notebook/mlp")
    assert "num_classes: int = 2" in text and "hidden: tuple = (8, 8)" in text and "An MLP for notebooks." in text


def test_a_lookup_loads_only_its_plugin(fake_plugins, capsys):
    """`good/tiny` imports the plugin named `good` alone; a plugin whose components carry another
    prefix than its entry point's name is still found (every plugin is then loaded), and
    `torchrig plugins` says why."""
    fake_plugins("good", GOOD)
    fake_plugins("other", GOOD.replace('"good"', '"other"'))
    fake_plugins("acme-models", GOOD.replace('"good"', '"acme"'), module="fake_acme")
    assert torchrig.get_model("good/tiny") == ("tiny", 10, 8)
    states = {s.name: s.state for s in _plugins.plugin_statuses(load=False)}
    assert states == {"good": "ok", "other": "not loaded", "acme-models": "not loaded"}
    assert torchrig.get_model("acme/tiny", width=2) == ("tiny", 10, 2)  # no entry point "acme": all load
    assert {s.name: s.state for s in _plugins.plugin_statuses(load=False)} == dict.fromkeys(states, "ok")
    from torchrig._cli import main

    assert main(["plugins"]) == 0
    assert ("note:  registers acme/... under the entry point name 'acme-models': a lookup of acme/NAME loads "
            "every plugin") in capsys.readouterr().out


BROKEN = """
import torch
import torchrig
plugin = torchrig.Plugin("broken")

class Flat(torch.utils.data.Dataset):
    classes = ["a", "b"]
    def __len__(self): return 4
    def __getitem__(self, i): return torch.zeros(3)          # no target

class Fits:
    def fit(self, inputs): pass                                # no state_dict: a run dir could not reload it
    def __call__(self, x): return x

@plugin.dataset
def flat(): return Flat()

class Pairs(torch.utils.data.Dataset):
    classes = ["a", "b"]
    def __len__(self): return 2
    def __getitem__(self, i): return torch.full((3,), float(i)), i

@plugin.dataset
def pairs(): return Pairs()

@plugin.transform
def fits(): return Fits()

@plugin.model
def three(*, num_classes: int = 2): return torch.nn.Linear(3, 3)   # ignores num_classes

@plugin.reader("csv")
def row(path): return torch.zeros(3)
"""


def test_check_plugin_names_what_breaks_the_protocol(fake_plugins, capsys):
    from torchrig._cli import main
    from torchrig.testing import check_plugin, inspect_plugin

    fake_plugins("broken", BROKEN)
    report = inspect_plugin("broken")
    assert ("ok", "broken/pairs", "2 samples, 2 classes") in report.lines
    assert report.problems == [
        "broken/flat: a sample is Tensor, not an (inputs, target) pair",
        "broken/fits: has fit() but no state_dict / load_state_dict: a run dir could not reload it",
        "broken/three: returned shape (2, 3) for a batch; expected (batch, 2) for 2 classes",
        "broken/row: register it with @plugin.reader('.ext', ...): suffixes ['csv'] do not start with '.'",
    ]
    with pytest.raises(AssertionError, match="plugin 'broken': 4 problem"):
        check_plugin("broken")
    assert main(["check-plugin", "broken"]) == 1
    assert "FAIL  broken/three" in capsys.readouterr().out
    assert main(["check-plugin", "nothing"]) == 2  # no such plugin: bad input, named, with the installed ones
    assert "No plugin named 'nothing'" in capsys.readouterr().err
