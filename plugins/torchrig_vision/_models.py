"""Models: a small CNN for small images, and every torchvision classification architecture."""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torchvision
from torch import nn

import torchrig

from ._plugin import plugin


class ChannelsLast(nn.Module):
    """Run a CNN in channels_last memory format (faster convolutions on recent GPUs).

    The weights are converted once; each input is converted on the fly.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


def _finish(model: nn.Module, channels_last: bool) -> nn.Module:
    return ChannelsLast(model) if channels_last else model


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks (widths w, 2w, 4w; two poolings), global pooling, linear head."""

    def __init__(self, num_classes: int, in_channels: int, width: int, dropout: float) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(in_channels, width), *block(width, width), nn.MaxPool2d(2),
            *block(width, 2 * width), *block(2 * width, 2 * width), nn.MaxPool2d(2),
            *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@plugin.model
def small_cnn(*, num_classes: int = 10, in_channels: int = 3, width: int = 32, dropout: float = 0.2,
              channels_last: bool = False) -> nn.Module:
    """A small CNN for small images (8x8 to 64x64), ~0.3M parameters at width 32.

    Args:
        num_classes: outputs (filled in from the dataset by recipes).
        in_channels: input channels (filled in from the dataset by recipes).
        width: channels of the first block; later blocks use 2x and 4x.
        dropout: before the linear head.
        channels_last: convert to channels_last memory format (for CUDA).
    """
    return _finish(SmallCNN(num_classes, in_channels, width, dropout), channels_last)


def adapt_in_channels(model: nn.Module, in_channels: int) -> nn.Module:
    """Replace the first 3-channel convolution with one taking ``in_channels``."""
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                conv = nn.Conv2d(in_channels, child.out_channels, child.kernel_size, child.stride, child.padding,
                                 child.dilation, child.groups if child.groups == 1 else in_channels,
                                 child.bias is not None, child.padding_mode)
                setattr(parent, child_name, conv)
                return model
    raise torchrig.TorchrigError(f"{type(model).__name__} has no 3-channel convolution to adapt to "
                                 f"in_channels={in_channels}.")


# Architectures whose auxiliary heads return tuples in training mode; turned off by default.
_AUX = {"googlenet", "inception_v3"}


def _torchvision_builder(arch: str) -> Any:
    tv_builder = torchvision.models.get_model_builder(arch)

    def build(*, num_classes: int = 1000, in_channels: int = 3, channels_last: bool = False, **kwargs: Any) -> nn.Module:
        if arch in _AUX:
            kwargs.setdefault("aux_logits", False)
            kwargs.setdefault("init_weights", True)
        try:
            model = tv_builder(weights=None, num_classes=num_classes, **kwargs)  # nothing downloads
        except TypeError as exc:
            raise torchrig.TorchrigError(f"vision/{arch}: {exc}. See `torchrig info vision/{arch}`.") from exc
        if in_channels != 3:
            model = adapt_in_channels(model, in_channels)
        return _finish(model, channels_last)

    build.__name__ = arch
    summary = (inspect.getdoc(tv_builder) or "").split("\n\n")[0]
    build.__doc__ = (f"torchvision.models.{arch}, randomly initialised (weights=None: nothing downloads).\n\n"
                     f"{summary}\n\nArgs:\n    num_classes: outputs.\n    in_channels: input channels (the first "
                     "convolution is replaced when not 3).\n    channels_last: channels_last memory format.\n"
                     f"    **kwargs: passed to torchvision.models.{arch}.")
    return build


def _register_torchvision() -> None:
    for arch in torchvision.models.list_models(module=torchvision.models):
        plugin.model(_torchvision_builder(arch), name=arch)


_register_torchvision()
