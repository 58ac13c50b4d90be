"""The shipped audio recipes, run as a user runs them: train, then predict new files from the run dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from audio_files import tone, write

from torchrig._cli import main

REPO = Path(__file__).resolve().parents[3]
FOLDER_RECIPE = str(REPO / "recipes/audio/audio_folder.yaml")
SMALL = ["trainer.max_epochs=1", "data.batch_size=4"]


def _train(run: Path, root: Path, *overrides: str) -> dict:
    args = ["train", FOLDER_RECIPE, "--out", str(run), "--quiet", "--set", f"data.dataset.root={root}"]
    for item in (*SMALL, *overrides):
        args += ["--set", item]
    assert main(args) == 0
    return json.loads((run / "summary.json").read_text())


def _predictions(capsys) -> dict[str, list[tuple[str, float]]]:
    found = {}
    for line in capsys.readouterr().out.strip().splitlines():
        path, labels = line.rsplit(": ", 1)
        words = labels.split()
        found[path] = [(words[i], float(words[i + 1])) for i in range(0, len(words), 2)]
    return found


def test_folder_recipe_one_epoch_then_predict_and_evaluate(tone_folder, bad_files, tmp_path, capsys):
    run = tmp_path / "run"
    summary = _train(run, tone_folder, "model.width=8")
    assert summary["classes"] == ["high", "low"] and summary["epochs"] == 1
    assert summary["skipped"] == {"train": 5}  # empty, corrupt, truncated (2), silent: skipped and counted
    assert set(summary["test"]) >= {"accuracy", "loss"}
    capsys.readouterr()

    new = [write(tmp_path / "new" / "a.wav", tone(2000, 1.5, 44100, 2), 44100, subtype="PCM_24"),
           write(tmp_path / "new" / "b.flac", tone(300, 0.2, 8000), 8000, "FLAC")]
    assert main(["predict", str(run), *map(str, new)]) == 0
    found = _predictions(capsys)
    assert list(found) == [str(p) for p in new]
    for top in found.values():
        assert [name for name, _ in top] in (["high", "low"], ["low", "high"])
        assert abs(sum(p for _, p in top) - 1) < 2e-3

    assert main(["evaluate", str(run)]) == 0
    assert "accuracy" in capsys.readouterr().out
    # the interpretation names each held-out clip by its file, and draws it as a log-mel spectrogram
    top = json.loads((run / "top_losses.json").read_text())["samples"]
    assert top and all(Path(s["input"]).is_file() and Path(s["input"]).is_relative_to(tone_folder) for s in top)
    for plot in ("top_losses.png", "train_batch.png"):
        assert (run / "plots" / plot).stat().st_size > 10_000
    assert main(["predict", str(run), str(bad_files["silent"])]) == 2
    assert "silent.wav" in capsys.readouterr().err


@pytest.mark.parametrize("overrides", [
    ("model.name=audio/m5", "model.width=8"),
    ("model.name=audio/conformer", "model.d_model=32", "model.num_layers=1", "model.ffn_dim=32"),
    ("model.width=8", "model.features=precomputed", "model.n_mels=32", "data.eval_transform={name: audio/log_mel, n_mels: 32}",
     "data.train_transform={name: audio/compose, transforms: [audio/random_gain, {name: audio/log_mel, n_mels: 32}]}"),
    ("model.width=8", "data.dataset.channels=2", "data.dataset.duration=0.5"),
], ids=["m5", "conformer", "per-clip-features", "stereo-fixed-duration"])
def test_folder_recipe_variants_train_and_predict(tone_folder, tmp_path, capsys, overrides):
    run = tmp_path / "run"
    _train(run, tone_folder, *overrides)
    capsys.readouterr()
    clip = write(tmp_path / "c.ogg", tone(2000, 0.7, 32000, 2), 32000, "OGG", "VORBIS")
    assert main(["predict", str(run), str(clip)]) == 0
    assert len(_predictions(capsys)[str(clip)]) == 2


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")
def test_spoken_digits_recipe_reaches_95_percent_on_unseen_voices(tmp_path):
    # A fresh cache, as on a user's first run (the data set is synthesized first).
    env = {**os.environ, "TORCHRIG_CACHE": str(tmp_path / "cache")}
    run = tmp_path / "digits"
    result = subprocess.run([sys.executable, "-m", "torchrig", "train", str(REPO / "recipes/audio/spoken_digits.yaml"),
                             "--out", str(run), "--quiet"], capture_output=True, text=True, timeout=900, cwd=tmp_path,
                            env=env, check=False)
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] >= 0.95, summary["test"]
    assert summary["classes"] == [str(d) for d in range(10)]

    # predict clips of voices the model never heard, from the run dir alone
    manifest = json.loads(next((tmp_path / "cache" / "spoken_digits").glob("*/manifest.json")).read_text())
    root = next((tmp_path / "cache" / "spoken_digits").glob("*/manifest.json")).parent
    clips = [c for c in manifest["clips"] if c["split"] == "test"][:10]
    predicted = subprocess.run([sys.executable, "-m", "torchrig", "predict", str(run),
                                *(str(root / c["file"]) for c in clips)], capture_output=True, text=True,
                               timeout=300, env=env, check=False)
    assert predicted.returncode == 0, predicted.stderr
    labels = [line.rsplit(": ", 1)[1].split()[0] for line in predicted.stdout.strip().splitlines()]
    assert sum(label == str(c["digit"]) for label, c in zip(labels, clips)) >= 9, predicted.stdout
