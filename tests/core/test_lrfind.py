"""The learning-rate range test: `torchrig.lr_find` puts back everything it touched, `optimizer.lr:
auto` trains bit-identically to the same rate given by hand, `torchrig lr-find` plots and suggests."""

from __future__ import annotations

import json

import pytest
import torch

import torchrig
from torchrig._cli import main

RECIPE = """\
seed: 0
data:
  dataset: {{name: t/digits, limit: 600}}
  split: {{val: 0.15, test: 0.2}}
  train_transform: {{name: t/jitter}}
  batch_size: 32
model: {{name: t/mlp, hidden: 32}}
optimizer: {{name: adamw, lr: {lr}, weight_decay: 0.01}}
metrics: [accuracy]
trainer: {{max_epochs: {epochs}}}
{extra}"""


@pytest.fixture
def jitter(rig_plugin):
    return rig_plugin  # its t/jitter: a random augmentation the sweep must not disturb


def _write(tmp_path, name, lr="auto", epochs=2, extra=""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(RECIPE.format(lr=lr, epochs=epochs, extra=extra))
    return path


def test_lr_find_puts_everything_back(digit_loaders):
    train, _ = digit_loaders
    train.generator = torch.Generator().manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(),
                                torch.nn.Dropout(0.2), torch.nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng, loader_rng = torch.get_rng_state(), train.generator.get_state()
    trainer = torchrig.Trainer(progress_bar=False)
    result = torchrig.lr_find(trainer, model, train, torch.nn.CrossEntropyLoss(), optimizer, num_steps=60)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BatchNorm's statistics too
    assert optimizer.state_dict()["state"] == {} and optimizer.param_groups[0]["lr"] == 1e-3
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(train.generator.get_state(), loader_rng)
    assert len(result.lrs) == len(result.losses) >= 30 and result.lrs == sorted(result.lrs)
    assert result.suggestion is not None and 1e-5 < result.suggestion < 1
    assert min(result.losses) < result.losses[0] * 0.8  # the loss did fall along the way


@pytest.mark.slow
def test_lr_auto_trains_exactly_as_the_same_rate_given_by_hand(jitter, tmp_path, capsys):
    assert main(["train", str(_write(tmp_path, "auto")), "--out", str(tmp_path / "auto"), "--quiet"]) == 0
    assert "optimizer.lr: auto -> " in capsys.readouterr().out
    resolved = torchrig.load_recipe(tmp_path / "auto" / "recipe.yaml")
    lr = resolved["optimizer"]["lr"]
    assert isinstance(lr, float) and (tmp_path / "auto" / "plots" / "lr_find.png").stat().st_size > 10_000
    assert main(["train", str(_write(tmp_path, "hand", lr=lr)), "--out", str(tmp_path / "hand"), "--quiet"]) == 0
    a = torchrig.load_weights(tmp_path / "auto" / "weights.safetensors")
    b = torchrig.load_weights(tmp_path / "hand" / "weights.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_resumed_auto_run_keeps_the_rate_it_found(jitter, tmp_path, monkeypatch):
    from torchrig import _lrfind

    path = _write(tmp_path, "auto", epochs=2)
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet", "--set", "trainer.max_epochs=1"]) == 0
    monkeypatch.setattr(_lrfind, "sweep_recipe", lambda *a, **k: pytest.fail("swept again on resume"))
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet", "--resume"]) == 0


def test_cli_plots_and_suggests(jitter, tmp_path, capsys):
    assert main(["lr-find", str(_write(tmp_path, "r", lr=0.001)), "--out", str(tmp_path / "lf"), "--steps", "60"]) == 0
    out = capsys.readouterr().out
    found = json.loads((tmp_path / "lf" / "lr_find.json").read_text())
    suggestion = float("{:.3g}".format(found["suggestion"]))
    assert f"suggested learning rate: {suggestion}" in out
    assert "--set optimizer.lr=" in out and (tmp_path / "lf" / "plots" / "lr_find.png").is_file()
    assert len(found["lrs"]) == len(found["losses"]) <= 60


def test_a_scheduler_that_sets_its_own_rate_is_refused(jitter, tmp_path, capsys):
    path = _write(tmp_path, "r", extra="scheduler: {name: one_cycle, max_lr: 0.1}\n")
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "'one_cycle' sets the learning rate itself (max_lr given)" in err and "Remove scheduler.max_lr" in err
    assert not (tmp_path / "run").exists()
