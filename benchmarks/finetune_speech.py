"""Synthetic to "real" speech: does starting from a spoken-digits run help on a small folder of
recordings in other voices and rooms? Prints fine-tuned and from-scratch test accuracy.

1. A folder of digit recordings unlike the training data of ``audio/spoken_digits``: espeak-ng's
   non-English voices (German, French, Spanish, ... speakers saying the English words; the data
   set only has English accents), speeds and pitches outside its ranges, then sox: reverb, a
   telephone band or a room tone, tempo changes and added noise. Train: at most 5 clips per word
   (5 voices); val and test: other voices, never heard in training.
2. Pretrain: ``recipes/audio/spoken_digits.yaml`` (or ``--pretrained RUN_DIR``).
3. ``recipes/audio/finetune_folder.yaml`` on that folder with ``model.weights=<pretrained run>``,
   against the same recipe from scratch (no weights, no freezing), on the same split, seeds 0..N-1.

    python benchmarks/finetune_speech.py [--pretrained runs/spoken-digits] [--seeds 3] [--out DIR]

Needs espeak-ng and sox (``apt-get install espeak-ng sox``).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# speaker "voices": espeak-ng languages whose speakers say the English words with their accent
VOICES = {"train": ["de", "fr", "es", "it", "nl"], "val": ["pl", "pt"], "test": ["sv", "cs", "ro", "hu", "fi"]}
EFFECTS = [  # sox effect chains: rooms, lines and tempos the synthetic set never had
    ["reverb", "60", "50", "80"],
    ["sinc", "300-3400", "reverb", "20"],  # a telephone line
    ["tempo", "1.25", "reverb", "40"],
    ["tempo", "0.8", "highpass", "200"],
    ["reverb", "90", "70", "100", "lowpass", "3000"],
]


def make_folder(root: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    for split, voices in VOICES.items():
        for voice in voices:
            for digit, word in enumerate(WORDS):
                folder = root / split / str(digit)
                folder.mkdir(parents=True, exist_ok=True)
                raw, out = folder / f"{voice}-{word}.raw.wav", folder / f"{voice}-{word}.wav"
                speed = rng.choice([rng.randint(80, 110), rng.randint(240, 300)])
                subprocess.run(["espeak-ng", "-v", f"{voice}+{rng.choice(['m1', 'f2', 'm4', 'f4'])}", "-s", str(speed),
                                "-p", str(rng.randint(5, 95)), "-w", str(raw), word], check=True, capture_output=True)
                noise = folder / f"{voice}-{word}.noise.wav"
                seconds = float(subprocess.run(["soxi", "-D", str(raw)], check=True, capture_output=True,
                                               text=True).stdout) + 1.0
                subprocess.run(["sox", "-n", "-r", "22050", "-c", "1", str(noise), "synth", f"{seconds:.2f}",
                                rng.choice(["pinknoise", "brownnoise", "whitenoise"]), "vol",
                                f"{rng.uniform(0.01, 0.06):.3f}"], check=True)
                effected = folder / f"{voice}-{word}.fx.wav"
                subprocess.run(["sox", str(raw), str(effected), "pad", "0.3", "0.3", *rng.choice(EFFECTS)], check=True,
                               capture_output=True)
                subprocess.run(["sox", "-m", str(effected), str(noise), str(out), "trim", "0", f"{seconds:.2f}"],
                               check=True, capture_output=True)
                for tmp in (raw, noise, effected):
                    tmp.unlink()
    return root


def train(recipe: Path, out: Path, *overrides: str) -> dict:
    sets = [a for o in overrides for a in ("--set", o)]
    result = subprocess.run([sys.executable, "-m", "torchrig", "train", str(recipe), "--out", str(out), "--quiet",
                             *sets], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return json.loads((out / "summary.json").read_text())["test"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrained", help="a spoken-digits run dir (default: train one)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", help="keep the folder and runs here (default: a temporary folder)")
    args = parser.parse_args()
    if not shutil.which("espeak-ng") or not shutil.which("sox"):
        raise SystemExit("needs espeak-ng and sox: apt-get install espeak-ng sox")
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="finetune-speech-"))
    clips = make_folder(work / "clips")
    counts = {s: len(list((clips / s).rglob("*.wav"))) for s in VOICES}
    print(f"folder: {clips} ({counts['train']} train clips, {counts['val']} val, {counts['test']} test)", flush=True)
    pretrained = Path(args.pretrained) if args.pretrained else work / "spoken-digits"
    if not args.pretrained:
        print("pretraining recipes/audio/spoken_digits.yaml ...", flush=True)
        scores = train(REPO / "recipes/audio/spoken_digits.yaml", pretrained)
        print(f"pretrained on synthetic digits: test accuracy {scores['accuracy']:.3f}", flush=True)
    recipe = REPO / "recipes/audio/finetune_folder.yaml"
    import yaml

    # from scratch with the same architecture as the pretrained run (its mel bands, widths, ...)
    model = yaml.safe_load((pretrained / "recipe.yaml").read_text())["model"]
    same = [f"model.{k}={v}" for k, v in model.items() if k not in ("name", "num_classes", "weights", "strict",
                                                                   "weights_sha256")]
    tuned, scratch = [], []
    for seed in range(args.seeds):
        common = (f"data.dataset.root={clips}", f"seed={seed}")
        tuned.append(train(recipe, work / f"tuned-{seed}", *common, f"model.weights={pretrained}")["accuracy"])
        scratch.append(train(recipe, work / f"scratch-{seed}", *common, "model.weights=null", *same,
                             "trainer.finetune=null")["accuracy"])
        print(f"seed {seed}: fine-tuned {tuned[-1]:.3f}, from scratch {scratch[-1]:.3f}", flush=True)
    gain = statistics.mean(tuned) - statistics.mean(scratch)
    print(f"test accuracy on unseen voices, mean of {args.seeds} seeds: fine-tuned {statistics.mean(tuned):.3f}, "
          f"from scratch {statistics.mean(scratch):.3f}: {100 * gain:+.1f} points (target >= +10)")


if __name__ == "__main__":
    main()
