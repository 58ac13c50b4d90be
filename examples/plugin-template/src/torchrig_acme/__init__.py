"""torchrig-acme: an example plugin. ``plugin`` is what the entry point points at."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

import torchrig

plugin = torchrig.Plugin("acme")


class Blobs(Dataset):
    """Gaussian blobs in ``dim`` dimensions, one per class: a tiny, offline classification set."""

    def __init__(self, n: int, num_classes: int, dim: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        centers = torch.randn(num_classes, dim, generator=g) * 3
        self.targets = torch.arange(n) % num_classes
        self.x = centers[self.targets] + torch.randn(n, dim, generator=g)
        self.classes = [f"blob{i}" for i in range(num_classes)]  # names; their count -> num_classes
        self.model_kwargs = {"in_features": dim}  # other sizes a model builder takes

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.targets[i]


@plugin.dataset
def blobs(*, n: int = 600, num_classes: int = 3, dim: int = 8, seed: int = 0) -> Dataset:
    """``n`` points around ``num_classes`` random centres in ``dim`` dimensions (no own splits:
    the recipe's ``data.split`` carves val and test)."""
    return Blobs(n, num_classes, dim, seed)


@plugin.transform
def standardize(*, scale: float = 1.0) -> object:
    """Divide each feature vector by its norm and multiply by ``scale``."""
    return lambda x: scale * x / x.norm().clamp_min(1e-8)


@plugin.model
def wide_mlp(*, num_classes: int = 10, in_features: int = 8, width: int = 256) -> nn.Module:
    """A one-hidden-layer MLP: Linear(in_features, width) -> ReLU -> Linear(width, num_classes)."""
    return nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, num_classes))


@plugin.reader(".csv")
def feature_row(path: str) -> torch.Tensor:
    """A file with one comma-separated feature vector."""
    with open(path, encoding="utf-8") as f:
        return torch.tensor([float(v) for v in f.read().replace("\n", ",").split(",") if v.strip()])
