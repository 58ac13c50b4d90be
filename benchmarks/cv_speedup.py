"""`torchrig cv` with 5 folds: 2 joblib workers (1 thread each) against the folds one after the
other (in this process, all cores), timed in the same process, alternating the two sides.

Trains a recipe (default recipes/vision/digits.yaml) for --epochs epochs per fold. Issue 16's
target: at least 1.6x on 2 cores.

It also times one fold alone at 1 thread (``T_1``; ``T_all``, a fold at all cores, is the
sequential run's time over ``K``), to print the ceiling that any scheduling of whole folds on ``jobs`` workers has here: sequential costs ``K * T_all``; the
workers run the full waves at ``T_1`` each and the last, smaller wave at ``T_all`` (its folds get
the cores), so the best speedup is ``K * T_all / (waves * T_1 + T_all)``, below 2 whenever a
fold trains faster on 2 threads than on 1 (for 5 folds: 5 / (2 s + 1), s = T_1 / T_all).
No schedule at all beats ``cores / s`` here: a fold costs the fewest core-seconds at 1 thread
(``T_1``; at ``n`` threads it costs ``n T_1 / s_n``), so ``K`` folds need at least ``K T_1 / cores``
seconds, against ``K T_all`` for the sequential run.

    python benchmarks/cv_speedup.py [--recipe R] [--set K=V ...] [--folds 5] [--epochs 5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

import torchrig
from torchrig._cv import _fold_run

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes/vision/digits.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe override")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cores, jobs = os.cpu_count() or 1, 2
    overrides = [*args.set, f"trainer.max_epochs={args.epochs}"]
    times: dict[int, list[float]] = {1: [], 2: []}
    fold: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        _fold_run(args.recipe, [*args.set, "trainer.max_epochs=1"], 1, args.folds, f"{tmp}/warm", cores)  # imports, caches
        for r in range(args.repeats):
            start = time.perf_counter()  # one fold alone at 1 thread: with T_all, its thread scaling s
            _fold_run(args.recipe, overrides, 1, args.folds, f"{tmp}/fold-{r}", 1)
            fold.append(time.perf_counter() - start)
            for n_jobs in (1, jobs):
                start = time.perf_counter()
                torchrig.cross_validate(args.recipe, folds=args.folds, overrides=overrides,
                                        out=Path(tmp) / f"cv-{n_jobs}-{r}", n_jobs=n_jobs)
                times[n_jobs].append(time.perf_counter() - start)
                print(f"round {r + 1}, {n_jobs} job(s): {times[n_jobs][-1]:.1f} s", flush=True)
    torch.set_num_threads(cores)
    one, two = statistics.median(times[1]), statistics.median(times[jobs])
    t1, tall = statistics.median(fold), one / args.folds
    ceiling = args.folds * tall / (args.folds // jobs * t1 + (tall if args.folds % jobs else 0))
    print(f"a fold: {t1:.1f} s alone at 1 thread, {tall:.1f} s at {cores} (the sequential run's mean; s = {t1 / tall:.2f}); "
          f"ceiling for {args.folds} whole folds on {jobs} workers: {ceiling:.2f}x; "
          f"for any schedule: {cores * tall / t1:.2f}x")
    print(f"{args.folds} folds x {args.epochs} epochs ({Path(args.recipe).name}): sequential {one:.1f} s, "
          f"{jobs} workers {two:.1f} s: speedup {one / two:.2f}x ({one / two / ceiling:.0%} of the ceiling; "
          "target >= 1.6x)")


if __name__ == "__main__":
    main()
