"""How long `torchrig --help` takes, as a ratio of `python -c "import torch"`.

The CLI must answer help without importing torch or any plugin (target ratio < 0.3). Both
commands run as fresh processes, interleaved, several times; medians are compared.

``--predict`` also times `torchrig predict RUN note.txt` on a text run, start to finish (target
ratio <= 1.5): a lookup of a text component imports the text plugin alone, not torchvision or
torchaudio. The run is trained first (a small CSV, one epoch) in a temporary folder.

Run: ``python benchmarks/cli_startup.py [--repeats 7] [--predict]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "torchrig --help": [sys.executable, "-m", "torchrig", "--help"],
    "import torch": [sys.executable, "-c", "import torch"],
}


def time_once(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--check", action="store_true", help="exit 1 if the ratio misses 0.3")
    parser.add_argument("--predict", action="store_true", help="also time `torchrig predict` on a text run")
    args = parser.parse_args()
    if args.predict:
        COMMANDS["torchrig predict (text)"] = predict_command()
    for cmd in COMMANDS.values():  # warm the file cache
        time_once(cmd)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, cmd in COMMANDS.items():
            times[name].append(time_once(cmd))
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratio = medians["torchrig --help"] / medians["import torch"]
    for name, median in medians.items():
        print(f"{name:<16} median {median * 1000:7.1f} ms over {args.repeats} runs")
    print(f"ratio torchrig --help / import torch = {ratio:.3f}  (target < 0.3: {'PASS' if ratio < 0.3 else 'FAIL'})")
    ok = ratio < 0.3
    if args.predict:
        predict = medians["torchrig predict (text)"] / medians["import torch"]
        ok = ok and predict <= 1.5
        print(f"ratio torchrig predict (text run) / import torch = {predict:.3f}  "
              f"(target <= 1.5: {'PASS' if predict <= 1.5 else 'FAIL'})")
    return 1 if args.check and not ok else 0


def predict_command() -> list[str]:
    """Train a one-epoch text run on a small CSV; the command predicts a text file with it."""
    import tempfile
    from pathlib import Path

    work = Path(tempfile.mkdtemp(prefix="cli-startup-"))
    rows = [("what a great film", "pos"), ("an awful boring film", "neg")] * 20
    (work / "r.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    (work / "note.txt").write_text("a great film")
    recipe = Path(__file__).resolve().parents[1] / "recipes/text/text_csv.yaml"
    subprocess.run([sys.executable, "-m", "torchrig", "train", str(recipe), "--out", str(work / "run"), "--quiet",
                    "--set", f"data.dataset.path={work / 'r.csv'}", "--set", "trainer.max_epochs=1"],
                   check=True, stdout=subprocess.DEVNULL)
    return [sys.executable, "-m", "torchrig", "predict", str(work / "run"), str(work / "note.txt")]


if __name__ == "__main__":
    raise SystemExit(main())
