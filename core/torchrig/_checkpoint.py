"""Atomic checkpoint files: safetensors for weights, weights-only pickles for training state.

A kill at any instant (SIGKILL, power loss) leaves either the previous good file or the new one,
never a torn file: we write a temporary file in the same folder, flush and fsync it, then
``os.replace`` it over the target (atomic on POSIX and Windows) and fsync the folder so the
rename itself survives a crash.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from ._errors import TorchrigError
from ._files import _fsync_dir, atomic_write  # noqa: F401  (atomic_write: re-exported)

__all__ = ["save_weights", "load_weights", "save_state", "load_state", "atomic_write"]


def save_weights(path: str | os.PathLike, state_dict: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> Path:
    """Save a model's ``state_dict`` as a safetensors file, atomically.

    Tensors that share storage (tied weights) are stored once each as separate copies, since
    safetensors refuses aliased tensors; ``load_state_dict`` re-ties them through the module.
    """
    from safetensors.torch import save

    seen: set[tuple[int, int]] = set()
    tensors: dict[str, torch.Tensor] = {}
    for name, t in state_dict.items():
        t = t.detach()
        key = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else (id(t), 0)
        if key in seen or not t.is_contiguous():
            t = t.contiguous().clone()
        seen.add(key)
        tensors[name] = t.cpu()
    return atomic_write(path, save(tensors, metadata=metadata))


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file written by :func:`save_weights` (or any safetensors tool)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = _existing(path, "weights file")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise TorchrigError(
            f"Cannot read weights file {str(path)!r}: {exc}. It is not a valid safetensors file; "
            "it may be truncated or corrupt."
        ) from exc


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Save a plain dict of tensors/numbers/strings (training state), atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write(path, buf.getvalue())


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete temp files that a killed process left in ``folder`` mid-write."""
    removed = []
    for tmp in Path(folder).glob(".*." + "?" * 12 + ".tmp"):  # the names atomic_write makes
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def load_state(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load training state with ``weights_only=True``: a file whose pickle holds code is refused."""
    path = _existing(path, "checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _holds_objects(path):
            raise TorchrigError(f"Cannot read checkpoint {str(path)!r}: it is not a PyTorch file (no readable "
                                "pickle in it); it is truncated or corrupt.") from None
        raise TorchrigError(
            f"Refusing to load checkpoint {str(path)!r}: it holds Python objects other than tensors, "
            "numbers, strings and containers, and loading those could run arbitrary code. "
            "Only load checkpoints written by torchrig or another weights-only writer."
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise TorchrigError(
            f"Cannot read checkpoint {str(path)!r}: {exc}. The file is truncated or corrupt."
        ) from exc


def _holds_objects(path: Path) -> bool:
    """Whether the file is a readable pickle (or torch.save zip) that names Python objects, as
    opposed to bytes that are no pickle at all. Read with pickletools: nothing is executed."""
    import pickletools
    import zipfile

    if zipfile.is_zipfile(path):
        return True  # torch.save's format: readable, so the refusal was about what it holds
    try:
        with open(path, "rb") as f:
            return any(op.name in ("GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE")
                       for op, _, _ in pickletools.genops(f))
    except Exception:  # noqa: BLE001  (any parse failure means: not a pickle)
        return False


def _existing(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            found = sorted(p.name for p in path.parent.iterdir() if p.suffix in {".pt", ".ckpt", ".safetensors"})
            hint = f" Files there: {', '.join(found)}." if found else f" {str(path.parent)!r} holds no checkpoint files."
        raise TorchrigError(f"No {what} at {str(path)!r}.{hint}")
    return path


