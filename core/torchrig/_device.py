"""Device and precision resolution, kept in one private place (like Fabric's connector)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch

from ._errors import TorchrigError

PRECISIONS = ("32", "bf16-mixed", "16-mixed")


def resolve_device(device: str | torch.device) -> torch.device:
    """Turn ``"auto"`` into cuda, then mps, then cpu; check that an explicit device exists."""
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise TorchrigError(
                f"Unknown device {device!r}. Use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
            ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TorchrigError(
            f"device={str(device)!r} was asked for, but CUDA is not available here. "
            "Use device='auto' to fall back to the CPU."
        )
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def resolve_precision(precision: str | int, device: torch.device) -> str:
    """Turn ``"auto"`` into ``"bf16-mixed"`` on a CUDA device that supports it, else ``"32"``."""
    precision = str(precision)
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16-mixed"
        return "32"
    if precision not in PRECISIONS:
        raise TorchrigError(
            f"Unknown precision {precision!r}. Choose one of 'auto', " + ", ".join(map(repr, PRECISIONS)) + "."
        )
    if precision == "16-mixed" and device.type == "cpu":
        raise TorchrigError(
            "precision='16-mixed' needs a GPU (fp16 autocast on CPU is slow and unscaled). "
            "Use precision='bf16-mixed' on CPU, or '32'."
        )
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision (a no-op for full precision)."""
    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 needs loss scaling to keep small gradients from flushing to zero; bf16 does not."""
    if precision != "16-mixed":
        return None
    return torch.amp.GradScaler(device.type)


def to_device(obj: Any, device: torch.device) -> Any:
    """Move a tensor, or the tensors in a tuple/list/dict, to ``device``.

    ``non_blocking`` lets a copy from pinned host memory overlap with compute on CUDA; for
    unpinned memory PyTorch silently falls back to a synchronous copy, so it is always safe.
    """
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(to_device(v, device) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj
