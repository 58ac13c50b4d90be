"""Shared fixtures: fixed seeds, one thread, and scikit-learn's bundled digits as real data."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset


@pytest.fixture(autouse=True)
def seeds_fixed():
    import torchrig

    torchrig.seed_everything(0)
    yield


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    # Two cores run two pytest-xdist-free processes' worth of work at most; one intra-op thread
    # keeps timings stable and results bit-reproducible.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    """sklearn's 8x8 handwritten digits: (X float32 in [0, 1], y long), 1797 samples."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return torch.tensor(X, dtype=torch.float32) / 16.0, torch.tensor(y)


@pytest.fixture
def digit_loaders(digits):
    X, y = digits
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    X, y = X[order], y[order]  # the file is ordered by writer; shuffle before splitting
    train = TensorDataset(X[:1400], y[:1400])
    val = TensorDataset(X[1400:], y[1400:])
    return DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=128)
