"""torchrig quickstart: train a classifier on scikit-learn's bundled handwritten digits.

Plain PyTorch objects (Dataset, DataLoader, nn.Module, loss, optimizer) handed to
``torchrig.Trainer``: progress, per-epoch lines, metrics, checkpoints and a final test score.
Nothing is downloaded. Run: ``python examples/quickstart.py [--epochs 20] [--out runs/quickstart]``.
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split

import torchrig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default="runs/quickstart", help="checkpoint folder")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    args = parser.parse_args()

    generator = torchrig.seed_everything(0)
    X, y = load_digits(return_X_y=True)
    data = TensorDataset(torch.tensor(X, dtype=torch.float32) / 16.0, torch.tensor(y))
    train, val, test = random_split(data, [0.7, 0.1, 0.2], generator=generator)
    train_loader = DataLoader(train, batch_size=32, shuffle=True, generator=generator)
    val_loader = DataLoader(val, batch_size=256)
    test_loader = DataLoader(test, batch_size=256)

    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)

    trainer = torchrig.Trainer(max_epochs=args.epochs, checkpoint_dir=args.out,
                               callbacks=[torchrig.EarlyStopping("val_loss", patience=5)])
    trainer.fit(model, train_loader, loss_fn, optimizer, val_loader=val_loader, scheduler=scheduler,
                metrics=["accuracy", "f1"], resume=args.resume)

    # Evaluate the best epoch's weights (by val_loss), as saved in the checkpoint folder.
    model.load_state_dict(torchrig.load_weights(trainer.checkpoint.weights_path))
    scores = trainer.evaluate(model, test_loader, loss_fn, metrics=["accuracy", "f1"])
    print(f"test accuracy {scores['accuracy']:.4f}  macro-F1 {scores['f1']:.4f}  "
          f"(best epoch {trainer.checkpoint.best_epoch}; weights in {trainer.checkpoint.weights_path})")


if __name__ == "__main__":
    main()
