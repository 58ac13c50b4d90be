"""The share of a `torchrig train` run spent on interpretation: the plot of the first training
batch and the held-out pass that writes per-class scores, the confusion matrix and the top losses
(summary.json's `interpretation_s`), against the run's wall time (summary.json's `wall_time_s`),
both measured inside the same run. Issue 15's target: at most 5% of a digits run.

Trains recipes/vision/digits.yaml (its full 20 epochs unless --epochs) --repeats times through
the CLI, as a user does, and prints each share and the median.

    python benchmarks/interpretation_cost.py [--epochs 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shares = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            run = Path(out) / "run"
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "torchrig", "train", str(ROOT / "recipes/vision/digits.yaml"),
                            "--out", str(run), "--quiet", "--set", f"trainer.max_epochs={args.epochs}"],
                           check=True, stdout=subprocess.DEVNULL)
            process = time.perf_counter() - start
            summary = json.loads((run / "summary.json").read_text())
            tick = time.perf_counter()
            subprocess.run([sys.executable, "-m", "torchrig", "report", str(run)], check=True, stdout=subprocess.DEVNULL)
            report = time.perf_counter() - tick
        share = summary["interpretation_s"] / summary["wall_time_s"]
        shares.append(share)
        print(f"run {i + 1}: train {summary['wall_time_s']:.1f} s (the process {process:.1f} s), interpretation "
              f"{summary['interpretation_s']:.2f} s = {share:.1%}; `torchrig report` as its own process {report:.1f} s")
    print(f"interpretation share of a digits run ({args.epochs} epochs), median of {args.repeats}: "
          f"{statistics.median(shares):.1%}  (target <= 5%)")


if __name__ == "__main__":
    main()
