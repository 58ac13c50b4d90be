"""The scikit-learn adapter's costs, as ratios measured in one process.

(a) ``RigClassifier`` vs a plain ``skorch.NeuralNetClassifier``: the same module class, data,
    optimizer, epochs, shuffling; fits interleaved; the ratio of median fit times (target
    <= 1.02). Twice: without a validation split (the wrapper's own cost), and with skorch's
    default 20% split scored for accuracy each epoch (RigClassifier scores it on the encoded
    labels directly; skorch goes through scikit-learn's scorer).
(b) ``GridSearchCV`` over RigClassifier with ``n_jobs=2`` vs ``n_jobs=1``: the same grid of
    >= 8 fits; the ratio of wall times (target >= 1.6 on 2 cores). ``n_jobs=1`` runs with torch's
    default threads (all cores), as a user would; with ``n_jobs=2`` joblib gives each worker
    cores / 2 and the estimator keeps torch within that. The first parallel search starts the
    worker processes (each imports torch); it is reported apart ("cold") from later ones ("warm").

Data: scikit-learn's digits (1797 8x8 images, 10 classes), as flat features.

Run: ``python benchmarks/sklearn_adapter.py [--repeats 7] [--epochs 10]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from skorch import NeuralNetClassifier
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from torch import nn

import torchrig
from torchrig.sklearn import RigClassifier


class MLP(nn.Module):
    def __init__(self, in_features: int = 64, num_classes: int = 10, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def adapter_overhead(X: np.ndarray, y: np.ndarray, repeats: int, epochs: int, validation: bool) -> float:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steadier timings on a shared machine; the same for both
    common = {"criterion": nn.CrossEntropyLoss, "optimizer": torch.optim.AdamW, "lr": 1e-3, "max_epochs": epochs,
              "batch_size": 64, "verbose": 0, "device": "cpu", "iterator_train__shuffle": True}
    if not validation:
        common["train_split"] = None
    times: dict[str, list[float]] = {"skorch": [], "torchrig": []}
    for i in range(repeats + 1):
        for name in ("skorch", "torchrig") if i % 2 else ("torchrig", "skorch"):
            torch.manual_seed(i)
            est = (NeuralNetClassifier(MLP, **common) if name == "skorch"
                   else RigClassifier(MLP, **common))
            start = time.perf_counter()
            est.fit(X, y)
            if i:  # the first round warms up both
                times[name].append(time.perf_counter() - start)
    torch.set_num_threads(threads)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["torchrig"] / med["skorch"]
    what = "skorch's 20% validation split + accuracy" if validation else "no validation split"
    print(f"(a) fit, {epochs} epochs, {what}, 1 thread, median of {repeats}: skorch {med['skorch']:.3f} s, "
          f"RigClassifier {med['torchrig']:.3f} s; ratio {ratio:.3f} (target <= 1.02: {'PASS' if ratio <= 1.02 else 'FAIL'})")
    return ratio


def search_speedup(X: np.ndarray, y: np.ndarray, epochs: int) -> float:
    grid = {"lr": [1e-3, 3e-3], "module__hidden": [128, 256]}  # x cv=2: 8 fits
    est = RigClassifier(MLP, max_epochs=epochs, verbose=0, train_split=None, device="cpu")

    def search(n_jobs: int) -> float:
        start = time.perf_counter()
        GridSearchCV(est, grid, cv=2, n_jobs=n_jobs, refit=False).fit(X, y)
        return time.perf_counter() - start

    threads = torch.get_num_threads()
    serial = search(1)
    cold = search(2)
    warm = [search(2) for _ in range(2)]
    serial = min(serial, search(1))
    speed_warm, speed_cold = serial / min(warm), serial / cold
    print(f"(b) GridSearchCV, 8 fits of {epochs} epochs: n_jobs=1 ({threads} torch threads) {serial:.1f} s; "
          f"n_jobs=2 {min(warm):.1f} s warm, {cold:.1f} s cold (starting workers)")
    print(f"    speedup {speed_warm:.2f}x warm, {speed_cold:.2f}x cold "
          f"(target >= 1.6: {'PASS' if speed_warm >= 1.6 else 'FAIL'})")
    return speed_warm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--only", choices=("a", "b"))
    args = parser.parse_args()
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    print(f"torchrig {torchrig.__version__}, torch {torch.__version__}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads")
    if args.only != "b":
        adapter_overhead(X, y, args.repeats, args.epochs, validation=False)  # the wrapper alone
        adapter_overhead(X, y, args.repeats, args.epochs, validation=True)   # defaults as users run them
    if args.only != "a":
        search_speedup(X, y, args.epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
