"""Transforms applied to one clip at a time in the dataset: features (log-mel, MFCC),
normalisation, SpecAugment, and waveform augmentation (gain, time shift, noise at an SNR).

Inputs are ``(channels, samples)`` waveforms as the audio datasets give them, or, after
``audio/log_mel``/``audio/mfcc``, ``(channels, bins, frames)`` features. Randomness comes from
torch's generator, which torchrig seeds (per DataLoader worker too).

Per-clip features are the slower way on the whole (see ``benchmarks/audio_features.py``): the
models' front ends compute the same features a batch at a time on the training device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torchaudio
from torch import nn

import torchrig

from ._features import NORMS, LogMel, MFCC, SpecAugment, normalize
from ._plugin import plugin

__all__ = ["AddNoise", "Compose", "Features", "Normalize", "RandomGain", "TimeShift"]


class Features(nn.Module):
    """Apply a feature module to one clip ``(channels, samples)`` without tracking gradients."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.module(torch.as_tensor(waveform, dtype=torch.float32))


@plugin.transform
def log_mel(*, sample_rate: int = 16000, n_mels: int = 64, n_fft: int | None = None, hop_length: int | None = None,
            f_min: float = 20.0, f_max: float | None = None, top_db: float | None = 80.0) -> nn.Module:
    """Log-mel spectrogram of one clip: ``(channels, samples)`` -> ``(channels, n_mels, frames)``, in dB.

    torchaudio's MelSpectrogram and AmplitudeToDB; the same computation as the ``features:
    log_mel`` front end of ``audio/mel_cnn`` and ``audio/conformer``, which is faster (batched).
    Use it with those models' ``features: precomputed``.

    Args:
        sample_rate: of the clips (Hz): the dataset's sample_rate.
        n_mels: mel bands.
        n_fft, hop_length: STFT sizes in samples (default: 25 ms window, 10 ms hop).
        f_min, f_max: frequency range (Hz).
        top_db: dynamic range kept below the clip's peak.
    """
    return Features(LogMel(sample_rate, n_mels=n_mels, n_fft=n_fft, hop_length=hop_length, f_min=f_min,
                           f_max=f_max, top_db=top_db))


@plugin.transform
def mfcc(*, sample_rate: int = 16000, n_mfcc: int = 40, n_mels: int = 64, n_fft: int | None = None,
         hop_length: int | None = None, f_min: float = 20.0, f_max: float | None = None) -> nn.Module:
    """MFCCs of one clip (torchaudio's MFCC): ``(channels, samples)`` -> ``(channels, n_mfcc, frames)``.

    Args:
        sample_rate: of the clips (Hz).
        n_mfcc: coefficients; a model with ``features: precomputed`` needs ``n_mels`` = this.
        n_mels: mel bands they come from.
        n_fft, hop_length, f_min, f_max: as in ``audio/log_mel``.
    """
    return Features(MFCC(sample_rate, n_mfcc=n_mfcc, n_mels=n_mels, n_fft=n_fft, hop_length=hop_length, f_min=f_min,
                         f_max=f_max))


class Normalize(nn.Module):
    """Per-clip normalisation: features ``(channels, bins, frames)`` as ``mode`` says; waveforms
    ``(channels, samples)`` to zero mean and unit variance."""

    def __init__(self, mode: str | None = "utterance") -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.dim() == 2:
            return normalize(x[None, :, None, :], mode="utterance")[0, :, 0, :]
        return normalize(x[None], mode=self.mode)[0]


@plugin.transform(name="normalize")
def normalize_(*, mode: str | None = "utterance") -> nn.Module:
    """Per-clip normalisation (the models' front ends already do it for the features they compute).

    Args:
        mode: for features: "utterance" (zero mean, unit variance over the whole clip), "bins"
            (per bin over time: cepstral mean and variance normalisation) or null. Waveforms
            are brought to zero mean and unit variance.
    """
    if mode not in NORMS:
        raise torchrig.TorchrigError(f"audio/normalize: mode must be 'utterance', 'bins' or null, got {mode!r}.")
    return Normalize(mode)


@plugin.transform
def spec_augment(*, freq_mask: int = 8, time_mask: int = 10, n_freq_masks: int = 2, n_time_masks: int = 2,
                 time_mask_p: float = 0.2) -> nn.Module:
    """SpecAugment on one clip's features ``(channels, bins, frames)``: time and frequency masks
    filled with 0 (use after ``audio/normalize``). Train transform only. The models with a front
    end apply it themselves, batched, in training.

    Args:
        freq_mask: widest frequency mask (bins).
        time_mask: widest time mask (frames).
        n_freq_masks, n_time_masks: masks of each kind.
        time_mask_p: no time mask covers more than this share of the frames.
    """
    return SpecAugment(freq_mask=freq_mask, time_mask=time_mask, n_freq_masks=n_freq_masks,
                       n_time_masks=n_time_masks, time_mask_p=time_mask_p)


def _chance(p: float) -> bool:
    return p >= 1 or (p > 0 and float(torch.rand(())) < p)


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def _range(owner: str, name: str, value: Any) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), float(value)
    if isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        low, high = float(value[0]), float(value[1])
        if low <= high:
            return low, high
    raise torchrig.TorchrigError(f"{owner}: {name} must be a number or [low, high] with low <= high, got {value!r}.")


def _probability(owner: str, p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise torchrig.TorchrigError(f"{owner}: p must be a probability in [0, 1], got {p!r}.")
    return float(p)


class RandomGain(nn.Module):
    """Multiply a waveform by a random gain, uniform in dB over ``gain_db``, with probability ``p``."""

    def __init__(self, gain_db: tuple[float, float] = (-6.0, 6.0), p: float = 1.0) -> None:
        super().__init__()
        self.gain_db, self.p = gain_db, p

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if not _chance(self.p):
            return waveform
        return waveform * 10 ** (_uniform(*self.gain_db) / 20)


@plugin.transform
def random_gain(*, gain_db: Sequence[float] = (-6.0, 6.0), p: float = 1.0) -> nn.Module:
    """Random loudness: scale the waveform by a gain drawn uniformly (in dB) from ``gain_db``.

    Args:
        gain_db: [low, high] in dB.
        p: probability of applying it to a clip.
    """
    return RandomGain(_range("audio/random_gain", "gain_db", gain_db), _probability("audio/random_gain", p))


class TimeShift(nn.Module):
    """Shift a waveform by up to ``max_shift`` samples either way, filling with silence; the clip
    keeps its length (what moves out at one end is lost)."""

    def __init__(self, max_shift: int, p: float = 1.0) -> None:
        super().__init__()
        self.max_shift, self.p = int(max_shift), p

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        n = waveform.shape[-1]
        limit = min(self.max_shift, n - 1)
        if limit < 1 or not _chance(self.p):
            return waveform
        shift = int(torch.randint(-limit, limit + 1, ()))
        if shift == 0:
            return waveform
        out = torch.zeros_like(waveform)
        if shift > 0:
            out[..., shift:] = waveform[..., :n - shift]
        else:
            out[..., :n + shift] = waveform[..., -shift:]
        return out


@plugin.transform
def time_shift(*, max_shift: float = 0.1, sample_rate: int = 16000, p: float = 1.0) -> nn.Module:
    """Random time shift of the waveform by up to ``max_shift`` seconds either way, zero-filled.

    Args:
        max_shift: seconds.
        sample_rate: of the clips (Hz): the dataset's sample_rate.
        p: probability of applying it to a clip.
    """
    if isinstance(max_shift, bool) or not isinstance(max_shift, (int, float)) or max_shift < 0:
        raise torchrig.TorchrigError(f"audio/time_shift: max_shift must be seconds >= 0, got {max_shift!r}.")
    return TimeShift(round(max_shift * sample_rate), _probability("audio/time_shift", p))


class AddNoise(nn.Module):
    """Add white or pink noise at a signal-to-noise ratio drawn uniformly from ``snr_db``, with
    probability ``p`` (torchaudio.functional.add_noise)."""

    def __init__(self, snr_db: tuple[float, float] = (10.0, 40.0), p: float = 0.5, color: str = "white") -> None:
        super().__init__()
        self.snr_db, self.p, self.color = snr_db, p, color

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if not _chance(self.p):
            return waveform
        noise = torch.randn_like(waveform)
        if self.color == "pink":
            noise = _pink(noise)
        snr = torch.full(waveform.shape[:-1], _uniform(*self.snr_db), dtype=waveform.dtype)
        return torchaudio.functional.add_noise(waveform, noise, snr)


def _pink(white: torch.Tensor) -> torch.Tensor:
    """White noise shaped to a 1/f power spectrum (pink): louder in the low bands, like most rooms."""
    spectrum = torch.fft.rfft(white)
    f = torch.arange(spectrum.shape[-1], dtype=white.dtype).clamp_min(1)
    return torch.fft.irfft(spectrum / f.sqrt(), n=white.shape[-1])


@plugin.transform
def add_noise(*, snr_db: Sequence[float] = (10.0, 40.0), p: float = 0.5, color: str = "white") -> nn.Module:
    """Additive noise at a chosen signal-to-noise ratio.

    Args:
        snr_db: [low, high] in dB (or one number): lower is noisier.
        p: probability of adding noise to a clip.
        color: "white" or "pink".
    """
    if color not in ("white", "pink"):
        raise torchrig.TorchrigError(f"audio/add_noise: color must be 'white' or 'pink', got {color!r}.")
    return AddNoise(_range("audio/add_noise", "snr_db", snr_db), _probability("audio/add_noise", p), color)


class Compose(nn.Module):
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        super().__init__()
        self.transforms = list(transforms)

    def forward(self, x: Any) -> Any:
        for t in self.transforms:
            x = t(x)
        return x

    def extra_repr(self) -> str:
        return "\n".join(repr(t) for t in self.transforms)


@plugin.transform
def compose(*, transforms: Sequence[Any]) -> nn.Module:
    """Chain transforms given as components: ``[{name: audio/random_gain}, {name: audio/log_mel}]``."""
    return Compose([torchrig.build_component(item, "transform", owner="audio/compose") for item in transforms])


@plugin.transform
def augment(*, sample_rate: int = 16000, gain_db: Sequence[float] | None = (-6.0, 6.0), max_shift: float | None = 0.1,
            snr_db: Sequence[float] | None = (10.0, 40.0), noise_p: float = 0.5, noise_color: str = "white") -> nn.Module:
    """Waveform augmentation for training, in one component: random gain, time shift and noise.

    Leave any of them out with null. SpecAugment belongs to the model (``spec_augment``).

    Args:
        sample_rate: of the clips (Hz): the dataset's sample_rate.
        gain_db: random gain range (dB), or null.
        max_shift: random time shift (seconds), or null.
        snr_db: noise SNR range (dB), or null.
        noise_p: share of clips that get noise.
        noise_color: "white" or "pink".
    """
    steps: list[nn.Module] = []
    if gain_db is not None:
        steps.append(random_gain(gain_db=gain_db))
    if max_shift:
        steps.append(time_shift(max_shift=max_shift, sample_rate=sample_rate))
    if snr_db is not None and noise_p > 0:
        steps.append(add_noise(snr_db=snr_db, p=noise_p, color=noise_color))
    return Compose(steps)
