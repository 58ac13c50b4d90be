"""torchrig's audio plugin: sound-file datasets, torchaudio features and augmentation, models
(``audio/``).

Loaded through the ``torchrig.plugins`` entry point like any third-party plugin.
"""

from __future__ import annotations

from . import _folder, _hf, _models, _spoken_digits, _transforms, _wav2vec2  # noqa: F401  (each registers into `plugin`)
from ._plugin import plugin

__all__ = ["plugin"]
