"""Interpretation in the run dir: per-class scores, top losses, the first training batch, and
regression plots; written by `train` and by `evaluate`, through the plugin's `show` hook or the
generic drawing."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

import torchrig
from torchrig._cli import main

RECIPE = """\
name: digits-mlp
data:
  dataset: {name: t/digits}
  split: {val: 0.15, test: 0.2}
  train_transform: {name: t/jitter, scale: 0.05}
  eval_transform: {name: t/scale, factor: 1.0}
  batch_size: 32
model: {name: t/mlp, hidden: 32}
optimizer: {name: adamw, lr: 0.005}
metrics: [accuracy, f1]
trainer: {max_epochs: 3}
"""


@pytest.fixture
def plugin(rig_plugin):
    x = torchrig.Plugin("x")

    @x.dataset
    def diabetes():
        """scikit-learn's diabetes progression (442 patients, 10 features): real regression data."""
        from sklearn.datasets import load_diabetes

        X, y = load_diabetes(return_X_y=True)
        X = torch.tensor(X, dtype=torch.float32)
        y = torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32)
        return torch.utils.data.TensorDataset(X, y.unsqueeze(1))

    @x.model
    def linear(*, inputs: int = 10, outputs: int = 1):
        return torch.nn.Sequential(torch.nn.Linear(inputs, 32), torch.nn.ReLU(), torch.nn.Linear(32, outputs))

    torchrig.register_plugin(x, source="tests")
    return x


def _train(tmp_path, text=RECIPE, out="run", *extra):
    (tmp_path / "r.yaml").write_text(text)
    assert main(["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / out), "--quiet", *extra]) == 0
    return tmp_path / out


def _png(path):
    with Image.open(path) as img:
        return img.size


@pytest.mark.slow
def test_classification_run_writes_per_class_scores_and_top_losses(plugin, tmp_path, capsys):
    run = _train(tmp_path)
    out = capsys.readouterr().out
    assert "per class (test):" in out and "support" in out
    summary = json.loads((run / "summary.json").read_text())
    meta = json.loads((run / "meta.json").read_text())
    rows = summary["per_class"]["test"]
    assert list(rows) == [str(i) for i in range(10)]
    assert sum(r["support"] for r in rows.values()) == meta["sizes"]["test"]
    # torchmetrics' macro F1 over the same split is the mean of the per-class F1 computed here
    assert sum(r["f1"] for r in rows.values()) / 10 == pytest.approx(summary["test"]["f1"], abs=1e-3)
    top = json.loads((run / "top_losses.json").read_text())
    assert top["split"] == "test" and len(top["samples"]) == 12
    losses = [s["loss"] for s in top["samples"]]
    assert losses == sorted(losses, reverse=True)
    for s in top["samples"]:  # cross-entropy: -log p(true); p(true) <= p(predicted)
        if s["prediction"] == s["target"]:
            assert s["loss"] == pytest.approx(-math.log(s["probability"]), abs=2e-3)
        else:
            assert s["loss"] >= -math.log(s["probability"]) - 2e-3
    assert all(0 <= s["index"] < meta["sizes"]["test"] and s["input"] is None for s in top["samples"])
    for plot in ("top_losses.png", "train_batch.png", "confusion_matrix.png", "learning_curves.png"):
        width, height = _png(run / "plots" / plot)
        assert width > 300 and height > 200, plot


@pytest.mark.slow
def test_evaluate_writes_the_split_it_scores(plugin, tmp_path, capsys):
    run = _train(tmp_path)
    before = json.loads((run / "summary.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "val", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["per_class"]["test"] == before["per_class"]["test"]  # kept
    assert summary["per_class"]["val"] == printed["per_class"]
    assert printed["accuracy"] == pytest.approx(before["val"]["accuracy"], abs=1e-6)
    assert json.loads((run / "top_losses.json").read_text())["split"] == "val"
    assert (run / "plots" / "confusion_matrix.png").stat().st_size > 0


@pytest.mark.slow
def test_drawing_the_first_batch_changes_nothing_training_draws(plugin, tmp_path, monkeypatch):
    """The plot samples the random augmentation before training; every random state is put back,
    so the weights equal those of a run that never drew it."""
    from torchrig import _interpret

    drawn = _train(tmp_path, RECIPE, "drawn")
    assert (drawn / "plots" / "train_batch.png").is_file()
    monkeypatch.setattr(_interpret, "draw_train_batch", lambda *a, **k: None)
    plain = _train(tmp_path, RECIPE, "plain")
    assert not (plain / "plots" / "train_batch.png").exists()
    a = torchrig.load_weights(drawn / "weights.safetensors")
    b = torchrig.load_weights(plain / "weights.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_drawn_batch_is_the_first_one_training_takes(plugin, tmp_path, monkeypatch):
    from torchrig import _interpret

    (tmp_path / "r.yaml").write_text(RECIPE)
    parts = torchrig.build(torchrig.load_recipe(tmp_path / "r.yaml"))
    drawn = []
    collate = _interpret._collate
    monkeypatch.setattr(_interpret, "_collate", lambda loader, indices: drawn.append(indices) or collate(loader, indices))
    generator = parts.loaders["train"].generator
    _interpret.draw_train_batch(parts, generator, tmp_path / "batch.png")
    loader = parts.loaders["train"]
    loader.sampler.set_epoch(1)  # as Trainer.fit does before its first epoch
    assert drawn == [next(iter(loader.batch_sampler))[:16]]


@pytest.mark.slow
def test_regression_run_plots_predictions_and_residuals(plugin, tmp_path):
    recipe = """\
task: regression
data:
  dataset: {name: x/diabetes}
  split: {val: 0.15, test: 0.2}
  batch_size: 32
model: {name: x/linear}
loss: mse
optimizer: {name: adamw, lr: 0.01}
metrics: [r2, mae]
trainer: {max_epochs: 15}
"""
    run = _train(tmp_path, recipe)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["r2"] > 0.2 and "per_class" not in summary
    for plot in ("predicted_vs_true.png", "residuals.png", "top_losses.png"):
        assert _png(run / "plots" / plot)[0] > 200, plot
    assert not (run / "plots" / "confusion_matrix.png").exists()
    top = json.loads((run / "top_losses.json").read_text())["samples"]
    assert len(top) == 12
    for s in top:  # the recipe's own loss per sample: the squared error
        assert s["loss"] == pytest.approx((s["prediction"][0] - s["target"][0]) ** 2, rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("inputs, drawn", [
    (torch.rand(3, 8, 8), "image"), (torch.rand(1, 8, 8), "image"), (torch.rand(20, 30), "image"),
    (torch.rand(100), "line"), (torch.tensor([3, 1, 4]), "text"), ("a short text", "text"),
    ((torch.rand(100), torch.tensor(50)), "line"), ({"input_ids": torch.tensor([5, 6])}, "text"),
])
def test_generic_drawing(inputs, drawn):
    from torchrig._plots import _pyplot

    fig, ax = _pyplot().subplots()
    torchrig.show_generic(inputs, ax)
    found = {"image": len(ax.images), "line": len(ax.lines), "text": len(ax.texts)}
    assert found[drawn] == 1 and sum(found.values()) == 1
    _pyplot().close(fig)


def test_show_image_undoes_the_normalisation():
    from torchrig._plots import _pyplot

    image = torch.rand(3, 4, 4)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    normalized = (image - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    fig, ax = _pyplot().subplots()
    torchrig.show_image(normalized, ax, mean=mean, std=std)
    shown = torch.as_tensor(ax.images[0].get_array()).permute(2, 0, 1)
    assert torch.allclose(shown.float(), image, atol=1e-5)
    _pyplot().close(fig)


def test_text_from_the_data_is_drawn_as_it_is(tmp_path):
    """Samples and class names are drawn literally: '$5 or \\frac $10' is no mathtext formula
    (matplotlib failed to parse it, and the run ended), control characters (a fortune's
    overstruck x<BS>x) reach no font, and a character no font has (an emoji in a folder name) is
    a box, not a warning on the user's terminal."""
    import warnings

    from torchrig._interpret import draw_grid
    from torchrig._plots import confusion_matrix, plain

    assert plain("bold x\bx, under_\bline\a") == r"bold x, underline "
    assert plain("$5 or \\frac $10") == r"\$5 or \frac \$10"
    texts = ["it costs $5 or \\frac $10", "x\bx a \x1b[1m bell\a", "$" + "a" * 80 + "$"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph 8 missing from font(s)" would fail here
        draw_grid([(t, f"caption {t}") for t in texts], None, tmp_path / "grid.png", title="t")
        confusion_matrix(torch.tensor([0, 1, 2]), torch.tensor([1, 1, 2]), ["$a\\frac$", "b\bb", "bird \N{BIRD}"],
                         tmp_path / "cm.png")
    assert _png(tmp_path / "grid.png")[0] > 200 and _png(tmp_path / "cm.png")[0] > 200
