"""A scikit-learn transformer that turns image arrays or image files into model inputs."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from PIL import Image
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted

import torchrig
from torchrig.sklearn import ModelInputs

from ._datasets import upright
from ._transforms import to_mode

__all__ = ["ImagePreprocessor"]

GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as PIL's convert("L")


class ImagePreprocessor(TransformerMixin, BaseEstimator):
    """Images -> float32 ``(N, C, size, size)``, standardised per channel with statistics from fit.

    X is one of (the rule is applied in this order):

    - image file paths (a list, or a 1-D array of str / PathLike), decoded as ``vision/image_folder``
      does: EXIF orientation applied; greyscale, RGBA, palette, CMYK and 16-bit converted;
    - ``N x D``: flattened greyscale images of shape ``flat_shape`` (square by default: sklearn's
      digits are ``N x 64``);
    - ``N x H x W``: greyscale images;
    - ``N x H x W x C`` (channels-last) when the last axis has 1, 3 or 4 entries, else
      ``N x C x H x W`` (channels-first) when axis 1 has. Channels-last is never misread; use it
      for images 1, 3 or 4 pixels wide.

    4 channels are RGBA and are composited on white, as image files are. uint8 arrays and image
    files are divided by 255, other arrays by ``scale``. Images are resized with antialiased
    bilinear interpolation. The result is a :class:`torchrig.sklearn.ModelInputs` carrying
    ``in_channels``, which ``RigClassifier`` passes to the model.

    Args:
        size: side of the square output images, in pixels.
        channels: 1 (greyscale) or 3 (RGB) converts every image; None keeps the channel count of
            the training images (files: 1 if every one is greyscale, else 3).
        scale: the value of white in arrays that are not uint8. "auto": the maximum of the
            training data if above 1 (digits: 16), else 1.
        normalize: subtract ``mean_`` and divide by ``std_`` per channel; False leaves [0, 1].
        flat_shape: ``(H, W)`` of each row of a 2-D X, one entry may be -1 as in ``numpy.reshape``
            (sklearn's LFW faces: ``(62, 47)``; ``(1, -1)`` reads any row as a strip); None: square.

    Attributes (set by fit): ``n_channels_``, ``scale_``, ``mean_`` and ``std_`` (per channel).

    Example::

        from sklearn.datasets import load_digits
        from torchrig_vision.sklearn import ImagePreprocessor

        X, y = load_digits(return_X_y=True)               # (1797, 64), values 0..16
        Xt = ImagePreprocessor(size=16).fit_transform(X)  # (1797, 1, 16, 16) float32
        Xt.model_kwargs                                   # {"in_channels": 1}
    """

    def __init__(self, size: int = 32, *, channels: int | None = None, scale: float | str = "auto",
                 normalize: bool = True, flat_shape: tuple[int, int] | None = None) -> None:
        self.size = size
        self.channels = channels
        self.scale = scale
        self.normalize = normalize
        self.flat_shape = flat_shape

    def fit(self, X: Any, y: Any = None) -> ImagePreprocessor:
        """Learn the channel count, pixel scale and per-channel mean and std of X.

        Args:
            X: images, as described in the class docstring.
            y: ignored.

        Returns:
            self.

        Raises:
            InputError: (a TorchrigError and a ValueError) for a bad parameter, shape or unreadable file.
        """
        self._fit(X)
        return self

    def fit_transform(self, X: Any, y: Any = None) -> ModelInputs:
        """``fit(X).transform(X)``, decoding and resizing X once."""
        return self._output(self._fit(X))

    def transform(self, X: Any) -> ModelInputs:
        """Convert X as fit learned.

        Args:
            X: images in any accepted layout (need not be the layout fit saw).

        Returns:
            A float32 ``ModelInputs`` of shape ``(N, n_channels_, size, size)`` with
            ``model_kwargs == {"in_channels": n_channels_}``.

        Raises:
            NotFittedError: before fit.
            InputError: (a TorchrigError and a ValueError) for a bad shape, unreadable file, or arrays whose
                channel count differs from fit's (set ``channels`` to convert instead).
        """
        check_is_fitted(self)
        return self._output(self._pixels(_read(X, self.flat_shape)))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # the output is always float32
        return tags

    def _fit(self, X: Any) -> torch.Tensor:
        if not isinstance(self.size, (int, np.integer)) or self.size < 1:
            raise torchrig.InputError(f"ImagePreprocessor: size must be a positive int (pixels), got {self.size!r}.")
        if self.channels not in (None, 1, 3):
            raise torchrig.InputError(f"ImagePreprocessor: channels must be 1, 3 or None, got {self.channels!r}.")
        if not (isinstance(self.scale, (int, float)) and self.scale > 0 or self.scale == "auto"):
            raise torchrig.InputError(f"ImagePreprocessor: scale must be 'auto' or a positive number, got {self.scale!r}.")
        data = _read(X, self.flat_shape)
        files = isinstance(data, list)  # of PIL images
        if files:
            self.n_channels_ = self.channels or (1 if all(im.mode in GREY_MODES for im in data) else 3)
        else:
            self.n_channels_ = self.channels or min(data.shape[-1], 3)
        if self.scale != "auto":
            self.scale_ = float(self.scale)
        else:
            self.scale_ = 255.0 if files or data.dtype == np.uint8 else max(float(data.max()), 1.0)
        pixels = self._pixels(data)
        std, mean = torch.std_mean(pixels, dim=(0, 2, 3), correction=0)
        self.mean_ = mean.double().numpy()
        self.std_ = np.where(std.numpy() > 1e-6, std.double().numpy(), 1.0)  # a constant channel: centred only
        return pixels

    def _output(self, pixels: torch.Tensor) -> ModelInputs:
        if self.normalize:
            shape = (1, -1, 1, 1)
            pixels = (pixels - torch.from_numpy(self.mean_).float().view(shape)) / \
                torch.from_numpy(self.std_).float().view(shape)
        return ModelInputs(pixels.numpy(), in_channels=self.n_channels_)

    def _pixels(self, data: np.ndarray | list[Image.Image]) -> torch.Tensor:
        """Images -> ``(N, n_channels_, size, size)`` float32 tensor in [0, 1]."""
        if isinstance(data, list):  # each its own size: resized one by one
            arrays = (np.asarray(to_mode(im, self.n_channels_)).reshape(1, im.height, im.width, -1) for im in data)
            return torch.cat([self._pixels(a) for a in arrays])
        if self.channels is None and min(data.shape[-1], 3) != self.n_channels_:
            raise torchrig.InputError(f"ImagePreprocessor was fitted on {self.n_channels_}-channel images but X has "
                              f"{data.shape[-1]}. Pass images like the training ones, or set channels=1 or 3 "
                              "to convert every image.")
        x = data.astype(np.float32) / np.float32(255 if data.dtype == np.uint8 else self.scale_)
        if x.shape[-1] == 4:  # RGBA on white
            x = x[..., :3] * x[..., 3:] + (1 - x[..., 3:])
        if x.shape[-1] == 3 and self.n_channels_ == 1:
            x = x @ LUMA[:, None]
        elif x.shape[-1] == 1 and self.n_channels_ == 3:
            x = np.repeat(x, 3, axis=-1)
        t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
        if t.shape[-2:] != (self.size, self.size):  # in chunks: bounded memory for the antialias filter
            t = torch.cat([torch.nn.functional.interpolate(chunk, size=(self.size, self.size), mode="bilinear",
                                                           antialias=True, align_corners=False)
                           for chunk in t.split(256)])
        return t.contiguous()


def _read(X: Any, flat_shape: tuple[int, int] | None) -> np.ndarray | list[Image.Image]:
    """X -> a channels-last ``N x H x W x C`` array, or the decoded images if X holds file paths."""
    if isinstance(X, (str, os.PathLike)):
        raise torchrig.InputError(f"ImagePreprocessor: X is a single path {str(X)!r}; pass a list of paths: [path].")
    items = X if isinstance(X, (list, tuple)) else np.asarray(X).tolist() if getattr(X, "ndim", 0) == 1 else []
    if items and all(isinstance(p, (str, os.PathLike)) for p in items):
        return [_open(p) for p in items]
    x = check_array(X, allow_nd=True, ensure_2d=False, dtype="numeric", input_name="X")
    if x.ndim == 1:  # sklearn's wording ("Reshape your data"), with the reshapes that fit images
        raise torchrig.InputError(f"ImagePreprocessor: X is 1-D (shape {x.shape}), not images. Reshape your data: "
                          "X.reshape(1, -1) if it is one flattened image.")
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        shape = (side, side) if flat_shape is None else tuple(flat_shape)
        if len(shape) == 2 and (flat_shape is not None or side * side == x.shape[1]):
            try:
                return x.reshape(len(x), *shape, 1)
            except ValueError:
                pass
        wanted = "square images" if flat_shape is None else f"images of flat_shape={flat_shape!r}"
        raise torchrig.InputError(f"ImagePreprocessor: X has rows of {x.shape[1]} values, which are not {wanted}. "
                          "Pass flat_shape=(H, W) for flattened H x W images, or an N x H x W array.")
    if x.ndim == 3:
        return x[..., None]
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4):
        return x
    if x.ndim == 4 and x.shape[1] in (1, 3, 4):
        return np.moveaxis(x, 1, -1)
    raise torchrig.InputError(
        f"ImagePreprocessor: cannot read X of shape {x.shape} as images. Pass image file paths, N x H x W, "
        "N x H x W x C or N x C x H x W with C in 1, 3, 4, or N x D flattened images.")


def _open(path: str | os.PathLike) -> Image.Image:
    from ._datasets import open_image

    try:
        with open_image(path) as img:  # within PIL's pixel limit, before decoding
            img.load()
            return upright(img)
    except torchrig.InputError as exc:
        raise torchrig.InputError(f"ImagePreprocessor: {exc} Delete or replace the file, or leave it out of X.") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # UnidentifiedImageError is an OSError
        raise torchrig.InputError(f"ImagePreprocessor: cannot read image {str(path)!r}: {exc}. "
                          "Delete or replace the file, or leave it out of X.") from exc
