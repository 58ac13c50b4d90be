"""Every registered vision model builds and runs a forward pass (parametrized over the registry).

Models over ``MAX_PARAMS`` are skipped to keep CI fast; their size comes from torchvision's own
weight metadata, so nothing is built to find out.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

import torchrig

MAX_PARAMS = 30_000_000


def _meta(name: str) -> dict:
    arch = name.split("/", 1)[1]
    try:
        return list(torchvision.models.get_model_weights(arch))[0].meta
    except (ValueError, KeyError):
        return {"num_params": 0, "min_size": (1, 1)}


@pytest.mark.parametrize("name", torchrig.list_models(plugin="vision"))
def test_model_builds_and_forwards(name):
    meta = _meta(name)
    if meta["num_params"] > MAX_PARAMS:
        pytest.skip(f"{meta['num_params'] / 1e6:.0f}M parameters > the {MAX_PARAMS / 1e6:.0f}M limit for CI")
    side = max(32, *meta["min_size"])
    model = torchrig.get_model(name, num_classes=5, in_channels=1).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, side, side))
    assert out.shape == (2, 5)


def test_channels_last_wrapper():
    model = torchrig.get_model("vision/small_cnn", num_classes=3, channels_last=True)
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 3)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_unknown_torchvision_kwarg_is_explained():
    with pytest.raises(torchrig.TorchrigError, match=r"vision/resnet18: .*unexpected keyword argument 'depth'"):
        torchrig.get_model("vision/resnet18", depth=3)
