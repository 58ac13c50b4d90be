"""The leak a group-aware split removes: test accuracy with a random split (a speaker's other
clips are in training) against `data.split.group_by` (held-out speakers only).

Speech from espeak-ng (the `audio/spoken_digits` clips: `<voice>-<word>-<n>.wav`, 3 takes of each
digit per voice), --voices of them copied into one folder per digit; recipes/audio/audio_folder.yaml
trains on it twice per seed: `data.split: {val: 0.17, test: 0.17}` and the same with
`group_by: '^([^-]+)-'` (the voice in the file name). Prints both accuracies per seed, and the
mean gap.

    python benchmarks/group_split.py [--voices 12] [--seeds 0 1 2] [--epochs 25]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torchrig

ROOT = Path(__file__).resolve().parent.parent


def make_folder(out: Path, voices: int) -> int:
    """Copies of the spoken-digits clips of the first ``voices`` voices (sorted by name)."""
    files = []
    for split in ("train", "val", "test"):
        ds = torchrig.get_dataset("audio/spoken_digits", split=split)
        files += [(Path(ds.describe(i)), ds.classes[ds.targets[i]]) for i in range(len(ds))]
    keep = sorted({f.name.split("-")[0] for f, _ in files})[:voices]
    count = 0
    for path, label in files:
        if path.name.split("-")[0] in keep:
            (out / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, out / label / path.name)
            count += 1
    return count


def accuracy(folder: Path, run: Path, seed: int, epochs: int, group_by: str | None) -> float:
    split = "{val: 0.17, test: 0.17" + (f", group_by: '{group_by}'" if group_by else "") + "}"
    subprocess.run([sys.executable, "-m", "torchrig", "train", str(ROOT / "recipes/audio/audio_folder.yaml"),
                    "--out", str(run), "--quiet", "--set", f"data.dataset.root={folder}", "--set", f"seed={seed}",
                    "--set", f"data.split={split}", "--set", f"trainer.max_epochs={epochs}"],
                   check=True, stdout=subprocess.DEVNULL)
    return json.loads((run / "summary.json").read_text())["test"]["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "clips"
        n = make_folder(folder, args.voices)
        print(f"{n} clips of {args.voices} voices; {args.epochs} epochs of audio/mel_cnn per run")
        gaps = []
        for seed in args.seeds:
            seen = accuracy(folder, Path(tmp) / f"random-{seed}", seed, args.epochs, None)
            unseen = accuracy(folder, Path(tmp) / f"group-{seed}", seed, args.epochs, "^([^-]+)-")
            gaps.append(seen - unseen)
            print(f"seed {seed}: random split {seen:.3f}   group split (unseen voices) {unseen:.3f}   gap {seen - unseen:+.3f}")
        print(f"mean gap over {len(gaps)} seeds: {statistics.mean(gaps):+.3f} (what a random split overstates)")


if __name__ == "__main__":
    main()
