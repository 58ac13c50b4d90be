"""Reading sound files into waveforms of one sample rate and channel count, with checks that
name a bad file, and the collate that pads a batch of clips of different lengths.

Decoding is soundfile's (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, ...). Formats only
FFmpeg reads (M4A/AAC, WMA, ...) go through TorchCodec when it is installed; it is optional
because it needs a system FFmpeg. ``torchaudio.load`` is not used: since torchaudio 2.9 it needs
TorchCodec too.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
import torchaudio
from torch.utils.data import default_collate

import torchrig

__all__ = [
    "FFMPEG_SUFFIXES",
    "SUFFIXES",
    "Unreadable",
    "check_seconds",
    "conform",
    "crop",
    "decode_clip",
    "fit_length",
    "pad_collate",
    "show_clip",
    "probe",
    "read_clip",
    "resample",
    "resample_many",
]

SOUNDFILE_SUFFIXES = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc",
                      ".au", ".snd", ".w64", ".rf64", ".caf")
FFMPEG_SUFFIXES = (".m4a", ".aac", ".mp4", ".wma", ".webm", ".mka", ".amr", ".3gp")
SUFFIXES = SOUNDFILE_SUFFIXES + FFMPEG_SUFFIXES
SILENCE_PEAK = 1e-4  # below this peak amplitude (-80 dBFS) a clip is silent: nothing to learn from
_STREAMING_SIZE = 0x7FFF0000  # recorders that stream write a placeholder data size at least this big
_DECLARED = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


class Unreadable(Exception):
    """A file that cannot serve as a clip; the message says why (callers add the path)."""


def _truncated(info: Any) -> bool:
    """True when a WAV-family header declares more audio data than the file holds.

    libsndfile silently shortens such a file (a copy cut off mid-way) to what is there, so this is
    the only sign of it. Streaming writers (``espeak-ng --stdout``, some recorders) declare a
    huge placeholder size instead of the real one; those are not truncated.
    """
    match = _DECLARED.search(getattr(info, "extra_info", "") or "")
    return match is not None and int(match.group(2)) < int(match.group(1)) < _STREAMING_SIZE


def _torchcodec_available() -> bool:
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception:  # noqa: BLE001  (ImportError, or a missing FFmpeg library: OSError, RuntimeError)
        return False
    return True


def _ffmpeg_hint(path: Path) -> str:
    return (f"soundfile cannot decode {path.suffix} files: install TorchCodec (`pip install torchcodec`, "
            f"needs FFmpeg) or convert the files, e.g. `ffmpeg -i {path.name} {path.stem}.flac`")


def probe(path: Path) -> tuple[str | None, float]:
    """Judge ``path`` from its size and header alone (fast): ``(problem or None, seconds)``.

    ``seconds`` is the clip's length as the header states it (a guess from the file size for
    formats read through TorchCodec), used to decide whether a folder fits in memory.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"it cannot be opened ({exc.strerror or exc})", 0.0
    if size == 0:
        return "the file is empty (0 bytes)", 0.0
    if path.suffix.lower() in FFMPEG_SUFFIXES:
        return (None if _torchcodec_available() else _ffmpeg_hint(path)), size / 16_000  # ~128 kbit/s
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        return f"it is not a readable audio file ({_short(exc)})", 0.0
    if info.frames <= 0 or info.samplerate <= 0:
        return "it holds no audio samples (empty or truncated)", 0.0
    if _truncated(info):
        return "it is truncated (its header declares more audio than the file holds)", 0.0
    return None, info.frames / info.samplerate


def _short(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return re.sub(r"^Error opening '.*?': ", "", text) or type(exc).__name__


def _decode(path: Path, seconds: float | None = None) -> tuple[torch.Tensor, int]:
    """(channels, samples) float32 in [-1, 1] and the file's sample rate, with integrity checks.
    With ``seconds``, a longer file is read only around its centre (``seconds`` and a margin for
    the resampler): an hour-long file costs what a clip does."""
    if path.suffix.lower() in FFMPEG_SUFFIXES:
        if not _torchcodec_available():
            raise Unreadable(_ffmpeg_hint(path))
        from torchcodec.decoders import AudioDecoder

        try:
            samples = AudioDecoder(str(path)).get_all_samples()
        except Exception as exc:  # TorchCodec raises RuntimeError/ValueError for bad streams
            raise Unreadable(f"TorchCodec cannot decode it ({_short(exc)})") from exc
        return samples.data.to(torch.float32), int(samples.sample_rate)
    try:
        if path.stat().st_size == 0:
            raise Unreadable("the file is empty (0 bytes)")
        f = sf.SoundFile(str(path))
    except Unreadable:
        raise
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        raise Unreadable(f"it is not a readable audio file ({_short(exc)})") from exc
    with f:
        declared, rate, fmt = f.frames, f.samplerate, f.format
        truncated = _truncated(f)
        want = declared
        if seconds is not None and fmt != "MP3" and rate > 0:  # MP3 frame counts are estimates
            window = math.ceil(seconds * rate) + 2 * (rate // 50 + 64)
            if window < declared:
                want = window
        try:
            if want < declared:
                f.seek((declared - want) // 2)
            data = f.read(want if want < declared else -1, dtype="float32", always_2d=True)
        except (RuntimeError, OSError, ValueError, TypeError) as exc:
            raise Unreadable(f"its audio cannot be decoded: it is corrupt or truncated ({_short(exc)})") from exc
    # MP3 frame counts are estimates; elsewhere fewer frames than declared means a cut-off file.
    if truncated or (fmt != "MP3" and 0 < len(data) < min(want, declared)):
        raise Unreadable("it is truncated (its header declares more audio than the file holds)")
    return torch.from_numpy(data.T.copy()), rate


@functools.lru_cache(maxsize=32)
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    # Building the windowed-sinc kernel costs more than applying it to a short clip: build each
    # (orig, new) pair once per process.
    return torchaudio.transforms.Resample(orig, new)


def resample(waveform: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """``waveform`` (..., samples) from ``orig`` Hz to ``new`` Hz with torchaudio's resampler."""
    if orig == new:
        return waveform
    with torch.no_grad():
        return _resampler(int(orig), int(new))(waveform)


def fit_length(waveform: torch.Tensor, samples: int | None, *, pad: bool) -> torch.Tensor:
    """Centre-crop ``waveform`` to at most ``samples``; with ``pad``, zero-pad it to exactly that."""
    if samples is None:
        return waveform
    n = waveform.shape[-1]
    if n > samples:
        start = (n - samples) // 2
        return waveform[..., start:start + samples]
    if pad and n < samples:
        return torch.nn.functional.pad(waveform, (0, samples - n))
    return waveform


def decode_clip(path: str | Path, *, channels: int = 1, seconds: float | None = None) -> tuple[torch.Tensor, int]:
    """Decode and check ``path``: a ``(channels, samples)`` float32 waveform at the file's own rate.
    With ``seconds`` (a crop to come: ``duration`` or ``max_duration``), a longer file is decoded
    only around its centre, never whole.

    Raises:
        Unreadable: the file is corrupt, truncated, empty, silent, holds non-finite samples, or
            has a channel count that cannot become ``channels``.
    """
    path = Path(path)
    waveform, rate = _decode(path, seconds)
    if waveform.shape[-1] == 0:
        raise Unreadable("it holds no audio samples (empty or truncated)")
    if not torch.isfinite(waveform).all():
        raise Unreadable("it holds NaN or infinite samples")
    peak = float(waveform.abs().max())
    if peak < SILENCE_PEAK:
        raise Unreadable(f"it is silent (peak amplitude {peak:.1e} < {SILENCE_PEAK:.0e})")
    have = waveform.shape[0]
    if channels == 1:
        return waveform.mean(0, keepdim=True), rate
    if have == 1:
        return waveform.expand(channels, -1).contiguous(), rate
    if have != channels:
        raise Unreadable(f"it has {have} channels, and channels={channels} keeps only {channels}-channel "
                         "(or mono) files; set channels: 1 to mix every file down to mono")
    return waveform, rate


def conform(waveform: torch.Tensor, rate: int, *, sample_rate: int, duration: float | None = None,
            max_duration: float | None = None) -> torch.Tensor:
    """Resample a decoded clip to ``sample_rate`` and crop/pad it as ``duration``/``max_duration`` say."""
    return crop(resample(waveform, rate, sample_rate), sample_rate, duration=duration, max_duration=max_duration)


def crop(waveform: torch.Tensor, sample_rate: int, *, duration: float | None = None,
         max_duration: float | None = None) -> torch.Tensor:
    """Centre-crop and zero-pad to ``duration`` seconds, or only centre-crop to ``max_duration``."""
    if duration is not None:
        return fit_length(waveform, _samples(duration, sample_rate), pad=True)
    return fit_length(waveform, _samples(max_duration, sample_rate), pad=False)


def read_clip(path: str | Path, *, sample_rate: int, channels: int = 1, duration: float | None = None,
              max_duration: float | None = None) -> torch.Tensor:
    """Decode ``path`` into a ``(channels, samples)`` float32 waveform at ``sample_rate``.

    Args:
        path: a sound file.
        sample_rate: resample to this rate (torchaudio's windowed-sinc resampler).
        channels: 1 mixes all channels down to mono; N keeps N-channel files as they are and
            repeats mono ones.
        duration: seconds; centre-crop longer clips and zero-pad shorter ones to exactly this.
        max_duration: seconds; centre-crop longer clips, keep shorter ones as they are.

    Raises:
        Unreadable: as :func:`decode_clip`.
    """
    waveform, rate = decode_clip(path, channels=channels, seconds=duration or max_duration)
    return conform(waveform, rate, sample_rate=sample_rate, duration=duration, max_duration=max_duration)


def resample_many(waveforms: Sequence[torch.Tensor], orig: int, new: int, *, batch: int = 64) -> list[torch.Tensor]:
    """:func:`resample` many clips of one rate, a padded batch at a time.

    One convolution per batch instead of one per clip: on a CPU this is several times faster for
    short clips, and the result is the same (the resampler pads every clip with zeros anyway).
    """
    if orig == new:
        return list(waveforms)
    out: list[torch.Tensor | None] = [None] * len(waveforms)
    order = sorted(range(len(waveforms)), key=lambda i: waveforms[i].shape[-1])  # little padding per batch
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        longest = waveforms[idx[-1]].shape[-1]
        stacked = torch.stack([torch.nn.functional.pad(waveforms[i], (0, longest - waveforms[i].shape[-1]))
                               for i in idx])
        resampled = resample(stacked, orig, new)
        for row, i in zip(resampled, idx):
            out[i] = row[..., :math.ceil(new * waveforms[i].shape[-1] / orig)].clone()
    return out  # type: ignore[return-value]


def _samples(seconds: float | None, sample_rate: int) -> int | None:
    return None if seconds is None else max(1, round(float(seconds) * sample_rate))


def pad_collate(batch: Sequence[tuple[torch.Tensor, Any]]) -> tuple[tuple[torch.Tensor, torch.Tensor], Any]:
    """Stack clips of different lengths: zero-pad the last (time) axis to the batch's longest.

    Works for waveforms ``(channels, samples)`` and features ``(channels, bins, frames)`` alike.

    Returns:
        ``((inputs, lengths), targets)``: ``inputs`` is ``(batch, ..., longest)``, ``lengths``
        holds each clip's true length along the last axis (samples or frames), so a model can
        ignore the padding; ``targets`` is collated as PyTorch does by default.
    """
    inputs = [torch.as_tensor(x) for x, _ in batch]
    shapes = {tuple(x.shape[:-1]) for x in inputs}
    if len(shapes) > 1:
        raise torchrig.TorchrigError(f"Cannot batch clips of shapes {sorted(shapes)} (before the time axis): every clip "
                            "needs the same channels and feature bins. Set the dataset's channels (1 mixes to mono).")
    lengths = torch.tensor([x.shape[-1] for x in inputs], dtype=torch.long)
    longest = int(lengths.max())
    padded = torch.stack([torch.nn.functional.pad(x, (0, longest - x.shape[-1])) for x in inputs])
    return (padded, lengths), default_collate([t for _, t in batch])


def check_seconds(name: str, value: float | None, owner: str) -> None:
    """Raise unless ``value`` is None or a positive, finite number of seconds."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value) or value <= 0):
        raise torchrig.TorchrigError(f"{owner}: {name} must be a positive number of seconds (or null), got {value!r}.")


def show_clip(inputs: Any, ax: Any, *, sample_rate: int = 16000) -> None:
    """Draw one clip as a batch gives it (``(clip, length)`` or a clip): a ``(channels, samples)``
    waveform as its log-mel spectrogram (64 bands, dB), ``(channels, bins, frames)`` features as
    they are; padding left out."""
    clip, length = inputs if isinstance(inputs, (tuple, list)) else (inputs, None)
    clip = torch.as_tensor(clip).detach().float().cpu()
    if length is not None:
        clip = clip[..., : int(length)]
    if clip.ndim == 3:
        image = clip[0]
    else:
        mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=400 * sample_rate // 16000 or 400, n_mels=64)
        image = torchaudio.transforms.AmplitudeToDB(top_db=80)(mel(clip.reshape(-1, clip.shape[-1]).mean(0)))
    ax.imshow(image.numpy(), aspect="auto", origin="lower", cmap="magma")
