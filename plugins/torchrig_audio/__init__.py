"""torchrig's audio plugin: sound-file datasets, torchaudio features and augmentation, models
(``audio/``).

Loaded through the ``torchrig.plugins`` entry point like any third-party plugin.
"""

from __future__ import annotations

from . import _folder, _models, _spoken_digits, _transforms  # noqa: F401  (each registers into `plugin`)
from ._plugin import plugin

__all__ = ["plugin"]
