"""Fixtures: folders of real sound files (see audio_files.py), written by each test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from audio_files import fill, tone, write


@pytest.fixture
def tone_folder(tmp_path: Path) -> Path:
    """Two classes, six clips each, in six formats (8-48 kHz, mono and stereo, WAV/FLAC/OGG)."""
    root = tmp_path / "clips"
    fill(root)
    return root


@pytest.fixture
def bad_files(tone_folder: Path) -> dict[str, Path]:
    """Adds one file of each unusable kind to ``tone_folder/low`` (two kinds of truncation)."""
    low = tone_folder / "low"
    (low / "empty.wav").write_bytes(b"")
    (low / "corrupt.flac").write_bytes(b"fLaC" + bytes(range(256)) * 4)
    good = write(low / "whole.wav", tone(300, 1.0, 16000), 16000)
    data = good.read_bytes()
    (low / "truncated.wav").write_bytes(data[: len(data) // 2])
    good.unlink()
    write(low / "silent.wav", np.zeros((16000, 1), np.float32), 16000)
    flac = write(low / "whole.flac", tone(300, 1.0, 16000, seed=3), 16000, "FLAC").read_bytes()
    (low / "cut.flac").write_bytes(flac[: len(flac) // 2])
    (low / "whole.flac").unlink()
    return {"empty": low / "empty.wav", "corrupt": low / "corrupt.flac", "truncated": low / "truncated.wav",
            "silent": low / "silent.wav", "cut": low / "cut.flac"}
