"""model.json's image preprocessing is complete as data: resizing, cropping and normalising a
photo with PIL and NumPy as it says gives the tensor eval_preset gives; `show` undoes the
normalisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import torchrig


def _photo(width=97, height=61, mode="RGB"):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    pixels = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)  # smooth, with grain
    img = Image.fromarray(pixels)
    return img.convert(mode)


@pytest.mark.parametrize("mode, kwargs", [("RGB", {"size": 32}), ("L", {"size": 24, "crop_ratio": 0.8}),
                                          ("RGB", {"size": 40, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]})])
def test_preprocessing_reproduces_eval_preset(mode, kwargs):
    preset = torchrig.get_transform("vision/eval_preset", **kwargs)
    img = _photo(mode=mode)
    out = preset(img)
    spec = json.loads(json.dumps(preset.preprocessing(out)))
    assert spec["channels"] == out.shape[0] and spec["color"] == mode
    # the caller's side: PIL and NumPy only
    w, h = img.size
    short = spec["resize_shorter_side"]
    size = (short, int(h * short / w)) if w <= h else (int(w * short / h), short)  # as model.json's "resize" says
    resized = img.convert(spec["color"]).resize(size, Image.BILINEAR, reducing_gap=None)
    crop = spec["center_crop"]
    left, top = round((resized.width - crop) / 2), round((resized.height - crop) / 2)
    arr = np.asarray(resized.crop((left, top, left + crop, top + crop)), dtype=np.float32) / 255
    arr = arr.reshape(crop, crop, -1).transpose(2, 0, 1)
    arr = (arr - np.array(spec["mean"]).reshape(-1, 1, 1)) / np.array(spec["std"]).reshape(-1, 1, 1)
    # in pixel levels (of 255): PIL's and torchvision's antialiased bilinear differ by a level or two
    levels = np.abs(arr - out.numpy()) * np.array(spec["std"]).reshape(-1, 1, 1) * 255
    assert levels.mean() < 1.5, levels.mean()


def test_show_draws_the_image_before_normalisation():
    from torchrig._plots import _pyplot

    preset = torchrig.get_transform("vision/eval_preset", size=16, crop_ratio=1.0)
    img = _photo(16, 16)
    fig, ax = _pyplot().subplots()
    preset.show(preset(img), ax)
    shown = np.asarray(ax.images[0].get_array(), dtype=np.float32)
    assert np.abs(shown - np.asarray(img, dtype=np.float32) / 255).max() < 1e-5
    _pyplot().close(fig)
