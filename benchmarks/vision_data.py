"""Images per second through ``vision/image_folder`` + ``vision/train_preset`` + DataLoader,
as a ratio of plain ``torchvision.datasets.ImageFolder`` with the same v2 transforms and files.

Target: ratio >= 0.97 (the wrapper costs nothing). Both pipelines read the same JPEG files
(written once into a temporary folder), with the same DataLoader settings, alternating epoch by
epoch in one process; medians over the timed epochs are compared.

Run: ``python benchmarks/vision_data.py [--images 400] [--size 160] [--repeats 12] [--workers 2]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

import torchrig
from torchrig._data import TransformedDataset


def write_images(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(size, size + size // 3, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.jpg", quality=90)


def epoch_seconds(loader: DataLoader) -> float:
    start = time.perf_counter()
    for x, _ in loader:
        pass
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=160, help="image height in pixels")
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--check", action="store_true", help="exit 1 if the ratio misses 0.97")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_images(root, args.images, args.size)
        preset = torchrig.get_transform("vision/train_preset", size=128)
        ours = TransformedDataset(torchrig.get_dataset("vision/image_folder", root=str(root)), preset)
        theirs = ImageFolder(str(root), transform=preset)
        assert len(ours) == len(theirs) == args.images

        def loader(ds: torch.utils.data.Dataset) -> DataLoader:
            return DataLoader(ds, batch_size=32, shuffle=True, num_workers=args.workers,
                              persistent_workers=args.workers > 0)

        loaders = {"torchrig": loader(ours), "torchvision": loader(theirs)}
        for ld in loaders.values():  # warm-up: workers, file cache
            epoch_seconds(ld)
        times: dict[str, list[float]] = {k: [] for k in loaders}
        for repeat in range(args.repeats):
            order = list(loaders) if repeat % 2 else list(loaders)[::-1]  # neither side always first
            for name in order:
                times[name].append(epoch_seconds(loaders[name]))
    rate = {k: args.images / statistics.median(v) for k, v in times.items()}
    ratio = rate["torchrig"] / rate["torchvision"]
    for name, r in rate.items():
        print(f"{name:<12} {r:8.1f} images/s (median of {args.repeats} epochs, {args.workers} workers)")
    print(f"ratio torchrig / torchvision = {ratio:.3f}  (target >= 0.97: {'PASS' if ratio >= 0.97 else 'FAIL'})")
    return 1 if args.check and ratio < 0.97 else 0


if __name__ == "__main__":
    raise SystemExit(main())
