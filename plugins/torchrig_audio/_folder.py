"""``audio/folder``: your own sound files, one folder per class; and the reader ``torchrig predict``
uses for sound files."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

import torchrig

from ._io import SUFFIXES, show_clip, Unreadable, check_seconds, crop, decode_clip, pad_collate, probe, read_clip, resample_many
from ._plugin import plugin

__all__ = ["AudioFolder", "clip", "folder", "scan_split"]

log = logging.getLogger("torchrig.audio")
PRELOAD_BYTES = 1 << 30  # preload="auto" keeps decoded clips in memory up to 1 GiB of float32
SPLIT_NAMES = ("train", "val", "test")


def _threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class AudioFolder(Dataset):
    """Sound files as ``((channels, samples) float32 waveform, class index)``.

    Every file's header is checked when the dataset is built. With ``preload`` every clip is also
    decoded, resampled and kept in memory then, which checks it completely (silent, truncated and
    corrupt audio is found up front, so ``on_error="skip"`` can leave it out) and makes later
    epochs free of decoding. Without it a clip is decoded each time it is read, and a bad one
    raises an error naming it.

    Batches of clips of different lengths are zero-padded by :attr:`collate_fn`, which returns
    ``((waveforms, lengths), targets)``.

    Attributes:
        classes: label names, sorted (the class folders' names).
        targets: each sample's class index.
        samples: ``(path, class index)`` of each sample.
        skipped: files left out by ``on_error="skip"``.
        model_kwargs: ``{"sample_rate": ..., "in_channels": ...}`` for the model builder.
    """

    collate_fn = staticmethod(pad_collate)

    def __init__(self, files: Sequence[tuple[Path, int]], classes: Sequence[str], *, sample_rate: int = 16000,
                 channels: int = 1, duration: float | None = None, max_duration: float | None = None,
                 on_error: str = "raise", preload: bool | None = None, owner: str = "audio/folder") -> None:
        self.classes = list(classes)
        self.options = {"sample_rate": int(sample_rate), "channels": int(channels), "duration": duration,
                        "max_duration": max_duration}
        self.on_error, self.owner = on_error, owner
        self.skipped: list[str] = []
        self._reasons: list[str] = []
        self.model_kwargs = {"sample_rate": int(sample_rate), "in_channels": int(channels)}
        with ThreadPoolExecutor(_threads()) as pool:
            probes = list(pool.map(probe, [path for path, _ in files]))
        kept = []
        for (path, target), (problem, _) in zip(files, probes):
            if problem is None:
                kept.append((path, target))
            else:
                self._bad(path, problem)
        seconds = sum(s for (problem, s) in probes if problem is None)
        if duration is not None or max_duration is not None:
            limit = float(duration if duration is not None else max_duration)
            seconds = sum(min(s, limit) for (problem, s) in probes if problem is None)
        estimate = seconds * sample_rate * channels * 4
        self.preloaded = bool(preload) if preload is not None else estimate <= PRELOAD_BYTES
        self.waveforms: list[torch.Tensor] | None = None
        if self.preloaded:
            kept, self.waveforms = self._preload(kept)
        self._report_skipped(len(kept))
        self.samples = [(str(path), target) for path, target in kept]
        self.targets = [target for _, target in kept]

    def _preload(self, files: list[tuple[Path, int]]) -> tuple[list[tuple[Path, int]], list[torch.Tensor]]:
        """Decode every file (in threads: soundfile releases the GIL), then resample the clips of
        each sample rate in batches, which costs a fraction of resampling them one by one."""
        with ThreadPoolExecutor(_threads()) as pool:
            decoded = list(pool.map(self._try_decode, [path for path, _ in files]))
        good = []
        for item, result in zip(files, decoded):
            if isinstance(result, Unreadable):
                self._bad(item[0], str(result))
            else:
                good.append((item, result))
        waves: list[torch.Tensor | None] = [None] * len(good)
        rate = self.options["sample_rate"]
        for orig in sorted({r for _, (_, r) in good}):
            idx = [i for i, (_, (_, r)) in enumerate(good) if r == orig]
            for i, wave in zip(idx, resample_many([good[i][1][0] for i in idx], orig, rate)):
                waves[i] = crop(wave, rate, duration=self.options["duration"], max_duration=self.options["max_duration"])
        return [item for item, _ in good], waves  # type: ignore[return-value]

    def _try_decode(self, path: Path) -> tuple[torch.Tensor, int] | Unreadable:
        try:
            return decode_clip(path, channels=self.options["channels"],
                               seconds=self.options["duration"] or self.options["max_duration"])
        except Unreadable as exc:
            return exc

    def _bad(self, path: Path, problem: str) -> None:
        if self.on_error == "skip":
            self.skipped.append(str(path))
            self._reasons.append(problem)
            return
        raise torchrig.InputError(
            f"Cannot use audio file {str(path)!r}: {problem}. Delete or replace it, or set on_error: skip "
            f"in data.dataset to skip unusable files (they are counted in summary.json).")

    def _report_skipped(self, kept: int) -> None:
        if not self.skipped:
            return
        first = f"{self.skipped[0]!r}: {self._reasons[0]}"
        if not kept:
            raise torchrig.InputError(
                f"{self.owner}: none of the {len(self.skipped)} sound files can be used. The first, {first}.")
        shown = "; ".join(f"{p} ({r})" for p, r in zip(self.skipped[:3], self._reasons))
        more = f"; and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
        log.warning("%s: skipped %d unusable file(s): %s%s", self.owner, len(self.skipped), shown, more)

    def __len__(self) -> int:
        return len(self.samples)

    def describe(self, index: int) -> str:
        """The sound file of sample ``index`` (for a run's top losses)."""
        return str(self.samples[index][0])

    def preprocessing(self, inputs: Any = None) -> dict[str, Any]:
        """How a file becomes a model input, for ``model.json``."""
        o = self.options
        return {"kind": "audio", "sample_rate": o["sample_rate"], "channels": o["channels"],
                "decode": "float32 samples in [-1, 1]; channels averaged to mono when channels is 1; "
                          "resampled to sample_rate",
                "duration": o["duration"], "max_duration": o["max_duration"],
                "batch": "zero-pad clips to the longest; lengths holds each clip's samples"}

    def show(self, inputs: Any, ax: Any) -> None:
        """Draw one clip as its log-mel spectrogram (features as they are)."""
        show_clip(inputs, ax, sample_rate=self.options["sample_rate"])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, target = self.samples[index]
        if self.waveforms is not None:
            return self.waveforms[index], target
        try:
            return read_clip(path, **self.options), target
        except Unreadable as exc:
            raise torchrig.InputError(
                f"Cannot use audio file {path!r}: {exc}. Delete or replace it; or set preload: true in "
                "data.dataset, which checks every file up front so that on_error: skip can leave it out.") from exc


def scan_split(root: str | Path, split: str, *, owner: str) -> tuple[list[str], list[tuple[Path, int]]] | None:
    """The class names and ``(file, class index)`` of ``split`` under ``root``, or None when the
    folder has no such split (the recipe then carves it from train).

    ``root`` is either ``root/<class>/<file>`` (one split: train) or ``root/train/<class>/...``
    with ``root/val`` and/or ``root/test`` beside it (``torchrig.class_folder_files``). Class
    names always come from train; a classifier needs two at least.
    """
    if split not in SPLIT_NAMES:
        raise torchrig.TorchrigError(f"{owner}: split must be one of {', '.join(SPLIT_NAMES)}, got {split!r}.")
    found = torchrig.class_folder_files(root, split, SUFFIXES, component=owner)
    if found is None:
        return None
    classes, files = found
    if len(classes) < 2:
        raise torchrig.TorchrigError(
            f"{owner}: {str(root)!r} has {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); a "
            "classifier needs at least two, laid out as ROOT/<class>/<file>.")
    return classes, files


def check_options(owner: str, *, sample_rate: int, channels: int, duration: float | None,
                  max_duration: float | None, on_error: str = "raise") -> None:
    """Raise a TorchrigError naming the first bad option."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 1000 <= sample_rate <= 384_000:
        raise torchrig.TorchrigError(f"{owner}: sample_rate must be a whole number of Hz between 1000 and 384000 "
                                     f"(e.g. 16000), got {sample_rate!r}.")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise torchrig.TorchrigError(f"{owner}: channels must be 1 (mix down to mono) or the channel count to keep "
                                     f"(e.g. 2), got {channels!r}.")
    check_seconds("duration", duration, owner)
    check_seconds("max_duration", max_duration, owner)
    torchrig.check_on_error(on_error, owner)


@plugin.dataset
def folder(*, root: str, split: str = "train", sample_rate: int = 16000, channels: int = 1,
           duration: float | None = None, max_duration: float | None = None, on_error: str = "raise",
           preload: bool | None = None) -> Dataset | None:
    """Your own recordings, one folder per class: ``root/<class>/<file>`` (files may sit in
    subfolders of a class folder), or with split folders ``root/train/<class>/...``,
    ``root/val/...`` and/or ``root/test/...``, which become the splits.

    Reads WAV, FLAC, OGG (Vorbis, Opus), MP3, AIFF and whatever else soundfile reads; M4A/AAC and
    other FFmpeg-only formats when TorchCodec is installed. Clips of any sample rate are resampled
    to ``sample_rate``; samples are ``((channels, samples) float32 waveform, class index)``, and
    batches of different lengths are zero-padded, with each clip's length passed to the model.

    Args:
        root: the folder.
        split: "train", "val" or "test" (given by the recipe).
        sample_rate: resample every clip to this rate (Hz); the model's ``sample_rate`` follows it.
        channels: 1 mixes stereo (and more) down to mono; 2 keeps stereo files as two channels
            (mono files are repeated). The model's ``in_channels`` follows it.
        duration: seconds; crop (centred) or zero-pad every clip to exactly this length.
        max_duration: seconds; crop (centred) clips longer than this and keep the rest as they
            are. With neither, clips keep their lengths.
        on_error: "raise" stops at an unusable file (empty, silent, truncated, corrupt) and names
            it; "skip" leaves it out and counts it in the run summary.
        preload: decode every clip once, up front, and keep it in memory (checks every file
            completely); None does so when the decoded clips fit in 1 GiB.
    """
    check_options("audio/folder", sample_rate=sample_rate, channels=channels, duration=duration,
                  max_duration=max_duration, on_error=on_error)
    found = scan_split(root, split, owner="audio/folder")
    if found is None:
        return None
    classes, files = found
    return AudioFolder(files, classes, sample_rate=sample_rate, channels=channels, duration=duration,
                       max_duration=max_duration, on_error=on_error, preload=preload)


@plugin.reader(*SUFFIXES, collate_fn=pad_collate)  # predict batches one clip as training did
def clip(path: str, *, dataset: dict[str, Any] | None = None) -> torch.Tensor:
    """A sound file, decoded as the run's dataset decoded its clips (sample rate, channels,
    duration): a ``(channels, samples)`` float32 waveform."""
    dataset = dataset or {}
    options = {"sample_rate": int(dataset.get("sample_rate", 16000)), "channels": int(dataset.get("channels", 1)),
               "duration": dataset.get("duration"), "max_duration": dataset.get("max_duration")}
    try:
        return read_clip(path, **options)
    except Unreadable as exc:
        raise torchrig.InputError(f"Cannot use audio file {path!r}: {exc}.") from exc

