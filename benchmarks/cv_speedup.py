"""`torchrig cv` with 5 folds: 2 joblib workers (1 thread each) against the folds one after the
other (in this process, all cores), timed in the same process, alternating the two sides.

Trains recipes/vision/digits.yaml for --epochs epochs per fold. Issue 16's target: at least
1.6x on 2 cores.

    python benchmarks/cv_speedup.py [--folds 5] [--epochs 5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torchrig

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    recipe = ROOT / "recipes/vision/digits.yaml"
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for jobs in (1, 2):
                start = time.perf_counter()
                torchrig.cross_validate(recipe, folds=args.folds, overrides=[f"trainer.max_epochs={args.epochs}"],
                                        out=Path(tmp) / f"cv-{jobs}-{r}", n_jobs=jobs)
                times[jobs].append(time.perf_counter() - start)
                print(f"round {r + 1}, {jobs} job(s): {times[jobs][-1]:.1f} s", flush=True)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"{args.folds} folds x {args.epochs} epochs: sequential {one:.1f} s, 2 workers {two:.1f} s: "
          f"speedup {one / two:.2f}x (target >= 1.6x)")


if __name__ == "__main__":
    main()
