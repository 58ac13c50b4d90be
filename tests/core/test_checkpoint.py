"""Checkpoint files: atomic writes, safetensors weights, weights-only state, clear errors."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from torch import nn

import torchrig
from torchrig import TorchrigError, load_state, load_weights, save_state, save_weights
from torchrig._checkpoint import atomic_write


def test_weights_round_trip_with_tied_and_noncontiguous_tensors(tmp_path):
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = emb.weight  # tied, as in language models
    model = nn.ModuleDict({"emb": emb, "head": head})
    state = dict(model.state_dict())
    state["t"] = torch.arange(6.0).view(2, 3).t()  # not contiguous
    path = save_weights(tmp_path / "w.safetensors", state, {"epoch": "3"})
    loaded = load_weights(path)
    assert set(loaded) == set(state)
    for k in state:
        assert torch.equal(loaded[k], state[k])
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:  # readable by any safetensors tool, metadata included
        assert f.metadata() == {"epoch": "3"}


def test_state_round_trip_is_weights_only(tmp_path):
    state = {"epoch": 3, "lr": [0.1, 0.01], "w": torch.ones(3), "name": "x", "none": None}
    save_state(tmp_path / "s.pt", state)
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    assert loaded["epoch"] == 3 and torch.equal(loaded["w"], torch.ones(3))


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_checkpoint_with_code_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path)
    with pytest.raises(TorchrigError, match=r"Refusing to load checkpoint '.*evil\.pt'.*arbitrary code"):
        load_state(path)
    assert not (tmp_path / "pwned.txt").exists()
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(TorchrigError, match=r"plain\.pkl"):
        load_state(plain)
    assert not (tmp_path / "pwned.txt").exists()


def test_corrupt_and_missing_files_name_their_path(tmp_path):
    save_state(tmp_path / "s.pt", {"w": torch.ones(100)})
    data = (tmp_path / "s.pt").read_bytes()
    (tmp_path / "torn.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(TorchrigError, match=r"Cannot read checkpoint '.*torn\.pt'.*truncated or corrupt"):
        load_state(tmp_path / "torn.pt")
    save_weights(tmp_path / "w.safetensors", {"w": torch.ones(100)})
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "torn.safetensors").write_bytes(data[:-7])
    with pytest.raises(TorchrigError, match=r"Cannot read weights file '.*torn\.safetensors'"):
        load_weights(tmp_path / "torn.safetensors")
    with pytest.raises(TorchrigError, match=r"No checkpoint at '.*missing\.pt'\. Files there: .*s\.pt"):
        load_state(tmp_path / "missing.pt")


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "state.pt"
    atomic_write(target, b"good")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]  # no temp file left behind


def test_resume_refuses_a_foreign_state_file(tmp_path, digit_loaders):
    save_state(tmp_path / "other.pt", {"epoch": 1})
    model = nn.Sequential(nn.Linear(64, 10))
    train, _ = digit_loaders
    with pytest.raises(TorchrigError, match=r"is not a torchrig training state"):
        torchrig.Trainer(progress_bar=False).fit(model, train, nn.CrossEntropyLoss(),
                                                 torch.optim.SGD(model.parameters(), lr=0.1),
                                                 resume=tmp_path / "other.pt")


def test_restore_best_ends_fit_with_the_best_epochs_weights(digit_loaders, tmp_path):
    """By default the model holds the last epoch's weights (Lightning, Keras); restore_best=True
    loads the best ones the checkpoint kept (Keras' restore_best_weights)."""
    import torch
    from torch import nn

    import torchrig

    train_loader, val_loader = digit_loaders
    finals = {}
    for restore in (False, True):
        torchrig.seed_everything(0)
        model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        trainer = torchrig.Trainer(max_epochs=6, checkpoint_dir=tmp_path / str(restore), progress_bar=False,
                                   restore_best=restore)
        trainer.fit(model, train_loader, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=1.5),
                    val_loader=val_loader)
        assert trainer.checkpoint.best_epoch < 6  # (this lr overshoots: the last epoch is not the best)
        best = torchrig.load_weights(tmp_path / str(restore) / "weights.safetensors")
        same = all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
        assert same is restore
        finals[restore] = trainer.evaluate(model, val_loader, nn.CrossEntropyLoss())["loss"]
    assert finals[True] < finals[False]
    with pytest.raises(torchrig.TorchrigError, match="restore_best=True needs checkpoints"):
        torchrig.Trainer(max_epochs=1, progress_bar=False, restore_best=True).fit(
            model, train_loader, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1))
