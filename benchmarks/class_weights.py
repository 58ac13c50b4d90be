"""Class imbalance: macro-F1 with `loss.class_weights: balanced` (and with `data.sampler:
balanced`) against plain cross-entropy, on scikit-learn's digits 3 and 8 made 1:20 imbalanced
(every 8, one 3 in 20).

Each variant trains the same recipe (an MLP, 12 epochs) for --seeds, and is scored on two sets:
the recipe's own test split (as imbalanced as the data), and a balanced set made of that split's
8s plus the 173 threes the subsample left out (real images no run saw). Prints macro-F1 per
variant and seed, and the medians.

    python benchmarks/class_weights.py [--seeds 0 1 2] [--epochs 12]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import f1_score

import torchrig

X, Y = load_digits(return_X_y=True)
THREES = np.flatnonzero(Y == 3)
KEPT = np.sort(np.concatenate([THREES[::20], np.flatnonzero(Y == 8)]))
UNSEEN = np.setdiff1d(THREES, THREES[::20])


class Skewed(torch.utils.data.Dataset):
    classes = ["three", "eight"]

    def __init__(self) -> None:
        self.x = torch.tensor(X[KEPT], dtype=torch.float32) / 16
        self.targets = torch.tensor((Y[KEPT] == 8).astype(np.int64))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.x[i], self.targets[i]


plugin = torchrig.Plugin("bench")
plugin.dataset(lambda: Skewed(), name="skewed")


@plugin.model
def mlp(*, num_classes: int = 2, hidden: int = 16) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, num_classes))


RECIPE = """\
seed: {seed}
data:
  dataset: bench/skewed
  split: {{val: 0.2, test: 0.3}}
  batch_size: 16
{sampler}
model: {{name: bench/mlp, hidden: 16}}
loss: {loss}
optimizer: {{name: adamw, lr: 0.003}}
trainer: {{max_epochs: {epochs}}}
"""
VARIANTS = {
    "plain cross-entropy": ("cross_entropy", ""),
    "class_weights: balanced": ("{name: cross_entropy, class_weights: balanced}", ""),
    "sampler: balanced": ("cross_entropy", "  sampler: balanced"),
}


def scores(seed: int, epochs: int, loss: str, sampler: str, folder: Path) -> tuple[float, float]:
    path = folder / "r.yaml"
    path.write_text(RECIPE.format(seed=seed, epochs=epochs, loss=loss, sampler=sampler))
    parts = torchrig.build(torchrig.load_recipe(path))
    trainer = torchrig.Trainer(max_epochs=epochs, progress_bar=False)
    trainer.fit(parts.model, parts.loaders["train"], parts.loss, parts.optimizer)
    model = parts.model.eval()
    test = parts.splits["test"]
    x_test = torch.stack([test[i][0] for i in range(len(test))])
    y_test = np.array([int(test[i][1]) for i in range(len(test))])
    with torch.no_grad():
        pred_test = model(x_test).argmax(1).numpy()
        pred_unseen = model(torch.tensor(X[UNSEEN], dtype=torch.float32) / 16).argmax(1).numpy()
    eights = y_test == 1
    balanced_pred = np.concatenate([pred_test[eights], pred_unseen])
    balanced_true = np.concatenate([y_test[eights], np.zeros(len(UNSEEN), dtype=np.int64)])
    return (f1_score(y_test, pred_test, average="macro", zero_division=0),
            f1_score(balanced_true, balanced_pred, average="macro", zero_division=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torchrig.register_plugin(plugin, source="benchmarks/class_weights.py")
    print(f"{len(KEPT)} samples ({(Y[KEPT] == 3).sum()} threes, {(Y[KEPT] == 8).sum()} eights); "
          f"the balanced set adds the {len(UNSEEN)} unseen threes")
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (loss, sampler) in VARIANTS.items():
            for seed in args.seeds:
                found = scores(seed, args.epochs, loss, sampler, Path(tmp))
                results.setdefault(name, []).append(found)
                print(f"{name:<26} seed {seed}: macro-F1 test split {found[0]:.3f}, balanced set {found[1]:.3f}")
    print("\nmedians over seeds:")
    for name, rows in results.items():
        print(f"{name:<26} test split {statistics.median(r[0] for r in rows):.3f}   "
              f"balanced set {statistics.median(r[1] for r in rows):.3f}")


if __name__ == "__main__":
    main()
