"""``audio/spoken_digits``: the words "zero" to "nine" synthesized with espeak-ng, built once into
a cache folder, with voices split so that validation and test voices are never heard in training.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from torch.utils.data import Dataset

import torchrig

from ._folder import AudioFolder, check_options, scan_split
from ._plugin import plugin

__all__ = ["build_spoken_digits", "spoken_digits"]

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_VERSION = 1  # bump when the synthesis changes, so old caches are not reused
_SPEED, _PITCH, _AMPLITUDE = (120, 220), (20, 80), (60, 160)  # espeak-ng -s (words/min), -p, -a ranges
_MARGIN_S = 0.06  # silence kept around each word
_BREAK_MS, _GAP_FRAMES = 700, 30  # pause between the words spoken in one call; gaps (10 ms frames) that split
_RATE = 22050  # espeak-ng's output rate
_LANGS = re.compile(r"(\(\S+ \d+\)\s*)*")  # the "Other Languages" column: "(en-us 5)(en 3)"
# Used when `espeak-ng --voices=...` lists nothing (very old builds): the classic variants.
_FALLBACK_ACCENTS = ("en-us", "en-gb")
_FALLBACK_VARIANTS = tuple(f"m{i}" for i in range(1, 8)) + tuple(f"f{i}" for i in range(1, 6)) + (
    "klatt", "klatt2", "klatt3", "croak", "whisper")
_INSTALL = ("audio/spoken_digits synthesizes its clips with espeak-ng, which is not installed (no 'espeak-ng' "
            "on PATH). Install it: `sudo apt-get install espeak-ng` (Debian/Ubuntu), `sudo dnf install "
            "espeak-ng` (Fedora), `brew install espeak-ng` (macOS); or set the ESPEAK_NG environment variable to "
            "the program's path.")


def _espeak() -> str:
    exe = os.environ.get("ESPEAK_NG") or shutil.which("espeak-ng")
    if not exe or not Path(exe).is_file():
        raise torchrig.TorchrigError(_INSTALL)
    return exe


def _run(exe: str, *args: str) -> str:
    result = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise torchrig.TorchrigError(f"audio/spoken_digits: `espeak-ng {' '.join(args)}` failed "
                                     f"(exit {result.returncode}): {result.stderr.strip()[:300]}")
    return result.stdout


def _voices(exe: str) -> tuple[list[str], list[str]]:
    """English accents (espeak-ng's own voices, not MBROLA ones) and voice variants, sorted."""
    accents, variants = set(), set()
    for line in _run(exe, "--voices=en").splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and cols[1].startswith("en") and not cols[4].startswith("mb/"):
            accents.add(cols[1])
    for line in _run(exe, "--voices=variant").splitlines()[1:]:
        cols = line.split()
        # File is "!v/<name>"; a name with a space shows up as extra words, not "(lang n)" groups
        if len(cols) >= 5 and cols[4].startswith("!v/") and _LANGS.fullmatch(" ".join(cols[5:])):
            name = cols[4][3:]
            if name.replace("_", "").isalnum():
                variants.add(name)
    return sorted(accents) or list(_FALLBACK_ACCENTS), sorted(variants) or list(_FALLBACK_VARIANTS)


def _plan(seed: int, accents: list[str], variants: list[str], clips_per_voice: int, val_voices: int,
          test_voices: int, max_voices: int | None = None) -> list[dict[str, Any]]:
    """Every take to synthesize (one voice saying the ten digits with one set of espeak-ng
    settings), with its split; a function of ``seed`` and the voices."""
    rng = random.Random(seed)
    order = sorted(variants)
    rng.shuffle(order)
    order = order[:max_voices] if max_voices else order
    if len(order) < val_voices + test_voices + 1:
        raise torchrig.TorchrigError(
            f"audio/spoken_digits: espeak-ng offers {len(order)} voices, too few for {val_voices} validation and "
            f"{test_voices} test voices plus training ones. Lower val_voices/test_voices (or raise max_voices).")
    split_of = {v: "test" for v in order[:test_voices]}
    split_of.update({v: "val" for v in order[test_voices:test_voices + val_voices]})
    return [{"split": split_of.get(voice, "train"), "voice": voice, "take": k, "accent": rng.choice(accents),
             "speed": rng.randint(*_SPEED), "pitch": rng.randint(*_PITCH), "amplitude": rng.randint(*_AMPLITUDE)}
            for voice in sorted(order) for k in range(clips_per_voice)]


def _words(audio: np.ndarray, rate: int, gap_frames: int) -> list[np.ndarray]:
    """Cut a recording of words separated by long pauses into the words, each with a short margin
    of silence. Pauses inside a word (the stop in "eight") are far shorter than the gap."""
    hop = max(1, rate // 100)  # 10 ms
    n = len(audio) // hop
    if n == 0:
        return []
    loud = np.abs(audio[:n * hop]).reshape(n, hop).max(1) > 0.02 * np.abs(audio).max()
    spans, start, last = [], None, 0
    for i in np.flatnonzero(loud):
        if start is not None and i - last > gap_frames:
            spans.append((start, last))
            start = None
        start = i if start is None else start
        last = i
    if start is not None:
        spans.append((start, last))
    margin = int(_MARGIN_S * rate)
    return [audio[max(0, s * hop - margin):(e + 1) * hop + margin] for s, e in spans]


def _espeak_words(exe: str, take: dict[str, Any], words: tuple[str, ...], path: Path) -> list[np.ndarray]:
    text = f' <break time="{_BREAK_MS}ms"/> '.join(words)
    _run(exe, "-m", "-v", f"{take['accent']}+{take['voice']}", "-s", str(take["speed"]), "-p", str(take["pitch"]),
         "-a", str(take["amplitude"]), "-w", str(path), f"<speak>{text}</speak>")
    audio, rate = sf.read(str(path), dtype="int16")
    path.unlink()
    if audio.ndim != 1 or rate != _RATE:
        raise torchrig.TorchrigError(f"audio/spoken_digits: espeak-ng wrote {audio.shape} samples at {rate} Hz; "
                                     f"expected mono audio at {_RATE} Hz.")
    gap = _GAP_FRAMES if len(words) > 1 else len(audio)  # one word: never cut it
    return _words(audio, rate, gap) if audio.size and np.abs(audio).max() else []


def _synthesize(exe: str, take: dict[str, Any], root: Path) -> list[dict[str, Any]]:
    """Say the ten digits in one espeak-ng call (starting it costs ten times more than speaking a
    word) and cut them apart; should the cut not find ten words, say them one call each."""
    tmp = root / f"{take['voice']}-{take['take']}.tmp.wav"
    clips = _espeak_words(exe, take, WORDS, tmp)
    if len(clips) != len(WORDS):
        clips = []
        for word in WORDS:
            parts = _espeak_words(exe, take, (word,), tmp)
            if not parts:
                raise torchrig.TorchrigError(
                    f"audio/spoken_digits: espeak-ng wrote no audio for {word!r} with voice {take['accent']}+"
                    f"{take['voice']}. Check that `espeak-ng -v {take['accent']}+{take['voice']} {word}` speaks.")
            clips.append(parts[0])
    rows = []
    for digit, (word, audio) in enumerate(zip(WORDS, clips)):
        name = f"{take['voice']}-{word}-{take['take']}.wav"
        sf.write(str(root / take["split"] / str(digit) / name), audio, _RATE, subtype="PCM_16")
        rows.append({**take, "digit": digit, "word": word, "file": f"{take['split']}/{digit}/{name}",
                     "seconds": round(len(audio) / _RATE, 3)})
    return rows


def default_cache() -> Path:
    """``$TORCHRIG_CACHE/spoken_digits``, else ``~/.cache/torchrig/spoken_digits``."""
    base = os.environ.get("TORCHRIG_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "torchrig")
    return Path(base) / "spoken_digits"


def build_spoken_digits(*, root: str | Path | None = None, seed: int = 0, clips_per_voice: int = 3,
                        val_voices: int = 12, test_voices: int = 20, max_voices: int | None = None,
                        threads: int = 4) -> Path:
    """Synthesize the data set into ``root/<key>/`` once and return that folder; later calls with
    the same settings (and espeak-ng) return it at once.

    The folder holds ``{train,val,test}/<digit>/<voice>-<word>-<k>.wav`` (22,050 Hz, mono, 16-bit)
    and ``manifest.json`` (the settings of every clip). It is built in a temporary folder beside it
    and renamed into place when complete, so an interrupted build leaves nothing half-made.
    """
    base = Path(os.path.expanduser(str(root))) if root is not None else default_cache()
    try:
        exe = _espeak()
        version = _run(exe, "--version").strip()
        accents, variants = _voices(exe)
    except torchrig.TorchrigError:
        # No espeak-ng: a data set built earlier (by any version) is still usable.
        built = _any_built(base, {"seed": seed, "clips_per_voice": clips_per_voice, "val_voices": val_voices,
                                  "test_voices": test_voices, "max_voices": max_voices})
        if built is None:
            raise
        return built.parent
    settings = {"version": _VERSION, "seed": seed, "clips_per_voice": clips_per_voice, "val_voices": val_voices,
                "test_voices": test_voices, "max_voices": max_voices, "espeak_ng": version, "accents": accents,
                "variants": variants}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    final = base / key
    if (final / "manifest.json").is_file():
        return final
    with ExitStack() as stack:
        try:
            base.mkdir(parents=True, exist_ok=True)
            # one build at a time (pytest-xdist workers, DDP ranks); the others wait, then reuse it
            stack.enter_context(_build_lock(base / f".{key}.lock"))
        except OSError as exc:
            raise _unwritable(base, exc) from exc
        if (final / "manifest.json").is_file():  # built by the process that held the lock before us
            return final
        return _build(exe, base, final, key, settings, accents, variants, seed, clips_per_voice, val_voices,
                      test_voices, max_voices, threads)


def _unwritable(base: Path, exc: OSError) -> torchrig.TorchrigError:
    return torchrig.TorchrigError(
        f"audio/spoken_digits: cannot create the cache folder {str(base)!r} ({exc.strerror or exc}). Point "
        "data.dataset.root, or the TORCHRIG_CACHE environment variable, at a writable folder.")


@contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (POSIX ``flock``; elsewhere none: the atomic rename below
    still keeps concurrent builds from clashing, at the cost of building twice)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            # Gone before it is released: a process still waiting on it goes on to find the build
            # done (or builds itself); one arriving later sees the finished folder first.
            path.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(exe: str, base: Path, final: Path, key: str, settings: dict[str, Any], accents: Any, variants: Any,
           seed: int, clips_per_voice: int, val_voices: int, test_voices: int, max_voices: int | None,
           threads: int) -> Path:
    takes = _plan(seed, accents, variants, clips_per_voice, val_voices, test_voices, max_voices)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=base))
    except OSError as exc:
        raise _unwritable(base, exc) from exc
    started = time.time()
    voices = len({take["voice"] for take in takes})
    print(f"torchrig: audio/spoken_digits: synthesizing {len(takes) * len(WORDS)} clips ({voices} voices) with "
          f"espeak-ng into {final} (once)...", file=sys.stderr, flush=True)
    try:
        for split in ("train", "val", "test"):
            for digit in range(10):
                (tmp / split / str(digit)).mkdir(parents=True)
        with ThreadPoolExecutor(max(1, threads)) as pool:
            clips = [row for rows in pool.map(lambda take: _synthesize(exe, take, tmp), takes) for row in rows]
        manifest = {"settings": settings, "words": list(WORDS), "clips": clips}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "manifest.json").is_file():  # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"torchrig: audio/spoken_digits: done in {time.time() - started:.0f} s.", file=sys.stderr, flush=True)
    return final


def _any_built(base: Path, wanted: dict[str, Any]) -> Path | None:
    """The manifest of a finished build with these settings (by any espeak-ng), if there is one."""
    if not base.is_dir():
        return None
    for manifest in sorted(base.glob("*/manifest.json")):
        try:
            settings = json.loads(manifest.read_text(encoding="utf-8"))["settings"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if settings.get("version") == _VERSION and all(settings.get(k) == v for k, v in wanted.items()):
            return manifest
    return None


@plugin.dataset
def spoken_digits(*, split: str = "train", root: str | None = None, seed: int = 0, clips_per_voice: int = 3,
                  val_voices: int = 12, test_voices: int = 20, max_voices: int | None = None, sample_rate: int = 16000,
                  duration: float | None = None, max_duration: float | None = None) -> Dataset:
    """Spoken English digits "zero".."nine" (classes "0".."9"), synthesized with espeak-ng.

    Every espeak-ng voice variant (about 100: m1..m7, f1..f5, klatt, whisper, ...) is one speaker,
    saying each digit ``clips_per_voice`` times with a random accent (en-us, en-gb, Scottish,
    Caribbean, ...), speed, pitch and loudness. Voices are split, by ``seed``, into train, val and
    test, so validation and test voices are never heard in training. With the defaults: about
    3,000 clips of 0.3 to 0.9 s; the data set is a function of ``seed`` and the espeak-ng version.

    The clips are built once (about 20 s on 2 cores) into ``root`` (default
    ``$TORCHRIG_CACHE/spoken_digits`` or ``~/.cache/torchrig/spoken_digits``) and read from there
    afterwards, as ``audio/folder`` reads a folder (clips preloaded in memory).

    Args:
        split: "train", "val" or "test" (given by the recipe).
        root: the cache folder.
        seed: chooses the voices of each split and every clip's settings.
        clips_per_voice: renditions of each digit per voice.
        val_voices, test_voices: voices held out for validation and test.
        max_voices: use only this many voices (chosen by ``seed``), for a small, quick data set.
        sample_rate: clips (22,050 Hz from espeak-ng) are resampled to this rate.
        duration, max_duration: as in ``audio/folder``.

    Raises:
        TorchrigError: espeak-ng is missing (with how to install it) and no data set was built before.
    """
    check_options("audio/spoken_digits", sample_rate=sample_rate, channels=1, duration=duration,
                  max_duration=max_duration)
    for name, value in (("clips_per_voice", clips_per_voice), ("val_voices", val_voices), ("test_voices", test_voices),
                        ("max_voices", 3 if max_voices is None else max_voices)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise torchrig.TorchrigError(f"audio/spoken_digits: {name} must be a whole number >= 1, got {value!r}.")
    folder = build_spoken_digits(root=root, seed=seed, clips_per_voice=clips_per_voice, val_voices=val_voices,
                                 test_voices=test_voices, max_voices=max_voices)
    found = scan_split(folder, split, owner="audio/spoken_digits")
    if found is None:
        raise torchrig.TorchrigError(f"audio/spoken_digits: the cache {str(folder)!r} lacks its {split} split; delete "
                                     "the folder to rebuild it.")
    classes, files = found
    return AudioFolder(files, classes, sample_rate=sample_rate, channels=1, duration=duration,
                       max_duration=max_duration, preload=True, owner="audio/spoken_digits")
