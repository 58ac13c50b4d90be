"""Metrics by name, through torchmetrics, accumulated over a whole epoch.

The task (binary, multiclass, multilabel, regression) and the number of classes are read off the
first batch's output and target, so ``metrics=["accuracy", "f1"]`` needs no other argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Callable

import torch

from ._errors import TorchrigError, did_you_mean

# name -> (kind, factory(task, n) -> Metric). Accuracy is micro-averaged (the fraction of correct
# samples, what people mean by "accuracy"); f1/precision/recall/auroc are macro-averaged so that
# small classes count as much as large ones.
_CLASSIFICATION = {
    "accuracy": ("Accuracy", {"average": "micro"}),
    "balanced_accuracy": ("Accuracy", {"average": "macro"}),
    "f1": ("F1Score", {"average": "macro"}),
    "precision": ("Precision", {"average": "macro"}),
    "recall": ("Recall", {"average": "macro"}),
    "auroc": ("AUROC", {"average": "macro"}),
}
_REGRESSION = {
    "mse": ("MeanSquaredError", {}),
    "rmse": ("MeanSquaredError", {"squared": False}),
    "mae": ("MeanAbsoluteError", {}),
    "r2": ("R2Score", {}),
}
METRIC_NAMES = tuple(sorted({**_CLASSIFICATION, **_REGRESSION}))



class MetricSet:
    """A named group of torchmetrics metrics, created on the first ``update``.

    Args:
        metrics: names (see ``METRIC_NAMES``), ``torchmetrics.Metric`` objects, or a mapping of
            display name to either.
    """

    def __init__(self, metrics: Iterable[Any] | Mapping[str, Any] | None) -> None:
        self.spec: dict[str, Any] = {}
        self.metrics: dict[str, Any] | None = None
        self._signature: tuple | None = None
        self._outputs: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._buffered = 0
        if not metrics:  # importing torchmetrics costs seconds: only when metrics are asked for
            return
        import torchmetrics

        if isinstance(metrics, str) or isinstance(metrics, torchmetrics.Metric):
            metrics = [metrics]
        if not isinstance(metrics, Mapping):
            named: dict[str, Any] = {}
            for m in metrics:
                key = m if isinstance(m, str) else _snake(type(m).__name__)
                named[key] = m
            metrics = named
        for key, m in metrics.items():
            if isinstance(m, str):
                if m not in METRIC_NAMES:
                    raise TorchrigError(
                        f"Unknown metric {m!r}. Available: {', '.join(METRIC_NAMES)}, or pass a "
                        f"torchmetrics.Metric object.{did_you_mean(m, METRIC_NAMES)}"
                    )
            elif not isinstance(m, torchmetrics.Metric):
                raise TorchrigError(
                    f"Metric {key!r} is a {type(m).__name__}; expected a metric name or a "
                    "torchmetrics.Metric object."
                )
        self.spec = dict(metrics)

    def __bool__(self) -> bool:
        return bool(self.spec)

    # Updating torchmetrics costs ~100 us per call whatever the batch size, so batches are
    # buffered and fed to the metrics in large chunks (bounded, so memory stays small).
    FLUSH_ELEMENTS = 1 << 21

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch (detached logits or predictions, and targets)."""
        if not isinstance(output, torch.Tensor) or not isinstance(target, torch.Tensor):
            raise TorchrigError(
                f"Metrics need the model output and the target as tensors; got {type(output).__name__} "
                f"and {type(target).__name__}. Pass metrics=None, or torchmetrics objects that accept them."
            )
        self._outputs.append(output.detach())
        self._targets.append(target.detach())
        self._buffered += output.numel()
        if self.metrics is None or self._buffered >= self.FLUSH_ELEMENTS:  # first batch: fail fast
            self._flush()

    @torch.inference_mode()  # buffered outputs are inference tensors; keep metric states alike
    def _flush(self) -> None:
        if not self._outputs:
            return
        output = torch.cat(self._outputs) if len(self._outputs) > 1 else self._outputs[0]
        target = torch.cat(self._targets) if len(self._targets) > 1 else self._targets[0]
        self._outputs, self._targets, self._buffered = [], [], 0
        signature = (output.ndim, output.shape[1] if output.ndim > 1 else 0, target.ndim,
                     target.is_floating_point(), output.device)
        if self.metrics is None or signature != self._signature:
            # Built on first use, and again only if the data's shape changes (another model).
            self.metrics = {k: _build(v, output, target).to(output.device) for k, v in self.spec.items()}
            self._signature = signature
        for metric in self.metrics.values():
            preds, tgt = _align(metric, output, target)
            metric.update(preds, tgt)

    @torch.inference_mode()
    def compute(self) -> dict[str, float]:
        """The value of every metric over all batches since the last ``reset``."""
        self._flush()
        if not self.metrics:
            return {}
        return {name: float(m.compute()) for name, m in self.metrics.items()}

    def reset(self) -> None:
        """Forget the accumulated batches (the built metric objects are kept)."""
        self._outputs, self._targets, self._buffered = [], [], 0
        for m in (self.metrics or {}).values():
            m.reset()


def _build(spec: Any, output: torch.Tensor, target: torch.Tensor) -> Any:
    import torchmetrics

    if not isinstance(spec, str):
        return spec
    if spec in _REGRESSION:
        cls_name, kw = _REGRESSION[spec]
        if "squared" in kw and not _accepts(getattr(torchmetrics, cls_name), "squared"):
            kw = {}
        return getattr(torchmetrics, cls_name)(**kw)
    cls_name, kw = _CLASSIFICATION[spec]
    task, n = _infer_task(spec, output, target)
    kwargs: dict[str, Any] = {"task": task, "validate_args": False}
    if task == "multiclass":
        kwargs["num_classes"] = n
        kwargs.update(kw)
    elif task == "multilabel":
        kwargs["num_labels"] = n
        kwargs.update(kw)
    return getattr(torchmetrics, cls_name)(**kwargs)


def _infer_task(name: str, output: torch.Tensor, target: torch.Tensor) -> tuple[str, int]:
    if output.ndim >= 2 and output.shape[1] > 1:
        if target.ndim == output.ndim and target.shape == output.shape:
            return "multilabel", output.shape[1]
        if target.is_floating_point():
            raise TorchrigError(
                f"Metric {name!r} needs integer class targets, but the target is {target.dtype} "
                f"with shape {tuple(target.shape)} for an output of shape {tuple(output.shape)}. "
                "Make the Dataset return class indices (torch.long)."
            )
        return "multiclass", output.shape[1]
    return "binary", 1


def _align(metric: Any, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    output = output.detach()
    if output.is_floating_point() and output.dtype != torch.float32:
        output = output.float()  # bf16/fp16 logits from autocast
    if output.ndim == target.ndim + 1 and output.shape[-1] == 1:
        output = output.squeeze(-1)  # (N, 1) -> (N,) for binary and single-output regression
    if getattr(metric, "task", None) == "binary" or type(metric).__name__.startswith("Binary"):
        target = target.long()
    return output, target


def _accepts(cls: Callable, arg: str) -> bool:
    import inspect

    return arg in inspect.signature(cls).parameters


def _snake(name: str) -> str:
    from ._registry import snake_case

    return snake_case(name)
