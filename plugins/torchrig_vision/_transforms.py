"""Transforms: train/eval presets built on torchvision.transforms.v2, and every v2 transform by
name (``vision/resize``, ``vision/color_jitter``, ...), composable with ``vision/compose``."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import v2

import torchrig

from ._plugin import plugin

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL image (greyscale, RGBA, palette, CMYK, 16-bit) to L or RGB.

    Transparent pixels become white, as an image viewer shows them, rather than black.
    """
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v / 256).convert("L")  # 16-bit -> 8-bit
    return img.convert("L" if channels == 1 else "RGB")


class ToImage(torch.nn.Module):
    """PIL image or tensor -> a ``tv_tensors.Image`` with ``channels`` channels (None: keep)."""

    def __init__(self, channels: int | None = None) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, img: Any) -> torch.Tensor:
        if isinstance(img, Image.Image):
            channels = self.channels or (1 if img.mode in ("L", "1", "I;16", "I") else 3)
            return v2.functional.to_image(to_mode(img, channels))
        image = v2.functional.to_image(img)
        if self.channels is not None and image.shape[-3] != self.channels:
            if self.channels == 1:
                image = v2.functional.rgb_to_grayscale(image[..., :3, :, :])
            else:
                image = image[..., :1, :, :].expand(*image.shape[:-3], self.channels, *image.shape[-2:])
        return image


class Normalize(torch.nn.Module):
    """``v2.Normalize`` whose default statistics fit the channel count (ImageNet for RGB)."""

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def stats(self, c: int) -> tuple[list[float], list[float]]:
        """The mean and std used for images of ``c`` channels."""
        mean = self.mean if self.mean is not None else (IMAGENET_MEAN if c == 3 else (0.5,) * c)
        std = self.std if self.std is not None else (IMAGENET_STD if c == 3 else (0.5,) * c)
        if len(mean) != c and c == 1:  # RGB statistics (pretrained weights) for a greyscale input
            mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
        return [float(m) for m in mean], [float(s) for s in std]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        mean, std = self.stats(img.shape[-3])
        return v2.functional.normalize(img, mean, std)


class Preset(v2.Compose):
    """``v2.Compose`` that can draw what it made (un-normalised) and state, as data, what a
    caller of an exported model must do to an image (``preprocessing``)."""

    def __init__(self, transforms: Sequence[Any], spec: dict[str, Any] | None = None) -> None:
        super().__init__(list(transforms))
        self.spec = dict(spec or {})

    def _normalize(self) -> Normalize | None:
        return next((t for t in self.transforms if isinstance(t, Normalize)), None)

    def show(self, inputs: Any, ax: Any) -> None:
        """Draw one transformed image as a person sees it: normalisation undone."""
        image = torch.as_tensor(inputs)
        norm = self._normalize()
        mean, std = norm.stats(image.shape[-3]) if norm is not None else (None, None)
        torchrig.show_image(image, ax, mean=mean, std=std)

    def preprocessing(self, inputs: Any) -> dict[str, Any]:
        """Resize, crop, scale and normalisation, for ``model.json`` (``inputs``: one output)."""
        c = int(torch.as_tensor(inputs).shape[-3])
        norm = self._normalize()
        spec = {"kind": "image", "channels": c, "color": "L" if c == 1 else "RGB", **self.spec,
                "scale": "pixel values / 255"}
        if norm is not None:
            spec["mean"], spec["std"] = norm.stats(c)
        return spec


def _interpolation(name: str) -> v2.InterpolationMode:
    try:
        return v2.InterpolationMode(name)
    except ValueError:
        modes = [m.value for m in v2.InterpolationMode]
        raise torchrig.TorchrigError(f"interpolation {name!r} is not one of {', '.join(modes)}.") from None


_AUGMENT = {"trivial": v2.TrivialAugmentWide, "rand": v2.RandAugment, "auto": v2.AutoAugment}


def _check(size: Any, **fractions: tuple[float, float, Any]) -> None:
    """The presets' numbers, checked when built (a size of -3 failed in the first batch, inside
    torch): ``size`` a positive int or [height, width]; each fraction within its bounds."""
    sizes = [size] if isinstance(size, int) else list(size) if isinstance(size, (list, tuple)) else [None]
    if not (1 <= len(sizes) <= 2 and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes)):
        raise ValueError(f"size must be a positive whole number or [height, width], got {size!r}")
    for name, (low, high, value) in fractions.items():
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(v, (int, float)) and low <= v <= high for v in values):
            raise ValueError(f"{name} must be within [{low}, {high}], got {value!r}")


@plugin.transform
def train_preset(*, size: int | Sequence[int] = 224, crop_scale: Sequence[float] = (0.5, 1.0),
                 hflip: float = 0.5, auto_augment: str | None = None, rotation: float = 0.0,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 channels: int | None = None, interpolation: str = "bilinear") -> Preset:
    """Training augmentation: random-resized crop to ``size``, flip, optional augment policy.

    Args:
        size: output size (int: square).
        crop_scale: range of the crop's area fraction (ImageNet uses (0.08, 1); small images
            such as digits want (0.7, 1)).
        hflip: probability of a horizontal flip (0 for digits and text).
        auto_augment: None, ``"trivial"`` (TrivialAugmentWide), ``"rand"`` or ``"auto"``.
        rotation: random rotation range in degrees (0: none).
        mean, std: normalisation; default ImageNet's for RGB, 0.5 per channel otherwise.
        channels: convert images to 1 or 3 channels (None: RGB for colour, L for greyscale).
        interpolation: resampling: ``"bilinear"``, ``"bicubic"``, ``"nearest"``, ...

    With pretrained torchvision weights (``model.weights``), ``size``, ``mean``, ``std`` and
    ``interpolation`` default to the weights' own, unless the recipe sets them.
    """
    _check(size, crop_scale=(0.0, 1.0, crop_scale), hflip=(0.0, 1.0, hflip))
    if auto_augment is not None and auto_augment not in _AUGMENT:
        raise torchrig.TorchrigError(f"auto_augment must be one of {sorted(_AUGMENT)} or null, got {auto_augment!r}.")
    steps: list[Any] = [ToImage(channels), v2.RandomResizedCrop(size, scale=tuple(crop_scale), interpolation=_interpolation(interpolation),
                                                      antialias=True)]
    if hflip:
        steps.append(v2.RandomHorizontalFlip(hflip))
    if rotation:
        steps.append(v2.RandomRotation(rotation))
    if auto_augment is not None:
        steps.append(_AUGMENT[auto_augment]())
    steps += [v2.ToDtype(torch.float32, scale=True), Normalize(mean, std)]
    return Preset(steps, {"random_resized_crop": size, "interpolation": interpolation})


@plugin.transform
def eval_preset(*, size: int | Sequence[int] = 224, crop_ratio: float = 0.875,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                channels: int | None = None, interpolation: str = "bilinear") -> Preset:
    """Evaluation: resize the shorter side to ``size / crop_ratio``, centre-crop ``size``.

    Args:
        size: output size (int: square).
        crop_ratio: the centre crop's share of the resized image (1.0: resize only).
        mean, std: as in ``vision/train_preset``.
        channels: as in ``vision/train_preset``.
        interpolation: as in ``vision/train_preset``.

    With pretrained torchvision weights (``model.weights``), every argument but ``channels``
    defaults to the weights' own ``transforms()`` (resize, crop, interpolation, mean, std).
    """
    _check(size, crop_ratio=(0.05, 1.0, crop_ratio))
    square = size if isinstance(size, int) else min(size)
    resize = round(square / crop_ratio)
    steps: list[Any] = [ToImage(channels), v2.Resize(resize, interpolation=_interpolation(interpolation), antialias=True),
                        v2.CenterCrop(size),
                        v2.ToDtype(torch.float32, scale=True), Normalize(mean, std)]
    return Preset(steps, {"resize_shorter_side": resize, "interpolation": interpolation, "antialias": True,
                          "resize": "shorter side to resize_shorter_side, longer side int(that * long / short)",
                          "center_crop": size, "crop": "offsets round((side - center_crop) / 2)"})


@plugin.transform
def compose(*, transforms: Sequence[Any]) -> Preset:
    """Chain transforms given as components: ``[{name: vision/resize, size: 32}, ...]``."""
    return Preset([torchrig.build_component(item, "transform", owner="vision/compose") for item in transforms])


# v2 transforms that only make sense with bounding boxes, key points or video frames (detection,
# pose, video): not offered for image classification.
_NOT_FOR_CLASSIFICATION = {"ClampBoundingBoxes", "ClampKeyPoints", "ConvertBoundingBoxFormat", "SanitizeBoundingBoxes",
                           "SanitizeKeyPoints", "SetClampingMode", "RandomIoUCrop", "UniformTemporalSubsample"}


def _register_v2() -> None:
    """Every ``torchvision.transforms.v2`` transform class as ``vision/<snake_case>``."""
    taken = {key for (_, key) in plugin.entries}
    for cls_name in sorted(dir(v2)):
        cls = getattr(v2, cls_name)
        if not (isinstance(cls, type) and issubclass(cls, v2.Transform)) or cls is v2.Transform:
            continue
        key = torchrig.snake_case(cls_name)
        if key in taken or cls_name in ("Compose", "Lambda", "RandomApply", "RandomChoice", "RandomOrder") \
                or cls_name in _NOT_FOR_CLASSIFICATION:
            continue

        def build(_cls: type = cls, **kwargs: Any) -> Any:
            return _cls(**kwargs)

        build.__name__ = key
        build.__doc__ = f"torchvision.transforms.v2.{cls_name}.\n\n{inspect.getdoc(cls) or ''}"
        params = [p for p in inspect.signature(cls).parameters.values() if p.name != "self"]
        build.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind is p.POSITIONAL_OR_KEYWORD else p for p in params])
        plugin.transform(build, name=key)


_register_v2()
