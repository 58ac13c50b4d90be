"""scikit-learn front end for audio: :class:`LogMel` turns waveforms or sound files into the
log-mel features ``audio/mel_cnn`` computes in-model, as :class:`~torchrig.sklearn.ModelInputs`.

Example::

    from sklearn.pipeline import make_pipeline
    from torchrig.sklearn import RigClassifier
    from torchrig_audio.sklearn import LogMel

    pipe = make_pipeline(LogMel(duration=1.0), RigClassifier(module="audio/mel_cnn", max_epochs=10))
    pipe.fit(["clips/yes1.wav", "clips/no1.flac", ...], ["yes", "no", ...])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_array

import torchrig
from torchrig.sklearn import ModelInputs

from ._features import FrontEnd
from ._io import Unreadable, check_seconds, crop, read_clip

__all__ = ["LogMel"]

_BATCH = 256  # clips per STFT call (~0.2 MB of complex spectrogram per 1 s clip)


class LogMel(TransformerMixin, BaseEstimator):
    """Clips -> normalised log-mel spectrograms, exactly as ``audio/mel_cnn``'s front end makes
    them in eval mode (same :class:`~torchrig_audio._features.FrontEnd`, no SpecAugment).

    Stateless: ``transform`` works without ``fit``; ``fit`` only checks its input. Every clip is
    centre-cropped or zero-padded (at the end) to ``duration`` seconds, so clips of any length,
    even a few samples, give features of one shape that stack.

    Args:
        sample_rate: rate (Hz) of array clips; sound files are resampled to it.
        duration: seconds every clip is cropped or padded to.
        n_mels: mel bands.
        n_fft, hop_length: STFT sizes in samples (default: 25 ms window, 10 ms hop).
        norm: per-clip normalisation: "utterance", "bins" or None (log-mel in dB).

    ``X`` is a 2-D array ``(clips, samples)`` of mono waveforms at ``sample_rate``; or a list
    of 1-D waveforms of any lengths; or a list of sound-file paths (any format the plugin's
    soundfile reader decodes), mixed down to mono and resampled. A list may mix both. Files pass
    the plugin's checks: a corrupt, truncated, empty or silent one raises an error naming it.

    Example::

        X = LogMel(duration=1.0).fit_transform(waveforms)   # (N, 1, 64, 101) float32
        model = torchrig.get_model("audio/mel_cnn", num_classes=10, **X.model_kwargs)
    """

    def __init__(self, sample_rate: int = 16000, *, duration: float = 1.0, n_mels: int = 64,
                 n_fft: int | None = None, hop_length: int | None = None, norm: str | None = "utterance") -> None:
        self.sample_rate = sample_rate
        self.duration = duration
        self.n_mels = n_mels
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.norm = norm

    def fit(self, X: Any, y: Any = None) -> LogMel:
        """Check the parameters and ``X`` (files are decoded only by ``transform``); learn nothing.

        Args:
            X: clips, as the class describes.
            y: ignored.

        Returns:
            self, with ``n_features_in_`` (samples per clip) when ``X`` is a 2-D array.
        """
        self._frontend()
        _, width = _clips(X)
        if width is not None:
            self.n_features_in_ = width
        elif hasattr(self, "n_features_in_"):
            del self.n_features_in_  # a refit on a list must not keep the width of an earlier array
        return self

    def transform(self, X: Any) -> ModelInputs:
        """Log-mel features of every clip.

        Args:
            X: clips, as the class describes (any clip length; ``fit`` need not be called).

        Returns:
            ``(N, 1, n_mels, frames)`` float32 :class:`~torchrig.sklearn.ModelInputs` whose
            ``model_kwargs`` make ``audio/mel_cnn`` (or ``audio/conformer``) take these features
            as they are: ``features="precomputed"``, ``norm=None`` (already normalised here).

        Raises:
            InputError: (a ValueError) ``X`` is not 2-D, or a clip is empty, multi-channel or non-finite.
            InputError: a file cannot be read (the message names it). TorchrigError: a bad parameter.
        """
        frontend = self._frontend()
        items, _ = _clips(X)
        out = []
        for start in range(0, len(items), _BATCH):  # a batch of waveforms at a time bounds memory
            waves = torch.stack([self._waveform(item) for item in items[start:start + _BATCH]])
            with torch.no_grad():
                out.append(frontend(waves)[0])
        return ModelInputs(torch.cat(out).numpy(), features="precomputed", n_mels=int(self.n_mels), in_channels=1,
                           sample_rate=int(self.sample_rate), norm=None)

    def _waveform(self, item: np.ndarray | Path) -> torch.Tensor:
        rate, duration = int(self.sample_rate), float(self.duration)
        if not isinstance(item, Path):
            return crop(torch.tensor(item), rate, duration=duration)
        try:
            return read_clip(item, sample_rate=rate, channels=1, duration=duration)[0]
        except Unreadable as exc:
            raise torchrig.InputError(f"LogMel: cannot use audio file {str(item)!r}: {exc}. Delete or replace it, "
                                      "or leave it out of X.") from exc

    def _frontend(self) -> FrontEnd:
        for name in ("sample_rate", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise torchrig.TorchrigError(f"LogMel: {name} must be a whole number >= 1, got {value!r}.")
        if self.duration is None:
            raise torchrig.TorchrigError("LogMel: duration must be seconds (every clip is cropped or padded to it so "
                                         "the features stack), got None.")
        check_seconds("duration", self.duration, "LogMel")
        return FrontEnd(features="log_mel", sample_rate=int(self.sample_rate), n_mels=int(self.n_mels),
                        n_fft=self.n_fft, hop_length=self.hop_length, norm=self.norm, spec_augment=False,
                        owner="LogMel").eval()

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.requires_fit = False  # stateless: nothing is learned
        tags.transformer_tags.preserves_dtype = ["float32"]  # features are float32 whatever comes in
        return tags


def _clips(X: Any) -> tuple[list[np.ndarray | Path], int | None]:
    """Checked clips (1-D float32 arrays or file paths) and the samples per clip of a 2-D array."""
    if isinstance(X, (str, os.PathLike)):
        raise torchrig.InputError(f"LogMel: X is one path ({str(X)!r}); pass a list of paths, e.g. [{str(X)!r}].")
    if getattr(X, "ndim", 2) > 2:
        raise torchrig.InputError(f"LogMel: X has shape {X.shape}; it takes mono clips (clips, samples). Mix channels down "
                         "first, e.g. X.mean(axis=1) for (clips, channels, samples).")
    if isinstance(X, np.ndarray) and X.ndim == 1 and X.dtype.kind in "biuf":
        raise torchrig.InputError(f"LogMel: X is a 1-D array of {len(X)} numbers. Reshape your data: one waveform as X[None] "
                         "(or [X]), several as a 2-D array (clips, samples) or a list of 1-D waveforms.")
    if not isinstance(X, (list, tuple)) and getattr(X, "ndim", None) != 1:
        # 2-D arrays (or array-likes, sparse): sklearn's checks and messages for shape, NaN, dtype
        X = check_array(X, dtype=np.float32, estimator="LogMel")
        return list(X), X.shape[1]
    if len(X) == 0:
        raise torchrig.InputError("LogMel: X holds no clips; pass at least one waveform or file path.")
    return [_clip(x, f"X[{i}]") for i, x in enumerate(X)], None


def _clip(x: Any, where: str) -> np.ndarray | Path:
    if isinstance(x, (str, os.PathLike)):
        return Path(x)
    w = np.asarray(x)
    if w.ndim != 1:
        raise torchrig.InputError(f"LogMel: {where} has shape {w.shape}; each clip must be a 1-D mono waveform or a file path "
                         "(mix channels down first, e.g. x.mean(axis=0); a 2-D X must be (clips, samples)).")
    if w.size == 0:
        raise torchrig.InputError(f"LogMel: {where} is empty (0 samples); leave it out of X.")
    if w.dtype.kind not in "biuf":
        raise torchrig.InputError(f"LogMel: {where} has dtype {w.dtype}; a waveform holds real numbers.")
    w = w.astype(np.float32)
    if not np.isfinite(w).all():
        raise torchrig.InputError(f"LogMel: {where} holds NaN or infinite samples; clean or drop it.")
    return w
