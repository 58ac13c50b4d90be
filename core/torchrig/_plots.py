"""PNG plots of a run: learning curves, a confusion matrix, regression scatter and residuals
(matplotlib, Agg backend)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

_OVERSTRIKE = re.compile(".\x08")  # a terminal's bold or underline: x<BS>x, _<BS>x


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, and no window pops up
    import matplotlib.pyplot as plt

    return plt


def plain(text: str) -> str:
    """Text from the data (a sample, a file or class name) as matplotlib must be given it to
    draw it as it is: a ``$`` no longer opens mathtext (``"$5 or \\frac $10"`` would otherwise
    be parsed as a formula, and fail), an overstruck character keeps its last form, and other
    control characters (no font draws them) become spaces."""
    text = _OVERSTRIKE.sub("", text)
    text = "".join(c if c.isprintable() or c == "\n" else " " for c in text)
    return text.replace("$", r"\$")


def save(fig: Any, path: Path, dpi: int = 110, *, tight: bool = False) -> Path:
    """Lay a figure out (``tight``: ``tight_layout``) and write it as PNG atomically (a plot is
    never left half-written), then close it. A character of the data that no font has (an emoji
    in a class name) is drawn as a box without a warning: the user can do nothing about it."""
    import io
    import warnings

    from ._checkpoint import atomic_write

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        if tight:
            fig.tight_layout()
        # fast zlib level: a plot compresses about as well, in a fraction of the time of the default
        fig.savefig(buffer, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    _pyplot().close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())
    return path


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
    return save(fig, path, tight=True)


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
    names = [plain(str(c)) for c in classes]
    ax.set_xticks(range(n), names, rotation=90 if n > 10 else 0)
    ax.set_yticks(range(n), names)
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
    return save(fig, path, tight=True)


def regression_plots(output: torch.Tensor, target: torch.Tensor, folder: Path, *, split: str) -> list[Path]:
    """``predicted_vs_true.png`` (with the y = x line) and ``residuals.png`` (a histogram of
    predicted - true), every output dimension pooled."""
    plt = _pyplot()
    pred = output.reshape(-1).float().numpy()
    true = target.reshape(-1).float().numpy()
    if len(pred) != len(true):  # (N, k) outputs for an (N,) target: nothing to put side by side
        return []
    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.scatter(true, pred, s=8, alpha=0.6)
    low, high = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([low, high], [low, high], "k--", lw=1, label="y = x")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(f"predicted vs true ({split})")
    ax.grid(alpha=0.3)
    ax.legend()
    paths = [folder / "predicted_vs_true.png", folder / "residuals.png"]
    save(fig, paths[0], tight=True)
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    ax.hist(pred - true, bins=min(40, max(5, len(pred) // 5)))
    ax.set_xlabel("predicted - true")
    ax.set_ylabel("samples")
    ax.set_title(f"residuals ({split})")
    ax.grid(alpha=0.3)
    save(fig, paths[1], tight=True)
    return paths
