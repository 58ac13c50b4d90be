"""torchrig's vision plugin: image datasets, torchvision v2 transforms and models (``vision/``).

Loaded through the ``torchrig.plugins`` entry point like any third-party plugin.
"""

from __future__ import annotations

from . import _datasets, _models, _transforms  # noqa: F401  (each registers into `plugin`)
from ._plugin import plugin

__all__ = ["plugin"]
