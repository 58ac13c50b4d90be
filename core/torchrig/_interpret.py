"""What a run's model learned, written into its run dir: per-class scores, the held-out samples
with the highest loss (``plots/top_losses.png`` + ``top_losses.json``), the first training batch
as the model receives it (``plots/train_batch.png``), and for regression a predicted-vs-true
scatter and a residual histogram. Samples are drawn by the plugin's ``show`` hook
(:class:`torchrig.protocols.Shows`), or generically."""

from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path
from typing import Any, Callable

import torch

from . import protocols
from ._checkpoint import atomic_write
from ._files import TOP_LOSSES
from ._plots import plain
from ._seed import get_rng_state, set_rng_state

TOP_N = 12  # held-out samples in top_losses.png / .json
BATCH_N = 16  # training samples in train_batch.png


# ---------------------------------------------------------------- numbers


def outputs_and_targets(trainer: Any, model: torch.nn.Module, loader: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's outputs over ``loader`` (in order) and the targets, in one pass."""
    targets: list[torch.Tensor] = []

    def inputs_only() -> Any:
        for inputs, target in loader:
            targets.append(torch.as_tensor(target))
            yield inputs, None  # (inputs, target) pairs: predict then never mistakes a tuple input for a pair

    outputs = trainer.predict(model, inputs_only())
    return outputs.float(), torch.cat(targets)


def per_class(target: torch.Tensor, pred: torch.Tensor, classes: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of each class (0 where a class is never predicted)."""
    n = len(classes)
    matrix = torch.zeros(n, n, dtype=torch.long)
    matrix.index_put_((target.long(), pred.long()), torch.ones_like(target, dtype=torch.long), accumulate=True)
    tp = matrix.diag().double()
    predicted, support = matrix.sum(0).double(), matrix.sum(1).double()
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), 0.0)
    recall = torch.where(support > 0, tp / support.clamp(min=1), 0.0)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), 0.0)
    return {name: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
                   "f1": round(float(f1[i]), 4), "support": int(support[i])} for i, name in enumerate(classes)}


def format_per_class(rows: dict[str, dict[str, float]], split: str) -> str:
    width = max(7, *(len(c) for c in rows)) + 2
    lines = [f"per class ({split}):", "class".ljust(width) + "precision   recall      f1          support"]
    for name, row in rows.items():
        lines.append(name.ljust(width) + "".join(f"{row[k]:<12.4f}" for k in ("precision", "recall", "f1"))
                     + str(row["support"]))
    return "\n".join(lines)


def sample_losses(loss_fn: Any, output: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    """Each sample's loss: the recipe's loss with ``reduction="none"`` (its mean over any other
    axes), or cross-entropy / squared error when the loss cannot reduce per sample."""
    try:
        if not hasattr(loss_fn, "reduction"):
            raise TypeError
        per = copy.copy(loss_fn)
        per.reduction = "none"
        if output.ndim == target.ndim + 1 and output.shape[-1] == 1 and task != "classification":
            output = output.squeeze(-1)
        loss = per(output, target.to(output.dtype) if target.is_floating_point() else target)
        if loss.shape[:1] != output.shape[:1]:
            raise TypeError
        return loss.reshape(len(loss), -1).float().mean(1)
    except (TypeError, RuntimeError, ValueError):
        if task == "classification" and output.ndim == 2 and output.shape[1] > 1:
            return torch.nn.functional.cross_entropy(output, target.long(), reduction="none")
        return (output.reshape(len(output), -1) - target.reshape(len(target), -1).to(output.dtype)).pow(2).mean(1)


def predictions(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted class and its probability (softmax; a single output is a sigmoid)."""
    if output.ndim == 2 and output.shape[1] > 1:
        prob, pred = output.softmax(1).max(1)
        return pred, prob
    p = torch.sigmoid(output.reshape(len(output)))
    pred = (p > 0.5).long()
    return pred, torch.where(pred == 1, p, 1 - p)


# ---------------------------------------------------------------- one run's interpretation


def interpret(trainer: Any, model: torch.nn.Module, parts: Any, split: str, loss_fn: Any,
              run_dir: Path) -> dict[str, Any]:
    """Score ``split`` sample by sample and write the confusion matrix, per-class scores, top
    losses (classification) or the regression plots into ``run_dir``. Returns what goes into
    summary.json: ``{"per_class": {...}}`` for single-label classification, else ``{}``."""
    from ._plots import confusion_matrix, regression_plots

    loader = parts.loader(split)
    output, target = outputs_and_targets(trainer, model, loader)
    task, classes, plots = parts.recipe["task"], parts.classes, run_dir / "plots"
    single_label = target.ndim == 1 and not target.is_floating_point()
    found: dict[str, Any] = {}
    if task == "classification" and single_label:
        pred, prob = predictions(output)
        if classes:
            confusion_matrix(target, pred, classes, plots / "confusion_matrix.png", title=f"confusion matrix ({split})")
            found["per_class"] = per_class(target, pred, classes)
    elif task == "regression":
        regression_plots(output, target, plots, split=split)
        pred, prob = output.reshape(len(output), -1), None
    else:  # multi-label: no single predicted class to put beside a sample
        return found
    losses = sample_losses(loss_fn, output, target, task)
    top = losses.topk(min(TOP_N, len(losses))).indices.tolist()
    rows = []
    for i in top:
        row: dict[str, Any] = {"index": i, "input": protocols.describe(parts.splits[split], i),
                               "loss": round(float(losses[i]), 5)}
        if task == "classification":
            name = (lambda k: classes[k] if classes else str(k))
            row.update(target=name(int(target[i])), prediction=name(int(pred[i])), probability=round(float(prob[i]), 4))
        else:
            row.update(target=target[i].reshape(-1).tolist(), prediction=pred[i].tolist())
        rows.append(row)
    atomic_write(run_dir / TOP_LOSSES, json.dumps({"split": split, "samples": rows}, indent=2).encode())
    inputs = _collate(loader, top)[0]
    draw_grid([(_take(inputs, j), _caption(row)) for j, row in enumerate(rows)],
              protocols.shower(parts.eval_transform, parts.splits[split]), plots / "top_losses.png",
              title=f"highest loss ({split}): true / predicted" + (" (probability)" if task == "classification" else ""))
    return found


def draw_train_batch(parts: Any, generator: torch.Generator | None, path: Path) -> None:
    """The first training batch, through the train transform, as the model will receive it:
    the same samples the loader's first batch holds (its sampler on a copy of the generator).
    Every random state is put back, so training draws exactly what it would have."""
    copy_ = torch.Generator().set_state(generator.get_state()) if generator is not None else None
    loader = parts.loader("train", train=True, generator=copy_)
    set_epoch = getattr(loader.sampler, "set_epoch", None)
    if set_epoch is not None:
        set_epoch(1)  # the permutation the Trainer draws for epoch 1
    saved = get_rng_state()
    try:
        indices = list(next(iter(loader.batch_sampler)))[:BATCH_N]
        batch = _collate(loader, indices)
    finally:
        set_rng_state(saved)
    dataset = parts.splits["train"]
    classes = parts.classes
    items = []
    for j, i in enumerate(indices):
        target = batch[1][j] if isinstance(batch[1], torch.Tensor) else batch[1]
        label = classes[int(target)] if classes and isinstance(target, torch.Tensor) and target.ndim == 0 else None
        items.append((_take(batch[0], j), label if label is not None else _short(target)))
    draw_grid(items, protocols.shower(parts.train_transform, dataset), path,
              title="first training batch, after the train transform")


def _collate(loader: Any, indices: list[int]) -> tuple[Any, Any]:
    """Samples ``indices`` of a loader's dataset, batched by its collate function: (inputs, targets)."""
    from torch.utils.data import default_collate

    collate = loader.collate_fn or default_collate
    return collate([loader.dataset[i] for i in indices])


def _take(inputs: Any, j: int) -> Any:
    """Sample ``j`` of a batch's inputs: a tensor row, or a tuple / dict of them."""
    if isinstance(inputs, torch.Tensor):
        return inputs[j] if inputs.ndim else inputs
    if isinstance(inputs, dict):
        return {k: _take(v, j) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_take(v, j) for v in inputs) if not isinstance(inputs, list) or \
            all(isinstance(v, torch.Tensor) for v in inputs) else inputs[j]
    return inputs


def _short(value: Any, width: int = 40) -> str:
    text = str(value.tolist() if isinstance(value, torch.Tensor) else value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _caption(row: dict[str, Any]) -> str:
    if "probability" in row:
        head = f"true {row['target']} / {row['prediction']} ({row['probability']:.2f})"
    else:
        head = f"true {_short(row['target'], 18)} / {_short(row['prediction'], 18)}"
    source = row.get("input")
    if source:
        source = Path(source).name if ("/" in source or "\\" in source) and "\n" not in source else source
        head += "\n" + _short(source.replace("\n", " "), 34)
    return head + f"\nloss {row['loss']:.3g}"


# ---------------------------------------------------------------- drawing


def draw_grid(items: list[tuple[Any, str]], show: Callable | None, path: Path, *, title: str) -> Path:
    """A grid of samples, each drawn by ``show`` (or generically) with its caption below."""
    from ._plots import _pyplot, save

    plt = _pyplot()
    n = max(1, len(items))
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (inputs, caption) in zip(axes.flat, items):
        ax.set_axis_on()
        try:
            (show or show_generic)(inputs, ax)
        except Exception as exc:  # a plugin's drawing bug must not end a finished run
            ax.clear()
            ax.text(0.5, 0.5, f"cannot draw: {type(exc).__name__}", ha="center", va="center", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(plain(caption), fontsize=7.5)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.06 / rows, top=1 - 0.25 / (3.1 * rows), wspace=0.08,
                        hspace=0.35)  # fixed margins: tight_layout would cost a third of the plot's time
    return save(fig, path, dpi=90)


def show_generic(inputs: Any, ax: Any) -> None:
    """Draw what a plugin gives no ``show`` for: a (C, H, W) tensor with 1-4 channels as an
    image (each channel stretched to [0, 1]), a 2-D tensor as a heat map, a 1-D float tensor as
    a curve, integer ids or a string as text; a tuple or dict by its first tensor."""
    if isinstance(inputs, dict):
        inputs = inputs.get("input_ids", next(iter(inputs.values()), None))
    if isinstance(inputs, (tuple, list)) and inputs:
        inputs = inputs[0]
    if isinstance(inputs, str):
        show_text(inputs, ax)
        return
    x = torch.as_tensor(inputs).detach().cpu()
    if x.ndim == 3 and x.shape[0] in (1, 3, 4):
        show_image(x, ax)
    elif x.ndim == 2:
        ax.imshow(x.float().numpy(), aspect="auto", origin="lower", cmap="magma")
    elif x.ndim == 1 and not x.is_floating_point():
        show_text(" ".join(map(str, x.tolist())), ax)
    else:
        ax.plot(x.float().reshape(-1).numpy(), lw=0.6)


def show_image(image: torch.Tensor, ax: Any, mean: Any = None, std: Any = None) -> None:
    """A (C, H, W) tensor as an image: un-normalised with ``mean``/``std`` when given, else each
    channel stretched to [0, 1]."""
    x = image.detach().float().cpu()[:3]
    if mean is not None and std is not None:
        x = x * torch.tensor(std, dtype=x.dtype).view(-1, 1, 1) + torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    else:
        low = x.amin(dim=(1, 2), keepdim=True)
        x = (x - low) / (x.amax(dim=(1, 2), keepdim=True) - low).clamp(min=1e-8)
    x = x.clamp(0, 1)
    if x.shape[0] == 1:
        ax.imshow(x[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(x.permute(1, 2, 0).numpy())


def show_text(text: str, ax: Any, width: int = 34, lines: int = 9) -> None:
    """Text in the axes, as it is (no mathtext, no control characters), wrapped and cut to a
    few lines."""
    wrapped = textwrap.wrap(text, width) or [""]
    if len(wrapped) > lines:
        wrapped = wrapped[: lines - 1] + [wrapped[lines - 1][: width - 1] + "…"]
    ax.text(0.03, 0.97, "\n".join(map(plain, wrapped)), ha="left", va="top", fontsize=7.5, family="monospace",
            transform=ax.transAxes)
