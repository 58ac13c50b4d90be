"""How far the scores of the shipped recipes spread over seeds and thread counts.

The accuracy floors in tests/ are set from these numbers, not from one lucky run. A seeded run
on one machine is deterministic; on another machine (other BLAS kernels, another core count) the
float rounding differs, training is chaotic, and the result moves about as much as it does
between seeds. So each recipe is trained with seeds 0..N-1 on 1 and 2 threads, and the printout
gives min / median / max beside the floor its test asserts, and the margin between them.

The ``ddp`` case trains tests/core/test_ddp.py's recipe on one process (batch 64) and on two
(torchrun, 2 x 32) and prints, per epoch, how far their losses are apart, and the test
accuracies: the basis of that test's bounds.

    python benchmarks/spread.py                       # every case, 5 seeds, 1 and 2 threads
    python benchmarks/spread.py --cases digits --seeds 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fortunes_baseline() -> float:
    """TF-IDF + logistic regression on the fortunes recipe's split: the floor of its test."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score

    import torchrig
    from torchrig._data import carve

    ds = torchrig.get_dataset("text/fortunes")
    parts = carve(ds, {"val": 0.1, "test": 0.2}, seed=0, stratify=True)
    train, test = [ds[i] for i in parts["train"].indices], [ds[i] for i in parts["test"].indices]
    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2))
    clf = LogisticRegression(C=10, max_iter=2000).fit(vec.fit_transform([t for t, _ in train]), [y for _, y in train])
    return float(accuracy_score([y for _, y in test], clf.predict(vec.transform([t for t, _ in test]))))


# name: (recipe, the floor its test asserts on test accuracy, where that test lives)
CASES = {
    "digits": ("recipes/vision/digits.yaml", lambda: 0.985, "tests/plugins/vision/test_vision_recipes.py"),
    "spoken_digits": ("recipes/audio/spoken_digits.yaml", lambda: 0.95, "tests/plugins/audio/test_audio_recipes.py"),
    "fortunes": ("recipes/text/fortunes.yaml", lambda: fortunes_baseline() - 0.10,
                 "tests/plugins/text/test_text_datasets.py"),
}


def run(recipe: str, seed: int, threads: int, out: Path, cache: Path) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TORCHRIG_CACHE": str(cache)}
    subprocess.run([sys.executable, "-m", "torchrig", "train", str(REPO / recipe), "--out", str(out), "--quiet",
                    "--set", f"seed={seed}"], check=True, env=env, capture_output=True, cwd=out.parent)
    return json.loads((out / "summary.json").read_text())["test"]


def ddp_pair(seed: int, threads: int, tmp: Path) -> str:
    import csv
    import importlib.util

    spec = importlib.util.spec_from_file_location("test_ddp", REPO / "tests/core/test_ddp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp / "ddp.yaml").write_text(module.RECIPE)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    results = []
    for name, extra in (("one", []), ("ddp", ["--nproc", "2", "--set", "data.batch_size=32"])):
        out = tmp / f"ddp-{name}-{threads}-{seed}"
        subprocess.run([sys.executable, "-m", "torchrig", "train", str(tmp / "ddp.yaml"), "--out", str(out), "--quiet",
                        "--set", f"seed={seed}", *extra], check=True, env=env, capture_output=True, cwd=tmp)
        rows = list(csv.DictReader((out / "metrics.csv").open()))
        results.append((rows, json.loads((out / "summary.json").read_text())["test"]["accuracy"]))
    (r1, a1), (r2, a2) = results
    rel = " ".join(f"{abs(float(a['train_loss']) - float(b['train_loss'])) / float(a['train_loss']):.0e}"
                   for a, b in zip(r1, r2))
    return (f"train_loss apart by epoch (relative): {rel} | test accuracy one {a1:.4f} ddp {a2:.4f} "
            f"gap {abs(a1 - a2):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join([*CASES, "ddp"]))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"  # the spoken-digits set is synthesized once for all its runs
        for name in args.cases.split(","):
            if name == "ddp":
                for threads in map(int, args.threads.split(",")):
                    for seed in range(args.seeds):
                        print(f"  ddp threads={threads} seed={seed}: {ddp_pair(seed, threads, Path(tmp))}", flush=True)
                continue
            recipe, floor, where = CASES[name]
            scores = []
            for threads in map(int, args.threads.split(",")):
                for seed in range(args.seeds):
                    test = run(recipe, seed, threads, Path(tmp) / f"{name}-{threads}-{seed}", cache)
                    scores.append(test["accuracy"])
                    others = "".join(f", {k} {v:.4f}" for k, v in test.items() if k not in ("accuracy", "loss"))
                    print(f"  {name} threads={threads} seed={seed}: test accuracy {test['accuracy']:.4f}{others}",
                          flush=True)
            lowest = floor()
            print(f"{name}: test accuracy min {min(scores):.4f} median {statistics.median(scores):.4f} "
                  f"max {max(scores):.4f} over {len(scores)} runs; floor in {where}: {lowest:.4f}; "
                  f"margin {min(scores) - lowest:+.4f}", flush=True)


if __name__ == "__main__":
    main()
