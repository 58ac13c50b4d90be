"""The learning-rate range test's cost as a fraction of one training epoch, in one process.

Builds recipes/vision/digits.yaml, then alternates (--repeats times) one epoch of Trainer.fit and
one `torchrig.lr_find` sweep of --steps steps on the same parts, and prints the medians and
their ratio, next to the deterministic figure: sweep steps / batches per epoch.

    python benchmarks/lr_find_cost.py [--steps 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import torchrig

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    parts = torchrig.build(torchrig.load_recipe(ROOT / "recipes/vision/digits.yaml"))
    train = parts.loaders["train"]
    trainer = torchrig.Trainer(max_epochs=1, progress_bar=False)
    epoch, sweep = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        torchrig.Trainer(max_epochs=1, progress_bar=False).fit(parts.model, train, parts.loss, parts.optimizer)
        epoch.append(time.perf_counter() - start)
        optimizer = torch.optim.AdamW(parts.model.parameters(), lr=1e-3)
        start = time.perf_counter()
        torchrig.lr_find(trainer, parts.model, train, parts.loss, optimizer, num_steps=args.steps)
        sweep.append(time.perf_counter() - start)
    e, s = statistics.median(epoch), statistics.median(sweep)
    print(f"one epoch ({len(train)} batches of {train.batch_size}): {e:.2f} s; lr_find ({args.steps} steps): {s:.2f} s")
    print(f"lr_find / epoch: {s / e:.2f}x   (steps / batches per epoch: {args.steps / len(train):.2f})")


if __name__ == "__main__":
    main()
