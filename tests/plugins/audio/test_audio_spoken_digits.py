"""audio/spoken_digits: voices split by seed, a small real build with espeak-ng, the cache, and the
error when espeak-ng is missing."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import torchrig
from torchrig_audio import _spoken_digits as sd

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")
SMALL = {"max_voices": 5, "val_voices": 1, "test_voices": 1, "clips_per_voice": 1}


def test_missing_espeak_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("ESPEAK_NG", raising=False)
    with pytest.raises(torchrig.TorchrigError, match="espeak-ng.*apt-get install espeak-ng.*brew install espeak-ng"):
        torchrig.get_dataset("audio/spoken_digits", root=str(tmp_path / "cache"))


def test_voices_are_split_by_seed_and_never_shared():
    variants = [f"v{i}" for i in range(30)]
    plan = sd._plan(0, ["en-us", "en-gb"], variants, 2, 4, 6)
    voices = {s: {t["voice"] for t in plan if t["split"] == s} for s in ("train", "val", "test")}
    assert [len(voices[s]) for s in ("train", "val", "test")] == [20, 4, 6]
    assert not (voices["train"] & voices["test"]) and not (voices["train"] & voices["val"])
    assert len(plan) == 60 and plan == sd._plan(0, ["en-us", "en-gb"], variants, 2, 4, 6)
    assert plan != sd._plan(1, ["en-us", "en-gb"], variants, 2, 4, 6)
    assert len({t["voice"] for t in sd._plan(0, ["en"], variants, 1, 1, 1, max_voices=5)}) == 5
    with pytest.raises(torchrig.TorchrigError, match="too few"):
        sd._plan(0, ["en"], variants[:3], 1, 2, 2)


def test_words_are_cut_at_long_pauses_only():
    rate = 22050
    word = np.sin(np.arange(int(0.3 * rate)) / 3.0)
    pause, closure = np.zeros(int(0.7 * rate)), np.zeros(int(0.1 * rate))  # "ei-t": a stop inside a word
    audio = np.concatenate([word, pause, word, closure, word, pause, word])
    words = sd._words(audio, rate, sd._GAP_FRAMES)
    assert [round(len(w) / rate, 1) for w in words] == [0.4, 0.8, 0.4]


def test_voice_lists_skip_mbrola_and_names_with_spaces(monkeypatch):
    listings = {
        "--voices=en": "Pty Language Age/Gender VoiceName File Other Languages\n"
                       " 2  en-gb  --/M  English_(Great_Britain) gmw/en  (en 2)\n"
                       " 5  en-us  --/M  us-mbrola-2  mb/mb-us2  (en 7)\n",
        "--voices=variant": "Pty Language Age/Gender VoiceName File Other Languages\n"
                            " 5  variant  --/M  Adam  !v/adam\n"
                            " 5  variant  --/M  Mr_Serious  !v/Mr serious\n"
                            " 5  variant  --/M  Storm  !v/Storm  (en-us 5)\n",
    }
    monkeypatch.setattr(sd, "_run", lambda exe, arg: listings[arg])
    assert sd._voices("espeak-ng") == (["en-gb"], ["Storm", "adam"])


@needs_espeak
def test_small_build_is_deterministic_cached_and_split_by_voice(tmp_path, monkeypatch):
    first = sd.build_spoken_digits(root=tmp_path / "a", **SMALL)
    manifest = json.loads((first / "manifest.json").read_text())
    voices = {s: {c["voice"] for c in manifest["clips"] if c["split"] == s} for s in ("train", "val", "test")}
    assert [len(voices[s]) for s in ("train", "val", "test")] == [3, 1, 1]
    assert len(manifest["clips"]) == 50 and not (voices["train"] & (voices["val"] | voices["test"]))
    assert [p.name for p in (tmp_path / "a").iterdir()] == [first.name]  # no temporary folder left

    second = sd.build_spoken_digits(root=tmp_path / "b", **SMALL)

    def digest(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.wav"))}

    assert second.name == first.name and digest(first) == digest(second)

    def no_synthesis(*args, **kwargs):
        raise AssertionError("the cached data set was synthesized again")

    monkeypatch.setattr(sd, "_synthesize", no_synthesis)
    assert sd.build_spoken_digits(root=tmp_path / "a", **SMALL) == first
    test = torchrig.get_dataset("audio/spoken_digits", split="test", root=str(tmp_path / "a"), **SMALL)
    assert test.classes == [str(d) for d in range(10)] and len(test) == 10 and sorted(test.targets) == list(range(10))
    assert test.model_kwargs == {"sample_rate": 16000, "in_channels": 1}
    waveform = test[0][0]
    assert waveform.shape[0] == 1 and 0.2 < waveform.shape[-1] / 16000 < 1.2

    monkeypatch.setenv("PATH", str(tmp_path))  # espeak-ng gone: the built data set still serves
    assert sd.build_spoken_digits(root=tmp_path / "a", **SMALL) == first


@needs_espeak
def test_concurrent_builds_synthesize_once(tmp_path):
    """Two processes (pytest-xdist workers, DDP ranks) asking at once: one builds, the other waits
    for it and reuses the folder."""
    import subprocess
    import sys

    code = ("import sys, torchrig_audio._spoken_digits as sd; "
            f"print(sd.build_spoken_digits(root=sys.argv[1], **{SMALL!r}))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert len({out.strip() for out, _ in results}) == 1  # the same folder
    assert sum(err.count("synthesizing") for _, err in results) == 1
    assert [p.name for p in tmp_path.iterdir()] == [Path(results[0][0].strip()).name]  # no lock or temp left
