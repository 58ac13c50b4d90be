"""Models: a 2-D CNN on log-mel features, M5 on raw waveforms, and a small torchaudio Conformer.

Every model takes ``(waveforms, lengths)`` as the audio datasets batch them (``lengths`` may be
left out when no clip is padded) and returns ``(batch, num_classes)`` logits. Models on features
hold their front end (:class:`~torchrig_audio._features.FrontEnd`), so log-mel features are
computed on the training device, a batch at a time; nothing downloads weights.
"""

from __future__ import annotations

from typing import Any

import torch
import torchaudio
from torch import nn

import torchrig

from ._features import FrontEnd, valid_frames
from ._plugin import plugin

__all__ = ["M5", "ConformerClassifier", "MelCNN", "conformer", "m5", "mel_cnn"]


def masked_mean(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``(batch, channels, frames)`` over the frames of each clip, ignoring padding."""
    mask = valid_frames(lengths, x.shape[-1], x.device)
    if mask is None:
        return x.mean(-1)
    weight = mask[:, None, :].to(x.dtype)
    return (x * weight).sum(-1) / weight.sum(-1).clamp_min(1)


def _halve(lengths: torch.Tensor | None, times: int = 1) -> torch.Tensor | None:
    """Lengths after ``times`` poolings/convolutions that halve with ``ceil`` (never to 0)."""
    for _ in range(times if lengths is not None else 0):
        lengths = (lengths + 1) // 2  # type: ignore[operator]
    return lengths


class MelCNN(nn.Module):
    """Front end, then conv-BN-ReLU blocks (widths w, 2w, 4w, 4w; time and frequency halved after
    each of the first three), frequency mean, masked time mean and max, linear head."""

    torchrig_head = "head"  # fine-tuning trains it first; another num_classes replaces it

    def __init__(self, frontend: FrontEnd, *, num_classes: int, in_channels: int, width: int, dropout: float) -> None:
        super().__init__()
        self.frontend = frontend
        widths = [in_channels, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(widths[i], widths[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(widths[i + 1]),
                       nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * widths[-1], num_classes))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        features, frames = self.frontend(x, lengths)
        h = self.body(features).mean(2)  # (batch, channels, frames / 8)
        frames = _halve(frames, 3)
        mask = valid_frames(frames, h.shape[-1], h.device)
        peak = (h if mask is None else h.masked_fill(~mask[:, None, :], float("-inf"))).amax(-1)
        return self.head(torch.cat([masked_mean(h, frames), peak], 1))


class M5(nn.Module):
    """M5 (Dai et al., 2017, "Very deep convolutional neural networks for raw waveforms"): a
    strided 80-tap convolution, then three conv-BN-ReLU-pool blocks, masked mean, linear head.
    Each clip is scaled to unit RMS first, so loudness does not matter."""

    torchrig_head = "head"  # fine-tuning trains it first; another num_classes replaces it

    def __init__(self, *, num_classes: int, in_channels: int, width: int, stride: int, dropout: float) -> None:
        super().__init__()

        def block(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm1d(cout),
                    nn.ReLU(inplace=True), nn.MaxPool1d(4, ceil_mode=True)]

        self.stride = stride
        self.body = nn.Sequential(*block(in_channels, width, 80, stride), *block(width, width, 3),
                                  *block(width, 2 * width, 3), *block(2 * width, 2 * width, 3))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * width, num_classes))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() == 2:
            x = x[:, None, :]
        mask = valid_frames(lengths, x.shape[-1], x.device)
        weight = torch.ones_like(x[:, :1]) if mask is None else mask[:, None, :].to(x.dtype)
        rms = ((x ** 2 * weight).sum((1, 2), keepdim=True) / (weight.sum((1, 2), keepdim=True) * x.shape[1])).sqrt()
        h = self.body(x / (rms + 1e-5))
        if lengths is not None:
            lengths = lengths.to(h.device) // self.stride + 1  # the strided convolution
            for _ in range(4):  # four poolings by 4, ceil
                lengths = (lengths + 3) // 4
            lengths = lengths.clamp(1, h.shape[-1])
        return self.head(masked_mean(h, lengths))


class ConformerClassifier(nn.Module):
    """Front end, two stride-2 convolutions over time (frames / 4), torchaudio's Conformer
    (Gulati et al., 2020) with padding masked, masked mean over time, linear head."""

    torchrig_head = "head"  # fine-tuning trains it first; another num_classes replaces it

    def __init__(self, frontend: FrontEnd, *, num_classes: int, in_channels: int, d_model: int, num_layers: int,
                 num_heads: int, ffn_dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.frontend = frontend
        rows = in_channels * frontend.rows
        self.subsample = nn.Sequential(
            nn.Conv1d(rows, d_model, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv1d(d_model, d_model, 3, stride=2, padding=1), nn.GELU(),
        )
        self.conformer = torchaudio.models.Conformer(
            input_dim=d_model, num_heads=num_heads, ffn_dim=ffn_dim, num_layers=num_layers,
            depthwise_conv_kernel_size=kernel_size, dropout=dropout)
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Dropout(dropout), nn.Linear(d_model, num_classes))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        features, frames = self.frontend(x, lengths)
        b, c, f, t = features.shape
        h = self.subsample(features.reshape(b, c * f, t))  # (batch, d_model, frames / 4)
        frames = _halve(frames, 2)
        if frames is None:
            frames = torch.full((b,), h.shape[-1], dtype=torch.long, device=h.device)
        frames = frames.clamp(1, h.shape[-1])
        h = h[..., :int(frames.max())]  # the Conformer's padding mask spans max(lengths) frames
        h = h * valid_frames(frames, h.shape[-1], h.device)[:, None, :].to(h.dtype)  # zeros after each clip
        out, frames = self.conformer(h.transpose(1, 2), frames)
        return self.head(masked_mean(out.transpose(1, 2), frames))


def _frontend(owner: str, **kwargs: Any) -> FrontEnd:
    return FrontEnd(owner=owner, **kwargs)


def _check_sizes(owner: str, **sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise torchrig.TorchrigError(f"{owner}: {name} must be a whole number >= 1, got {value!r}.")


@plugin.model
def mel_cnn(*, num_classes: int = 10, in_channels: int = 1, sample_rate: int = 16000, features: str = "log_mel",
            n_mels: int = 64, n_mfcc: int = 40, n_fft: int | None = None, hop_length: int | None = None,
            norm: str | None = "utterance", spec_augment: bool = True, freq_mask: int = 8, time_mask: int = 10,
            n_freq_masks: int = 2, n_time_masks: int = 2, width: int = 32, dropout: float = 0.2) -> nn.Module:
    """A 2-D CNN on log-mel spectrograms, which it computes itself, batched on its device.

    Front end: torchaudio MelSpectrogram + AmplitudeToDB (25 ms windows every 10 ms), per-clip
    normalisation, SpecAugment in training only. Then four conv-BN-ReLU blocks (widths w, 2w, 4w,
    4w), mean and max over time (padding ignored), linear head. ~0.2M parameters at width 32.

    Args:
        num_classes: outputs (filled in from the dataset by recipes).
        in_channels: audio channels (filled in from the dataset).
        sample_rate: of the input waveforms (filled in from the dataset).
        features: "log_mel" (default) or "mfcc": computed in the model from waveforms;
            "precomputed": the dataset's transform computed them (``audio/log_mel``/``audio/mfcc``)
            and the model takes ``(batch, channels, bins, frames)``.
        n_mels: mel bands; n_mfcc: MFCCs (features="mfcc").
        n_fft, hop_length: STFT sizes in samples (default: 25 ms window, 10 ms hop).
        norm: per-clip normalisation: "utterance", "bins" or null.
        spec_augment: time and frequency masking in training.
        freq_mask, time_mask: widest mask (bins, frames); n_freq_masks, n_time_masks: masks per clip.
        width: channels of the first block.
        dropout: before the head.
    """
    _check_sizes("audio/mel_cnn", num_classes=num_classes, in_channels=in_channels, width=width, n_mels=n_mels)
    frontend = _frontend("audio/mel_cnn", features=features, sample_rate=sample_rate, n_mels=n_mels, n_mfcc=n_mfcc,
                         n_fft=n_fft, hop_length=hop_length, norm=norm, spec_augment=spec_augment,
                         freq_mask=freq_mask, time_mask=time_mask, n_freq_masks=n_freq_masks,
                         n_time_masks=n_time_masks)
    return MelCNN(frontend, num_classes=num_classes, in_channels=in_channels, width=width, dropout=dropout)


@plugin.model
def m5(*, num_classes: int = 10, in_channels: int = 1, width: int = 64, stride: int = 8,
       dropout: float = 0.1) -> nn.Module:
    """M5, a 1-D CNN on raw waveforms (Dai et al., 2017): no hand-made features at all.

    An 80-tap convolution with ``stride``, then 3-tap convolutions; every block pools by 4.
    ~0.1M parameters at width 64. Clips are scaled to unit RMS inside the model.

    Args:
        num_classes: outputs (filled in from the dataset by recipes).
        in_channels: audio channels (filled in from the dataset).
        width: channels of the first two blocks (the last two have twice as many).
        stride: of the first convolution (8 suits 16 kHz; the paper's 4 suits 8 kHz).
        dropout: before the head.
    """
    _check_sizes("audio/m5", num_classes=num_classes, in_channels=in_channels, width=width, stride=stride)
    return M5(num_classes=num_classes, in_channels=in_channels, width=width, stride=stride, dropout=dropout)


@plugin.model
def conformer(*, num_classes: int = 10, in_channels: int = 1, sample_rate: int = 16000, features: str = "log_mel",
              n_mels: int = 64, n_mfcc: int = 40, n_fft: int | None = None, hop_length: int | None = None,
              norm: str | None = "utterance", spec_augment: bool = True, freq_mask: int = 8, time_mask: int = 10,
              n_freq_masks: int = 2, n_time_masks: int = 2, d_model: int = 96, num_layers: int = 3,
              num_heads: int = 4, ffn_dim: int = 192, kernel_size: int = 15, dropout: float = 0.1) -> nn.Module:
    """A small torchaudio.models.Conformer (Gulati et al., 2020) for clip classification, sized for
    small data: ~0.5M parameters with the defaults, randomly initialised (nothing downloads).

    Same front end as ``audio/mel_cnn`` (log-mel or MFCC computed in the model, SpecAugment in
    training), two stride-2 convolutions (frames / 4), the Conformer blocks with padding masked,
    mean over time, linear head.

    Args:
        num_classes, in_channels, sample_rate, features, n_mels, n_mfcc, n_fft, hop_length, norm,
            spec_augment, freq_mask, time_mask, n_freq_masks, n_time_masks: as in ``audio/mel_cnn``.
        d_model: width of the Conformer blocks (a multiple of num_heads).
        num_layers: Conformer blocks.
        num_heads: attention heads.
        ffn_dim: hidden size of the feed-forward modules.
        kernel_size: of the depthwise convolutions (odd).
        dropout: in the blocks and before the head.
    """
    _check_sizes("audio/conformer", num_classes=num_classes, in_channels=in_channels, d_model=d_model,
                 num_layers=num_layers, num_heads=num_heads, ffn_dim=ffn_dim, kernel_size=kernel_size)
    if d_model % num_heads:
        raise torchrig.TorchrigError(f"audio/conformer: d_model ({d_model}) must be a multiple of num_heads ({num_heads}).")
    if kernel_size % 2 == 0:
        raise torchrig.TorchrigError(f"audio/conformer: kernel_size must be odd, got {kernel_size}.")
    frontend = _frontend("audio/conformer", features=features, sample_rate=sample_rate, n_mels=n_mels, n_mfcc=n_mfcc,
                         n_fft=n_fft, hop_length=hop_length, norm=norm, spec_augment=spec_augment,
                         freq_mask=freq_mask, time_mask=time_mask, n_freq_masks=n_freq_masks,
                         n_time_masks=n_time_masks)
    return ConformerClassifier(frontend, num_classes=num_classes, in_channels=in_channels, d_model=d_model,
                               num_layers=num_layers, num_heads=num_heads, ffn_dim=ffn_dim, kernel_size=kernel_size,
                               dropout=dropout)
