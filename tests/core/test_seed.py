"""seed_everything makes Python, NumPy, torch and DataLoader workers repeatable."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import torchrig
from torchrig._seed import get_rng_state, set_rng_state


class Noisy(Dataset):
    """Each sample draws from every RNG, as augmentations do in DataLoader workers."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        return torch.tensor([random.random(), float(np.random.rand()), float(torch.rand(()))]), i


def draw(workers: int) -> torch.Tensor:
    torchrig.seed_everything(7)
    loader = DataLoader(Noisy(), batch_size=4, shuffle=True, num_workers=workers)
    return torch.cat([torch.cat([x, y[:, None].float()], 1) for x, y in loader])


def test_same_seed_same_draws_in_main_process_and_workers():
    assert torch.equal(draw(0), draw(0))
    assert torch.equal(draw(2), draw(2))


def test_rng_state_round_trip_through_weights_only_file(tmp_path):
    torchrig.seed_everything(3)
    torchrig.save_state(tmp_path / "rng.pt", {"rng": get_rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(()))
    torchrig.seed_everything(99)
    set_rng_state(torchrig.load_state(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(())) == expected
