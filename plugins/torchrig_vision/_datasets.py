"""Datasets: scikit-learn's digits, a folder of images per class, and FakeData; the image reader."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

import torchrig

from ._plugin import plugin
from ._transforms import to_mode

log = logging.getLogger("torchrig.vision")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLIT_NAMES = ("train", "val", "test")


DIGITS_NOTE = ("a handwritten digit as scikit-learn's digits are: light strokes on a dark background, centred "
               "and filling the frame (it is shrunk to 8x8 greyscale)")


class Digits(Dataset):
    """scikit-learn's 1,797 handwritten 8x8 digits as ``(1, size, size)`` float images in [0, 1]."""

    def __init__(self, size: int = 8) -> None:
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        images = torch.tensor(X, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
        if size != 8:  # upsample once, up front, instead of in every epoch
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        self.images = images
        self.targets = torch.tensor(y)
        self.classes = [str(i) for i in range(10)]
        self.model_kwargs = {"in_channels": 1}
        self.input_note = DIGITS_NOTE

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.targets[index]


@plugin.dataset
def digits(*, size: int = 8) -> Dataset:
    """scikit-learn's bundled handwritten digits (no download): 1,797 greyscale images, classes
    "0".."9". No own splits: the recipe's ``data.split`` carves val and test (stratified).

    Args:
        size: image side; 8 is the original, larger sizes are upsampled bilinearly once.
    """
    return Digits(size)


def upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation that phone cameras record, so photos are the right way up."""
    if img.getexif().get(0x0112, 1) != 1:  # 0x0112: Orientation
        return ImageOps.exif_transpose(img)
    return img


MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # PIL's decompression-bomb limit: 89,478,485 pixels
DECODE_SIZE = 512
_BAD_IMAGE = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError, EOFError)


def open_image(path: str | Path, *, max_pixels: int | None = None, decode_size: int | None = None) -> Image.Image:
    """Open ``path`` (lazily: nothing decoded yet) and refuse it if it has more than
    ``max_pixels`` pixels, before any decoding. A JPEG is set to decode in draft mode at the
    smallest 1/2, 1/4 or 1/8 scale that keeps both sides at least ``decode_size``.

    Raises:
        torchrig.InputError: the file is no image, or too large; the message names it.
    """
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    if limit > (Image.MAX_IMAGE_PIXELS or 0) * 2:  # PIL itself refuses 2x its limit at open
        Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise torchrig.InputError(f"Refusing image {str(path)!r}: {exc} If you trust the file, raise the dataset's "
                                  "max_pixels.") from None
    except _BAD_IMAGE as exc:
        raise torchrig.InputError(f"Cannot read image {str(path)!r}: {_reason(exc)}.") from None
    width, height = img.size
    if width * height > limit:
        img.close()
        raise torchrig.InputError(
            f"Refusing image {str(path)!r}: {width}x{height} is {width * height:,} pixels, over the limit of "
            f"{limit:,} (max_pixels; a decompression bomb takes that much memory when decoded). Shrink the "
            "image, or raise the dataset's max_pixels if you trust it.")
    if decode_size and img.format == "JPEG" and min(width, height) >= 2 * decode_size:
        img.draft(img.mode, (decode_size, decode_size))  # DCT scaling: never below decode_size
    return img


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "it is not an image PIL can identify (wrong content for its suffix, or empty)"
    if isinstance(exc, (OSError, SyntaxError, EOFError)) and "runcat" in str(exc):
        return f"it is truncated ({exc})"
    return f"{type(exc).__name__}: {exc}"


def load_image(path: str | Path, channels: int, *, max_pixels: int | None = None,
               decode_size: int | None = DECODE_SIZE) -> Image.Image:
    """Decode ``path`` within the pixel limit, upright (EXIF), in ``channels`` (1: L, 3: RGB)."""
    img = open_image(path, max_pixels=max_pixels, decode_size=decode_size)
    try:
        with img:
            img.load()
            return to_mode(upright(img), channels)
    except _BAD_IMAGE as exc:
        raise torchrig.InputError(f"Cannot decode image {str(path)!r}: {_reason(exc)}.") from None


def _check_image(path: Path, max_pixels: int | None = None) -> str | None:
    """None if the file opens within the pixel limit and PIL verifies it, else the reason."""
    try:
        with open_image(path, max_pixels=max_pixels) as img:
            img.verify()
        return None
    except torchrig.InputError as exc:
        return str(exc)
    except _BAD_IMAGE as exc:
        return f"Cannot read image {str(path)!r}: {_reason(exc)}"


class ImageFolder(Dataset):
    """Images in ``root/<class>/...`` as ``(PIL image in L or RGB, class index)``."""

    def __init__(self, root: Path, classes: list[str], files: list[tuple[Path, int]], channels: int,
                 on_error: str, max_pixels: int | None = None, decode_size: int | None = DECODE_SIZE) -> None:
        self.root, self.classes, self.channels, self.on_error = root, classes, channels, on_error
        self.max_pixels, self.decode_size = max_pixels, decode_size
        self.skipped: list[str] = []
        checked = []
        for path, target in files:
            problem = _check_image(path, max_pixels)
            if problem is None:
                checked.append((path, target))
            elif on_error == "skip":
                self.skipped.append(str(path))
                log.warning("skipping %s", problem)
            else:
                raise torchrig.InputError(f"{problem}. Delete or replace the file, or set on_error: skip in the "
                                          "dataset to skip unreadable images.")
        self.samples = checked
        self.targets = [t for _, t in checked]
        self.model_kwargs = {"in_channels": channels}

    def __len__(self) -> int:
        return len(self.samples)

    def describe(self, index: int) -> str:
        """The image file of sample ``index`` (for a run's top losses)."""
        return str(self.samples[index][0])

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path, target = self.samples[index]
        try:  # passed verify() but may still fail to decode (truncated)
            return load_image(path, self.channels, max_pixels=self.max_pixels, decode_size=self.decode_size), target
        except torchrig.InputError as exc:
            raise torchrig.InputError(f"{exc} Delete or replace it.") from None


@plugin.dataset
def image_folder(*, root: str, split: str = "train", channels: int = 3, on_error: str = "raise",
                 max_pixels: int | None = None, decode_size: int | None = DECODE_SIZE) -> Dataset | None:
    """Your own images, one folder per class: ``root/<class>/<image>``, or with split folders
    ``root/train/<class>/...``, ``root/val/...`` (and ``root/test/...``), which become the splits.

    Reads JPEG, PNG, BMP, GIF, WebP and TIFF; converts greyscale, RGBA, palette and CMYK images to
    ``channels`` (3: RGB, 1: greyscale); ignores hidden and non-image files.

    Args:
        root: the folder.
        split: "train", "val" or "test" (given by the recipe).
        channels: 3 or 1; the model's ``in_channels`` follows it.
        on_error: "raise" stops at an unreadable image and names it; "skip" skips it and counts it
            in the run summary.
        max_pixels: images with more pixels are refused before decoding (a decompression bomb
            would take gigabytes); default PIL's bomb limit, 89,478,485.
        decode_size: JPEGs at least twice this size on their shorter side decode at 1/2, 1/4 or
            1/8 scale (JPEG draft mode), never below it: big photos load faster and lighter.
            Keep it at or above the model's input size; ``null`` decodes at full size.
    """
    if channels not in (1, 3):
        raise torchrig.TorchrigError(f"vision/image_folder: channels must be 1 or 3, got {channels!r}.")
    torchrig.check_on_error(on_error, "vision/image_folder")
    found = torchrig.class_folder_files(root, split, IMAGE_SUFFIXES, component="vision/image_folder")
    if found is None:
        return None  # no such split: the recipe carves it from train
    classes, files = found
    return ImageFolder(Path(root), classes, files, channels, on_error, max_pixels, decode_size)


class _Fake(Dataset):
    def __init__(self, data: Any, num_classes: int) -> None:
        self.data = data
        self.classes = [str(i) for i in range(num_classes)]
        self.model_kwargs = {"in_channels": data.image_size[0]}

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img, target = self.data[index]
        return img, int(target)


@plugin.dataset
def fake(*, size: int = 64, image_size: int = 32, channels: int = 3, num_classes: int = 4,
         seed: int = 0) -> Dataset:
    """torchvision's FakeData: random PIL images with random labels, for smoke tests."""
    from torchvision.datasets import FakeData

    return _Fake(FakeData(size=size, image_size=(channels, image_size, image_size), num_classes=num_classes,
                          random_offset=seed), num_classes)


@plugin.reader(*IMAGE_SUFFIXES)
def image(path: str, *, dataset: dict[str, Any] | None = None) -> Any:
    """An image file, converted as the run's dataset converted its images."""
    dataset = dataset or {}
    if dataset.get("name") == "vision/digits":
        # digits are light strokes on black, 8x8 (or `size`), in [0, 1]
        size = int(dataset.get("size", 8))
        grey = load_image(path, 1).resize((size, size), Image.BILINEAR)
        pixels = torch.from_numpy(np.asarray(grey, dtype=np.float32)).view(1, size, size) / 255.0
        if float(pixels.mean()) > 0.5:  # mostly light: dark ink on white paper, the other way round
            log.warning("note: %s looks like dark strokes on a light background; this model expects light strokes "
                        "on a dark background (invert it first, e.g. PIL.ImageOps.invert).", path)
        return pixels
    return load_image(path, int(dataset.get("channels", 3)), max_pixels=dataset.get("max_pixels"),
                      decode_size=dataset.get("decode_size", DECODE_SIZE))
