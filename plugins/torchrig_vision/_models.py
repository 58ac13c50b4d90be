"""Models: a small CNN for small images, and every torchvision classification architecture."""

from __future__ import annotations

import difflib
import inspect
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

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


_NORMS = ("batch", "group", "none")


class SmallCNN(nn.Module):
    """Three conv-norm-ReLU blocks (widths w, 2w, 4w; two poolings), global pooling, linear head."""

    def __init__(self, num_classes: int, in_channels: int, width: int, dropout: float, norm: str = "batch") -> None:
        super().__init__()
        if norm not in _NORMS:
            raise torchrig.TorchrigError(f"vision/small_cnn: norm={norm!r} is not one of {', '.join(_NORMS)}.")

        def block(cin: int, cout: int) -> list[nn.Module]:
            # GroupNorm and no norm do not depend on the batch: results are the same for any
            # batch size or number of DDP processes (BatchNorm sees each rank's batch only).
            layer = {"batch": lambda: nn.BatchNorm2d(cout), "group": lambda: nn.GroupNorm(min(8, cout), cout),
                     "none": lambda: nn.Identity()}[norm]()
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=norm == "none"), layer, nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(in_channels, width), *block(width, width), nn.MaxPool2d(2),
            *block(width, 2 * width), *block(2 * width, 2 * width), nn.MaxPool2d(2),
            *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * width, num_classes))

    torchrig_head = "head"  # what fine-tuning trains first and a new num_classes replaces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@plugin.model
def small_cnn(*, num_classes: int = 10, in_channels: int = 3, width: int = 32, dropout: float = 0.2,
              norm: str = "batch", channels_last: bool = False) -> nn.Module:
    """A small CNN for small images (8x8 to 64x64), ~0.3M parameters at width 32.

    Args:
        num_classes: outputs (filled in from the dataset by recipes).
        in_channels: input channels (filled in from the dataset by recipes).
        width: channels of the first block; later blocks use 2x and 4x.
        dropout: before the linear head.
        norm: ``"batch"`` (BatchNorm), ``"group"`` (GroupNorm, independent of the batch size and of
            the number of DDP processes) or ``"none"``.
        channels_last: convert to channels_last memory format (for CUDA).
    """
    return _finish(SmallCNN(num_classes, in_channels, width, dropout, norm), channels_last)


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


# torchvision's classifier heads, by attribute name (fc: ResNet, RegNet, GoogLeNet, ShuffleNet;
# classifier: VGG, DenseNet, MobileNet, EfficientNet, ConvNeXt, MaxViT; heads: ViT; head: Swin).
_HEADS = ("fc", "classifier", "heads", "head")


def _torchvision_builder(arch: str) -> Any:
    tv_builder = torchvision.models.get_model_builder(arch)

    def build(*, num_classes: int = 1000, in_channels: int = 3, channels_last: bool = False, **kwargs: Any) -> nn.Module:
        if arch in _AUX:
            kwargs.setdefault("aux_logits", False)
            kwargs.setdefault("init_weights", True)
        try:
            # Built randomly initialised: pretrained weights go through core's one loader
            # (model.weights), which fits them to num_classes and in_channels.
            model = tv_builder(weights=None, num_classes=num_classes, **kwargs)
        except TypeError as exc:
            raise torchrig.TorchrigError(f"vision/{arch}: {exc}. See `torchrig info vision/{arch}`.") from exc
        model.torchrig_head = next(h for h in _HEADS if isinstance(getattr(model, h, None), nn.Module))
        if in_channels != 3:
            model = adapt_in_channels(model, in_channels)
        return _finish(model, channels_last)

    build.__name__ = arch
    build.named_weights = lambda name: TorchvisionWeights.find(arch, name)  # type: ignore[attr-defined]
    summary = (inspect.getdoc(tv_builder) or "").split("\n\n")[0]
    names = ", ".join(["DEFAULT", *TorchvisionWeights.names(arch)]) or "none"
    build.__doc__ = (f"torchvision.models.{arch}: random weights, or pretrained ones with weights=NAME.\n\n"
                     f"{summary}\n\nArgs:\n    num_classes: outputs (a new head when it differs from the "
                     "weights').\n    in_channels: input channels (the first convolution is adapted from the "
                     "pretrained filters when not 3).\n    channels_last: channels_last memory format.\n"
                     f"    **kwargs: passed to torchvision.models.{arch}.\n\nNamed weights (torchvision's, fetched "
                     f"into $TORCH_HOME/hub/checkpoints): {names}.")
    return build


class TorchvisionWeights:
    """One of torchvision's named weights, as core's loader asks for them (``NamedWeights``):
    torchvision's own code downloads the file into its own cache; offline, one clear error."""

    def __init__(self, weights: Any) -> None:
        self.weights = weights
        self.label = f"{type(weights).__name__}.{weights.name}"
        self.url = weights.url
        self.path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)
        preset = weights.transforms()
        crop, resize = preset.crop_size[0], preset.resize_size[0]
        common = {"size": crop, "mean": list(preset.mean), "std": list(preset.std),
                  "interpolation": preset.interpolation.value}
        self.transform_kwargs = {"train": common, "eval": {**common, "crop_ratio": crop / resize}}

    @staticmethod
    def names(arch: str) -> list[str]:
        try:
            enum = torchvision.models.get_model_weights(arch)
        except (ValueError, KeyError):
            return []
        return [w for w in enum.__members__ if w != "DEFAULT"]

    @classmethod
    def find(cls, arch: str, name: str) -> TorchvisionWeights:
        enum = torchvision.models.get_model_weights(arch)
        key = name.split(".")[-1] if name.startswith(f"{enum.__name__}.") else name
        if key not in enum.__members__:
            choices = list(enum.__members__) + [f"{enum.__name__}.{m}" for m in enum.__members__]
            close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise torchrig.TorchrigError(
                f"vision/{arch}: unknown weights {name!r}.{hint} torchvision has: "
                f"{', '.join(enum.__members__)} (or a weights file, or a torchrig run dir).")
        return cls(enum[key])

    def load(self) -> dict[str, torch.Tensor]:
        """torchvision's own loader: from its cache, else downloaded into it (core reports a
        failed download with the file, the folder and the URL)."""
        return self.weights.get_state_dict(progress=True, check_hash=True)


def _register_torchvision() -> None:
    for arch in torchvision.models.list_models(module=torchvision.models):
        plugin.model(_torchvision_builder(arch), name=arch)


_register_torchvision()
