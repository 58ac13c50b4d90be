"""GPU paths: mixed precision (bf16, fp16 + GradScaler), pinned memory, device moves.

Skipped without CUDA (CI has none); run them on a GPU machine with ``pytest -m gpu``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torchrig
from torchrig import Trainer

pytestmark = pytest.mark.gpu


def loaders(digits, pin: bool):
    X, y = digits
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    X, y = X[order], y[order]
    train = DataLoader(TensorDataset(X[:1400], y[:1400]), batch_size=64, shuffle=True, pin_memory=pin)
    val = DataLoader(TensorDataset(X[1400:], y[1400:]), batch_size=256, pin_memory=pin)
    return train, val


@pytest.mark.parametrize("precision", ["32", "bf16-mixed", "16-mixed"])
def test_mixed_precision_trains_on_cuda(digits, precision, tmp_path):
    train, val = loaders(digits, pin=True)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    trainer = Trainer(max_epochs=10, device="cuda", precision=precision, checkpoint_dir=tmp_path,
                      gradient_clip_val=1.0, progress_bar=False)
    history = trainer.fit(model, train, nn.CrossEntropyLoss(), torch.optim.AdamW(model.parameters(), lr=3e-3),
                          val_loader=val, metrics=["accuracy"])
    assert history["val_accuracy"][-1] > 0.93
    assert next(model.parameters()).device.type == "cuda"
    assert (trainer.scaler is not None) == (precision == "16-mixed")
    state = torchrig.load_state(tmp_path / "state.pt")
    assert (state["scaler"] is not None) == (precision == "16-mixed")
    assert "cuda" in state["rng"]
    preds = trainer.predict(model, val)
    assert preds.device.type == "cpu" and preds.dtype == torch.float32


def test_auto_picks_cuda_and_bf16():
    trainer = Trainer()
    assert trainer.device.type == "cuda"
    assert trainer.precision == ("bf16-mixed" if torch.cuda.is_bf16_supported() else "32")


def test_nan_detected_on_cuda_with_step(digits):
    X, y = digits
    X = X[:256].clone()
    X[200] = float("nan")
    model = nn.Linear(64, 10)
    with pytest.raises(torchrig.TorchrigError, match=r"loss became nan at epoch 1, step 7\b"):
        Trainer(device="cuda", precision="32", progress_bar=False).fit(
            model, DataLoader(TensorDataset(X, y[:256]), batch_size=32), nn.CrossEntropyLoss(),
            torch.optim.SGD(model.parameters(), lr=0.1))


def test_resume_on_cuda_is_exact(digits, tmp_path):
    X, y = digits
    ds = TensorDataset(X[:512], y[:512])

    def run(epochs, folder, resume):
        torchrig.seed_everything(0)
        model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        Trainer(max_epochs=epochs, device="cuda", precision="32", checkpoint_dir=folder, progress_bar=False).fit(
            model, DataLoader(ds, batch_size=32, shuffle=True), nn.CrossEntropyLoss(), opt, resume=resume)
        return model

    ref = run(4, tmp_path / "a", False)
    run(2, tmp_path / "b", False)
    resumed = run(4, tmp_path / "b", True)
    for a, b in zip(ref.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
