"""Presets and v2 transforms by name."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import torchrig
from torchrig import TorchrigError


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK"])
def test_presets_turn_any_image_into_a_normalised_tensor(mode):
    img = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
    for preset in (torchrig.get_transform("vision/train_preset", size=24, auto_augment="trivial"),
                   torchrig.get_transform("vision/eval_preset", size=24)):
        x = preset(img)
        assert x.shape == (1 if mode == "L" else 3, 24, 24) and x.dtype == torch.float32
    grey = torchrig.get_transform("vision/eval_preset", size=24, channels=1)(img)
    assert grey.shape == (1, 24, 24)


def test_presets_on_tensors_and_custom_normalisation():
    x = torch.rand(1, 16, 16)
    out = torchrig.get_transform("vision/eval_preset", size=16, crop_ratio=1.0, mean=[0.0], std=[1.0])(x)
    torch.testing.assert_close(out, x)
    out3 = torchrig.get_transform("vision/eval_preset", size=16, crop_ratio=1.0, channels=3)(x)
    assert out3.shape == (3, 16, 16)


def test_v2_transforms_by_name_and_compose():
    t = torchrig.get_transform("vision/compose", transforms=[
        {"name": "vision/resize", "size": 12}, "vision/to_image", {"name": "vision/to_dtype", "dtype": torch.float32, "scale": True}])
    out = t(Image.new("RGB", (30, 20)))
    assert out.shape == (3, 12, 18)
    assert "vision/color_jitter" in torchrig.list_transforms(plugin="vision")
    with pytest.raises(TorchrigError, match=r"transform 'vision/resize' got an unexpected argument 'sise'.*Did you mean 'size'"):
        torchrig.get_transform("vision/resize", sise=3)
    with pytest.raises(TorchrigError, match=r"auto_augment must be one of"):
        torchrig.get_transform("vision/train_preset", auto_augment="trivia")
