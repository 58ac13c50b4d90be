"""Helpers that write real sound files: tones of two pitch classes in mixed formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

# (sample rate, channels, format, subtype, suffix): what people's folders hold
FORMATS = [
    (16000, 1, "WAV", "PCM_16", ".wav"),
    (44100, 2, "WAV", "PCM_24", ".wav"),
    (8000, 1, "FLAC", "PCM_16", ".flac"),
    (22050, 2, "FLAC", "PCM_16", ".flac"),
    (48000, 1, "WAV", "FLOAT", ".wav"),
    (32000, 1, "OGG", "VORBIS", ".ogg"),
]


def tone(freq: float, seconds: float, rate: int, channels: int = 1, *, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """A tone with a little noise, faded in and out: ``(samples, channels)`` float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = level * np.sin(2 * np.pi * freq * t) * np.hanning(len(t)) + 0.01 * rng.standard_normal(len(t))
    return np.stack([x * (1 - 0.2 * c) for c in range(channels)], 1).astype(np.float32)


def write(path: Path, audio: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, rate, format=fmt, subtype=subtype)
    return path


def fill(root: Path, per_class: int = 6, *, seed: int = 0) -> list[Path]:
    """``root/low/*`` and ``root/high/*``: tones at 300 or 2000 Hz (+-10%), 0.3-0.9 s long, in
    every format of ``FORMATS`` in turn."""
    rng = np.random.default_rng(seed)
    paths = []
    for label, base in (("low", 300.0), ("high", 2000.0)):
        for i in range(per_class):
            rate, channels, fmt, subtype, suffix = FORMATS[i % len(FORMATS)]
            audio = tone(base * rng.uniform(0.9, 1.1), rng.uniform(0.3, 0.9), rate, channels, seed=seed + i)
            paths.append(write(root / label / f"{label}{i}{suffix}", audio, rate, fmt, subtype))
    return paths
