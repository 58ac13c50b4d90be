"""Seeding and RNG state capture, in a form ``torch.load(weights_only=True)`` accepts."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

__all__ = ["seed_everything", "seed_worker"]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and every CUDA device) with one number.

    DataLoader workers are seeded by PyTorch itself from the main process's torch RNG (it seeds
    ``random``, NumPy and torch in each worker), so seeding here makes them repeatable too. For a
    loader whose shuffling must not depend on anything else drawn from the global RNG, pass it the
    returned generator: ``DataLoader(ds, shuffle=True, generator=seed_everything(0))``.

    Args:
        seed: any int in ``[0, 2**32)``.

    Returns:
        A ``torch.Generator`` seeded with ``seed``.
    """
    seed = int(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # inherited by subprocesses/workers, not this one
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """A ``worker_init_fn`` that re-seeds ``random`` and NumPy from the worker's torch seed.

    PyTorch already does this for its own workers; this is for code that builds workers
    another way, or for older PyTorch versions.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def get_rng_state() -> dict[str, Any]:
    """Every global RNG's state, as tensors, ints and lists (loadable with weights_only=True)."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(_plain, np_state[2:])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x
