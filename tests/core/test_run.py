"""Recipes end to end through the CLI: train -> run dir -> evaluate / predict, resume, errors."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import torchrig
from torchrig._cli import main

RECIPE = """\
name: digits-mlp
data:
  dataset: {name: t/digits}
  split: {val: 0.15, test: 0.2}
  train_transform: {name: t/scale, factor: 1.0}
  batch_size: 32
model: {name: t/mlp, hidden: 64}
optimizer: {name: adamw, lr: 0.005}
scheduler: cosine
metrics: [accuracy, f1]
trainer: {max_epochs: 6, early_stopping: {patience: 3}}
"""


@pytest.fixture
def recipe_file(tmp_path, monkeypatch, rig_plugin):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "digits.yaml"
    path.write_text(RECIPE)
    return path


def test_train_writes_a_self_describing_run_dir(recipe_file, tmp_path, capsys):
    assert main(["train", str(recipe_file), "--quiet"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "digits-mlp"
    assert f"run dir: {run.relative_to(tmp_path)}" in out and "test" in out and "accuracy" in out
    for name in ("recipe.yaml", "meta.json", "weights.safetensors", "state.pt", "metrics.csv",
                 "summary.json", "plots/learning_curves.png", "plots/confusion_matrix.png"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] > 0.9 and set(summary["test"]) == {"loss", "accuracy", "f1"}
    assert summary["classes"] == [str(i) for i in range(10)] and summary["device"] == "cpu"
    assert summary["versions"]["torch"] and summary["wall_time_s"] > 0
    assert "num_classes: 10" in (run / "recipe.yaml").read_text()  # inferred, then written down
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == summary["epochs"]

    assert main(["evaluate", str(run), "--split", "test", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert scores["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-5)

    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    sample = tmp_path / "seven.csv"
    sample.write_text(",".join(str(v / 16) for v in X[y == 7][0]))
    assert main(["predict", str(run), str(sample), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["top"][0][0] == "7" and 0.5 < result["top"][0][1] <= 1.0 and len(result["top"]) == 3
    assert main(["predict", str(run), str(sample), "--top", "2"]) == 0
    assert capsys.readouterr().out.startswith(f"{sample}: 7 ")


def test_set_and_out_and_resume(recipe_file, tmp_path, capsys):
    out = tmp_path / "custom"
    assert main(["train", str(recipe_file), "--out", str(out), "--quiet", "--set", "trainer.max_epochs=2",
                 "--set", "trainer.early_stopping=null"]) == 0
    assert len(list(csv.DictReader((out / "metrics.csv").open()))) == 2
    assert main(["train", str(recipe_file), "--out", str(out), "--quiet"]) == 2
    assert "already holds a run. Add --resume" in capsys.readouterr().err
    assert main(["train", str(recipe_file), "--out", str(out), "--resume", "--quiet",
                 "--set", "trainer.max_epochs=4", "--set", "trainer.early_stopping=null"]) == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]


def test_run_dir_errors(recipe_file, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "is not a torchrig run dir: missing recipe.yaml, meta.json, weights.safetensors" in capsys.readouterr().err
    assert main(["train", str(recipe_file), "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "--resume: no training state in" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "No recipe file at" in capsys.readouterr().err


def test_predict_rejects_unknown_inputs(recipe_file, tmp_path, capsys):
    main(["train", str(recipe_file), "--quiet", "--set", "trainer.max_epochs=1"])
    run = tmp_path / "runs" / "digits-mlp"
    capsys.readouterr()
    (tmp_path / "photo.png").write_bytes(b"\x89PNG")
    assert main(["predict", str(run), "photo.png"]) == 2
    assert "Cannot read 'photo.png': the 't' plugin reads .csv" in capsys.readouterr().err
    (tmp_path / "rows").mkdir()
    assert main(["predict", str(run), "rows"]) == 2
    assert "Cannot predict 'rows': it is a folder. Pass its files, e.g. rows/*.csv" in capsys.readouterr().err
    assert main(["predict", str(run), "missing.csv"]) == 2
    assert "Cannot predict 'missing.csv': there is no file at 'missing.csv'" in capsys.readouterr().err


def test_list_info_plugins(rig_plugin, capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "models (1):\n  t: mlp" in out and "datasets (1):\n  t: digits" in out
    assert main(["list", "models", "--plugin", "t"]) == 0
    assert capsys.readouterr().out == "models (1):\n  t: mlp\n"
    assert main(["info", "t/mlp"]) == 0
    out = capsys.readouterr().out
    assert "num_classes: int = 10" in out and "A one-hidden-layer MLP" in out
    assert main(["info", "t/mpl"]) == 2
    assert "Did you mean 't/mlp'" in capsys.readouterr().err
    assert main(["plugins"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 1 and rows[0].split() == ["t", "tests", "ok", "(6", "components)"], rows


def test_fitted_transform_is_fitted_once_saved_and_reused(recipe_file, tmp_path, rig_plugin, capsys):
    text = recipe_file.read_text().replace("train_transform: {name: t/scale, factor: 1.0}",
                                           "train_transform: t/standardize\n  eval_transform: t/standardize")
    text = text.replace("model: {name: t/mlp, hidden: 64}", "model: t/mlp")
    recipe_file.write_text(text)
    Standardize = rig_plugin.standardize_class
    Standardize.fits = 0
    run = tmp_path / "fitted"
    assert main(["train", str(recipe_file), "--out", str(run), "--quiet", "--set", "trainer.max_epochs=2"]) == 0
    assert Standardize.fits == 1  # one object for train and eval: fitted once, on train only
    state = json.loads((run / "fitted.json").read_text())
    assert len(state["train_transform"]["mean"]) == 64
    assert "hidden: 32" in (run / "recipe.yaml").read_text()  # the fitted transform sized the model
    summary = json.loads((run / "summary.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert Standardize.fits == 1  # evaluate reloaded the state instead of fitting again
    (run / "fitted.json").unlink()
    sample = tmp_path / "x.csv"
    sample.write_text(",".join(["0.5"] * 64))
    assert main(["predict", str(run), str(sample)]) == 2
    assert "lacks the fitted state of its train_transform (fitted.json)" in capsys.readouterr().err


def test_bucket_by_length_needs_lengths(recipe_file, tmp_path, capsys):
    assert main(["train", str(recipe_file), "--out", str(tmp_path / "run"), "--quiet",
                 "--set", "data.bucket_by_length=true"]) == 2
    assert "data.bucket_by_length needs each sample's length" in capsys.readouterr().err


def test_build_gives_a_recipes_parts(recipe_file, tmp_path):
    """torchrig.build: the parts `train` uses, trainable by hand; data=False builds what predict needs."""
    recipe = torchrig.load_recipe(recipe_file)
    parts = torchrig.build(recipe)
    assert set(parts.splits) == {"train", "val", "test"} and parts.classes == [str(i) for i in range(10)]
    assert recipe["model"]["num_classes"] == 10  # what the data implies is written into the recipe
    assert set(parts.loaders) == {"train", "val"} and parts.callbacks == []  # no run dir: nothing written
    history = torchrig.Trainer(max_epochs=3, progress_bar=False).fit(
        parts.model, parts.loaders["train"], parts.loss, parts.optimizer, val_loader=parts.loaders["val"],
        scheduler=parts.scheduler, metrics=["accuracy"])
    assert history[-1]["val_accuracy"] > 0.8
    bare = torchrig.build(torchrig.load_recipe(recipe_file), data=False)
    assert bare.splits == {} and bare.loaders == {} and isinstance(bare.model, torch.nn.Module)
    assert not list(tmp_path.glob("runs/*"))


def test_a_run_failing_before_its_first_epoch_removes_only_a_run_dir_it_created(recipe_file, tmp_path, capsys):
    """A model too small for the labels fails in the first batch: the run dir this run created
    goes (there is nothing to resume); a folder that was there before stays, with its files."""
    bad = ["--set", "model.num_classes=3", "--quiet"]
    assert main(["train", str(recipe_file), "--out", str(tmp_path / "fresh"), *bad]) != 0
    assert not (tmp_path / "fresh").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["train", str(recipe_file), "--out", str(tmp_path / "mine"), *bad]) != 0
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_second_run_of_a_recipe_says_where_it_goes_first_and_last(recipe_file, tmp_path, capsys):
    assert main(["train", str(recipe_file), "--quiet", "--set", "trainer.max_epochs=1"]) == 0
    capsys.readouterr()
    assert main(["train", str(recipe_file), "--quiet", "--set", "trainer.max_epochs=1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = "runs/digits-mlp holds an earlier run: this one goes to runs/digits-mlp-2 (--out DIR chooses the folder"
    assert lines[0].startswith(first), lines[:2]
    assert lines[-1].startswith("run dir: runs/digits-mlp-2"), lines[-3:]
