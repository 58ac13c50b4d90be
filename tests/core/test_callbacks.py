"""Callbacks: progress output, early stopping, checkpoints, LR monitor, CSV and user hooks."""

from __future__ import annotations

import csv
import io
import time

import pytest
import torch
from torch import nn

import torchrig
from torchrig import (
    Callback,
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    ProgressBar,
    TorchrigError,
    Trainer,
)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def fit(trainer, loaders, model=None, lr=3e-3, **kwargs):
    model = model or mlp()
    train, val = loaders
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    return model, trainer.fit(model, train, nn.CrossEntropyLoss(), opt, val_loader=val, **kwargs)


class Slow(Callback):
    def on_train_batch_end(self, trainer, step, loss, **kwargs):
        time.sleep(0.005)  # tqdm redraws at most every 0.1 s; make the epoch last longer


def test_progress_bar_renders_running_loss_and_summary(digit_loaders):
    out = io.StringIO()
    bar = ProgressBar(bar=True, file=out, refresh_rate=5)
    trainer = Trainer(max_epochs=2, progress_bar=False, callbacks=[bar, Slow()])
    fit(trainer, digit_loaders, metrics=["accuracy"])
    text = out.getvalue()
    assert "epoch 1/2" in text and "loss=" in text and "batch" in text  # tqdm bar with running loss
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.startswith("epoch 2/2  train_loss")]
    assert lines and "val_accuracy" in lines[0] and lines[0].endswith("s")


def test_progress_bar_is_quiet_when_not_a_tty(digit_loaders):
    out = io.StringIO()  # not a TTY: no bar, only the per-epoch lines
    trainer = Trainer(max_epochs=2, progress_bar=False, callbacks=[ProgressBar(file=out)])
    fit(trainer, digit_loaders)
    assert out.getvalue().count("\n") == 2 and "it/s" not in out.getvalue()


def test_progress_bar_false_prints_nothing(digit_loaders, capsys):
    fit(Trainer(max_epochs=2, progress_bar=False), digit_loaders)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_early_stopping_stops_and_counts(digit_loaders):
    stopper = EarlyStopping("val_loss", patience=2)
    # lr=0: the loss never improves after the first epoch
    model, history = fit(Trainer(max_epochs=20, progress_bar=False, callbacks=[stopper]), digit_loaders, lr=0.0)
    assert len(history) == 3 and stopper.stopped_epoch == 3 and stopper.wait == 2


def test_early_stopping_mode_max_and_min_delta(digit_loaders):
    stopper = EarlyStopping("val_accuracy", mode="max", patience=1, min_delta=0.5)
    _, history = fit(Trainer(max_epochs=20, progress_bar=False, callbacks=[stopper]), digit_loaders,
                     metrics=["accuracy"])
    assert len(history) == 2  # no epoch improves accuracy by 50 points


def test_early_stopping_unknown_monitor_lists_keys(digit_loaders):
    stopper = EarlyStopping("val_acc")
    with pytest.raises(TorchrigError, match=r"EarlyStopping monitors 'val_acc'.*val_accuracy.*Did you mean 'val_accuracy'"):
        fit(Trainer(max_epochs=2, progress_bar=False, callbacks=[stopper]), digit_loaders, metrics=["accuracy"])
    with pytest.raises(TorchrigError, match=r"mode must be 'min' or 'max'"):
        EarlyStopping(mode="up")


def test_checkpoint_keeps_best_weights_and_resume_state(digit_loaders, tmp_path):
    ckpt = ModelCheckpoint(tmp_path, monitor="val_accuracy", mode="max")
    model, history = fit(Trainer(max_epochs=4, progress_bar=False, callbacks=[ckpt]), digit_loaders,
                         metrics=["accuracy"])
    best_epoch = max(range(4), key=lambda i: history["val_accuracy"][i]) + 1
    assert ckpt.best_epoch == best_epoch and ckpt.best == max(history["val_accuracy"])
    from safetensors import safe_open

    with safe_open(str(tmp_path / "weights.safetensors"), "pt") as f:
        assert f.metadata()["epoch"] == str(best_epoch)
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["epoch"] == 4 and len(state["history"]) == 4
    for k, v in model.state_dict().items():  # the resume state holds the last weights
        assert torch.equal(state["model"][k], v)


def test_checkpoint_dir_writes_csv_and_resume_continues(digit_loaders, tmp_path):
    fit(Trainer(max_epochs=2, checkpoint_dir=tmp_path, progress_bar=False), digit_loaders, metrics=["accuracy"])
    torchrig.seed_everything(123)  # a different process state: resume must restore RNGs itself
    model, history = fit(Trainer(max_epochs=4, checkpoint_dir=tmp_path, progress_bar=False), digit_loaders,
                         metrics=["accuracy"], resume=True)
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"train_loss", "val_loss", "val_accuracy", "lr", "time"} <= set(rows[0])


def test_resume_gives_the_same_weights_as_one_run(digits, tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    X, y = digits

    def run(epochs, resume, folder):
        torchrig.seed_everything(0)
        model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
        train = DataLoader(TensorDataset(X[:600], y[:600]), batch_size=32, shuffle=True)
        val = DataLoader(TensorDataset(X[600:800], y[600:800]), batch_size=100)
        stopper = EarlyStopping(patience=10)
        Trainer(max_epochs=epochs, checkpoint_dir=folder, callbacks=[stopper], progress_bar=False).fit(
            model, train, nn.CrossEntropyLoss(), opt, val_loader=val, scheduler=sched, resume=resume)
        return model, stopper

    ref, ref_stopper = run(4, False, tmp_path / "a")
    _, half = run(2, False, tmp_path / "b")
    # resumed with nothing left to train: the stopper is exactly the one saved after epoch 2
    _, restored = run(2, True, tmp_path / "b")
    assert restored.state_dict() == half.state_dict() and restored.best is not None
    torch.manual_seed(999)  # disturb every RNG between the runs
    resumed, stopper = run(4, True, tmp_path / "b")
    for k, v in ref.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    assert stopper.state_dict() == ref_stopper.state_dict()


def test_lr_monitor_logs_each_group(digit_loaders):
    model = mlp()
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.1},
                           {"params": model[2].parameters(), "lr": 0.01}])
    train, _ = digit_loaders
    history = Trainer(max_epochs=1, progress_bar=False).fit(model, train, nn.CrossEntropyLoss(), opt)
    assert history[0]["lr/g0"] == 0.1 and history[0]["lr/g1"] == 0.01


def test_user_callback_sees_every_hook_and_can_stop(digit_loaders, tmp_path):
    calls = []

    class Recorder(Callback):
        def on_fit_start(self, trainer, **kwargs):
            calls.append("fit_start")

        def on_train_epoch_start(self, trainer, epoch, **kwargs):
            calls.append(f"epoch_start{epoch}")

        def on_train_batch_end(self, trainer, step, loss, **kwargs):
            assert loss.ndim == 0 and not loss.requires_grad
            calls.append("batch")

        def on_epoch_end(self, trainer, epoch, logs, **kwargs):
            calls.append(f"epoch_end{epoch}")
            logs["custom"] = 1.0  # visible to later callbacks, the CSV and the history
            trainer.should_stop = epoch == 2

        def on_fit_end(self, trainer, **kwargs):
            calls.append("fit_end")

    train, _ = digit_loaders
    csv_path = tmp_path / "log.csv"
    _, history = fit(Trainer(max_epochs=5, progress_bar=False, callbacks=[Recorder(), CSVLogger(csv_path)]),
                     digit_loaders)
    assert calls[0] == "fit_start" and calls[-1] == "fit_end"
    assert calls.count("batch") == 2 * len(train)
    assert [c for c in calls if c.startswith("epoch")] == ["epoch_start1", "epoch_end1", "epoch_start2", "epoch_end2"]
    assert history["custom"] == [1.0, 1.0]
    assert "custom" in csv_path.read_text().splitlines()[0]


def test_exception_hook_runs_on_keyboard_interrupt(digit_loaders, tmp_path):
    seen = []

    class Interrupt(Callback):
        def on_train_batch_end(self, trainer, step, loss, **kwargs):
            if trainer.epoch == 1 and step == 3:
                raise KeyboardInterrupt

        def on_exception(self, trainer, exception, **kwargs):
            seen.append(type(exception).__name__)

    with pytest.raises(KeyboardInterrupt):
        fit(Trainer(max_epochs=3, checkpoint_dir=tmp_path, progress_bar=False, callbacks=[Interrupt()]), digit_loaders)
    assert seen == ["KeyboardInterrupt"]
    assert torch.load(tmp_path / "state.pt", weights_only=True)["epoch"] == 1


def test_tensorboard_logger_writes_events(digit_loaders, tmp_path):
    pytest.importorskip("tensorboard", reason="TensorBoardLogger is optional")
    from torchrig import TensorBoardLogger

    fit(Trainer(max_epochs=2, progress_bar=False, callbacks=[TensorBoardLogger(tmp_path)]), digit_loaders)
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())


def test_resume_after_early_stopping_trains_no_further(digit_loaders, tmp_path):
    stopper = EarlyStopping("val_loss", patience=1)
    _, history = fit(Trainer(max_epochs=20, checkpoint_dir=tmp_path, progress_bar=False, callbacks=[stopper]),
                     digit_loaders, lr=0.0)
    assert len(history) == 2
    again = EarlyStopping("val_loss", patience=1)
    _, resumed = fit(Trainer(max_epochs=20, checkpoint_dir=tmp_path, progress_bar=False, callbacks=[again]),
                     digit_loaders, lr=0.0, resume=True)
    assert len(resumed) == 2 and again.stopped_epoch == 2
