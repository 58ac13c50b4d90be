"""PNG plots of a run: learning curves and a confusion matrix (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, and no window pops up
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: list[dict[str, Any]], path: Path) -> Path:
    """One panel per quantity (loss, then each metric), train vs val per epoch."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    names = ["loss"] + sorted({k[4:] for row in history for k in row if k.startswith("val_") and k != "val_loss"})
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for split, style in (("train", "-o"), ("val", "-s")):
            key = f"{split}_{name}"
            values = [row.get(key) for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [float("nan") if v is None else v for v in values], style, ms=3, label=split)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion_matrix(target: torch.Tensor, pred: torch.Tensor, classes: list[str], path: Path,
                     title: str = "confusion matrix") -> Path:
    """Counts of (true, predicted) with class names on both axes; rows are true classes."""
    plt = _pyplot()
    n = len(classes)
    matrix = torch.zeros(n, n, dtype=torch.long)
    matrix.index_put_((target.long(), pred.long()), torch.ones_like(target, dtype=torch.long), accumulate=True)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix.numpy(), cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=90 if n > 10 else 0)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        peak = int(matrix.max()) or 1
        for i in range(n):
            for j in range(n):
                count = int(matrix[i, j])
                if count:
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                            color="white" if count > peak / 2 else "black")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
