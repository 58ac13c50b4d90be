"""Features as ``nn.Module``s, shared by the per-sample transforms and the models' front ends.

A model that holds its front end (:class:`FrontEnd`) computes features from a padded batch of
waveforms on its own device, in one call per batch, with SpecAugment only in training mode. The
same modules also run per clip (``audio/log_mel``, ``audio/mfcc``): a feature computed either way
is the same, up to the few frames at the end of a clip that was padded in its batch.
"""

from __future__ import annotations

import math

import torch
import torchaudio
from torch import nn

import torchrig

__all__ = ["MFCC", "NORMS", "FrontEnd", "LogMel", "SpecAugment", "normalize", "stft_sizes", "valid_frames"]

NORMS = ("utterance", "bins", None)
FEATURES = ("log_mel", "mfcc", "precomputed")


def stft_sizes(sample_rate: int, n_fft: int | None, win_length: int | None,
               hop_length: int | None) -> tuple[int, int, int]:
    """``(n_fft, win_length, hop_length)``: 25 ms windows every 10 ms unless given, the FFT size
    the next power of two of the window."""
    win = int(win_length or round(0.025 * sample_rate))
    hop = int(hop_length or round(0.010 * sample_rate))
    fft = int(n_fft or 2 ** math.ceil(math.log2(win)))
    if fft < win:
        raise torchrig.TorchrigError(f"n_fft ({fft}) must be at least win_length ({win}).")
    return fft, win, hop


def at_least(waveform: torch.Tensor, samples: int) -> torch.Tensor:
    """Zero-pad clips shorter than one FFT window: the centred STFT's reflection padding needs
    more than half a window, so a 10 ms clip would otherwise fail."""
    short = samples - waveform.shape[-1]
    return torch.nn.functional.pad(waveform, (0, short)) if short > 0 else waveform


class LogMel(nn.Module):
    """Log-mel spectrogram in dB: ``(..., channels, samples)`` -> ``(..., channels, n_mels, frames)``.

    torchaudio's ``MelSpectrogram`` (power) then ``AmplitudeToDB`` (floor ``top_db`` below each
    clip's peak). Frames are centred: a clip of ``n`` samples has ``n // hop_length + 1`` frames.

    Args:
        sample_rate: of the input (Hz).
        n_mels: mel bands.
        n_fft, win_length, hop_length: STFT sizes in samples (default: 25 ms windows, 10 ms hop).
        f_min, f_max: frequency range of the mel bands (Hz; f_max None: half the sample rate).
        top_db: dynamic range kept below each clip's peak (None: all).
    """

    def __init__(self, sample_rate: int = 16000, *, n_mels: int = 64, n_fft: int | None = None,
                 win_length: int | None = None, hop_length: int | None = None, f_min: float = 20.0,
                 f_max: float | None = None, top_db: float | None = 80.0) -> None:
        super().__init__()
        n_fft, win_length, hop_length = stft_sizes(sample_rate, n_fft, win_length, hop_length)
        self.hop_length, self.n_fft, self.rows = hop_length, n_fft, n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length, f_min=f_min, f_max=f_max,
            n_mels=n_mels, power=2.0)
        self.to_db = torchaudio.transforms.AmplitudeToDB("power", top_db=top_db)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.to_db(self.mel(at_least(waveform, self.n_fft)))


class MFCC(nn.Module):
    """MFCCs (torchaudio's ``MFCC`` on a log-mel spectrogram): ``(..., channels, samples)`` ->
    ``(..., channels, n_mfcc, frames)``.

    Args:
        sample_rate: of the input (Hz).
        n_mfcc: coefficients kept.
        n_mels: mel bands they are computed from.
        n_fft, win_length, hop_length, f_min, f_max: as in :class:`LogMel`.
    """

    def __init__(self, sample_rate: int = 16000, *, n_mfcc: int = 40, n_mels: int = 64, n_fft: int | None = None,
                 win_length: int | None = None, hop_length: int | None = None, f_min: float = 20.0,
                 f_max: float | None = None) -> None:
        super().__init__()
        if n_mfcc > n_mels:
            raise torchrig.TorchrigError(f"n_mfcc ({n_mfcc}) cannot exceed n_mels ({n_mels}).")
        n_fft, win_length, hop_length = stft_sizes(sample_rate, n_fft, win_length, hop_length)
        self.hop_length, self.n_fft, self.rows = hop_length, n_fft, n_mfcc
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate, n_mfcc=n_mfcc, melkwargs={"n_fft": n_fft, "win_length": win_length, "hop_length": hop_length,
                                                   "f_min": f_min, "f_max": f_max, "n_mels": n_mels})

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.mfcc(at_least(waveform, self.n_fft))


def valid_frames(lengths: torch.Tensor | None, frames: int, device: torch.device) -> torch.Tensor | None:
    """``(batch, frames)`` True where a frame is part of its clip, or None when none is padded."""
    if lengths is None:
        return None
    return torch.arange(frames, device=device)[None, :] < lengths.to(device)[:, None]


def normalize(features: torch.Tensor, lengths: torch.Tensor | None = None, *, mode: str | None = "utterance",
              eps: float = 1e-5) -> torch.Tensor:
    """Per-clip normalisation of ``(batch, channels, bins, frames)`` features, ignoring padding.

    Args:
        features: the batch.
        lengths: each clip's frames (None: no padding).
        mode: "utterance": zero mean, unit variance over all of a clip's bins and frames (keeps
            the spectral shape, removes loudness); "bins": per bin over the clip's frames
            (cepstral mean and variance normalisation); None: unchanged.

    Padded frames come out as 0.
    """
    if mode is None:
        return features
    mask = valid_frames(lengths, features.shape[-1], features.device)
    weight = (torch.ones_like(features[:, :1, :1, :]) if mask is None
              else mask[:, None, None, :].to(features.dtype))
    dims = (1, 2, 3) if mode == "utterance" else (3,)
    rows = features.shape[1] * features.shape[2] if mode == "utterance" else 1
    count = weight.sum(3, keepdim=True).clamp_min(1) * rows
    mean = (features * weight).sum(dims, keepdim=True) / count
    var = (((features - mean) * weight) ** 2).sum(dims, keepdim=True) / count
    return (features - mean) / (var + eps).sqrt() * weight


class SpecAugment(nn.Module):
    """SpecAugment's time and frequency masking (Park et al., 2019) for ``(..., bins, frames)``.

    torchaudio's masks (``mask_along_axis_iid``: each clip and channel its own), filled with 0,
    the mean of normalised features. Active whenever called: a model calls it only in training.

    Args:
        freq_mask: widest frequency mask (bins).
        time_mask: widest time mask (frames).
        n_freq_masks, n_time_masks: masks of each kind per clip.
        time_mask_p: no time mask is wider than this share of the frames.
    """

    def __init__(self, *, freq_mask: int = 8, time_mask: int = 10, n_freq_masks: int = 2, n_time_masks: int = 2,
                 time_mask_p: float = 0.2) -> None:
        super().__init__()
        self.freq_mask, self.time_mask = int(freq_mask), int(time_mask)
        self.n_freq_masks, self.n_time_masks, self.time_mask_p = int(n_freq_masks), int(n_time_masks), float(time_mask_p)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        squeeze = features.dim() == 2
        x = features[None] if squeeze else features
        for _ in range(self.n_freq_masks):
            x = torchaudio.functional.mask_along_axis_iid(x, self.freq_mask, 0.0, x.dim() - 2)
        for _ in range(self.n_time_masks):
            x = torchaudio.functional.mask_along_axis_iid(x, self.time_mask, 0.0, x.dim() - 1, p=self.time_mask_p)
        return x[0] if squeeze else x

    def extra_repr(self) -> str:
        return (f"freq_mask={self.freq_mask}, time_mask={self.time_mask}, n_freq_masks={self.n_freq_masks}, "
                f"n_time_masks={self.n_time_masks}, time_mask_p={self.time_mask_p}")


class FrontEnd(nn.Module):
    """Waveforms -> normalised features, batched on the model's device; SpecAugment in training.

    Input ``(batch, channels, samples)`` waveforms (``(batch, samples)`` is taken as mono) with
    optional ``lengths`` in samples; or, with ``features="precomputed"``, ``(batch, channels, bins,
    frames)`` features (from ``audio/log_mel`` or ``audio/mfcc`` in the dataset) with lengths in
    frames. Output ``(batch, channels, bins, frames)`` and the lengths in frames (or None).

    The STFT runs in float32 even under autocast (half precision loses the quiet bands).
    """

    def __init__(self, *, features: str = "log_mel", sample_rate: int = 16000, n_mels: int = 64, n_mfcc: int = 40,
                 n_fft: int | None = None, hop_length: int | None = None, norm: str | None = "utterance",
                 spec_augment: bool = True, freq_mask: int = 8, time_mask: int = 10, n_freq_masks: int = 2,
                 n_time_masks: int = 2, owner: str = "audio model") -> None:
        super().__init__()
        if features not in FEATURES:
            raise torchrig.TorchrigError(f"{owner}: features must be one of {', '.join(FEATURES)}, got {features!r}.")
        if norm not in NORMS:
            raise torchrig.TorchrigError(f"{owner}: norm must be 'utterance', 'bins' or null, got {norm!r}.")
        self.features, self.norm = features, norm
        self.extract: nn.Module | None
        if features == "log_mel":
            self.extract = LogMel(sample_rate, n_mels=n_mels, n_fft=n_fft, hop_length=hop_length)
        elif features == "mfcc":
            self.extract = MFCC(sample_rate, n_mfcc=n_mfcc, n_mels=n_mels, n_fft=n_fft, hop_length=hop_length)
        else:
            self.extract = None
        if self.extract is not None:
            # The STFT window and mel filters follow from the settings: keep them out of the
            # weights file, so that only what training learned is saved.
            for module in self.extract.modules():
                for name, buffer in list(module.named_buffers(recurse=False)):
                    module.register_buffer(name, buffer, persistent=False)
        self.rows = self.extract.rows if self.extract is not None else n_mels
        self.augment = (SpecAugment(freq_mask=freq_mask, time_mask=time_mask, n_freq_masks=n_freq_masks,
                                    n_time_masks=n_time_masks) if spec_augment else None)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.extract is not None:
            if x.dim() == 2:
                x = x[:, None, :]
            with torch.autocast(x.device.type, enabled=False):
                x = self.extract(x.float())
            if lengths is not None:
                lengths = (lengths.to(x.device) // self.extract.hop_length + 1).clamp(1, x.shape[-1])
        elif x.dim() == 3:
            x = x[:, None]
        if lengths is not None:
            lengths = lengths.to(x.device).clamp(1, x.shape[-1])
        x = normalize(x, lengths, mode=self.norm)
        if self.training and self.augment is not None:
            x = self.augment(x)
        return x, lengths
