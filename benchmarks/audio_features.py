"""Log-mel features computed per clip in the Dataset vs a batch at a time in the training step.

Two measurements on the same clips (the spoken-digits data set, built once with espeak-ng), in
one process, alternating the two ways and taking medians:

1. Features per second: a DataLoader over the clips (batch 64, the recipe's workers) whose
   Dataset applies ``audio/log_mel`` to each clip ("per clip"), vs one whose batches of padded
   waveforms go through the same ``LogMel`` module on the training device ("batched").
2. The end-to-end time of one training epoch (train + validation) of
   ``recipes/audio/spoken_digits.yaml`` as shipped (features in the model: ``audio/mel_cnn``
   with ``features: log_mel``), vs the same recipe with ``audio/log_mel`` as the dataset
   transform and ``features: precomputed``.

Ratios > 1 mean batched is faster; the recipe uses the faster way by default.

Run: ``python benchmarks/audio_features.py [--repeats 5] [--epochs 3] [--device auto]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import DataLoader

import torchrig
from torchrig._data import TransformedDataset
from torchrig._device import resolve_device
from torchrig._recipe import load_recipe
from torchrig_audio._features import LogMel
from torchrig_audio._io import pad_collate

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "audio" / "spoken_digits.yaml"


def features_pass(loader: DataLoader, device: torch.device, extract: torch.nn.Module | None) -> float:
    """Seconds to produce the features of every clip, ready on ``device``."""
    start = time.perf_counter()
    with torch.no_grad():
        for (x, lengths), _ in loader:
            x = x.to(device, non_blocking=True)
            if extract is not None:
                x = extract(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def per_sample_recipe(overrides: list[str], n_mels: int, augment: Any) -> list[str]:
    log_mel = f"{{name: audio/log_mel, sample_rate: 16000, n_mels: {n_mels}}}"
    train = f"{{name: audio/compose, transforms: [{augment}, {log_mel}]}}" if augment else log_mel
    return overrides + [f"data.train_transform={train}", f"data.eval_transform={log_mel}",
                        "model.features=precomputed"]


def epoch_seconds(recipe_overrides: list[str], run_dir: Path) -> float:
    """One epoch (train + validation) of the recipe, from loaders to the last validation batch."""
    recipe = load_recipe(RECIPE, recipe_overrides)
    generator = torchrig.seed_everything(int(recipe["seed"]))
    parts = torchrig.build(recipe, generator=generator)  # datasets are cached and preloaded: not part of the epoch
    trainer = torchrig.Trainer(max_epochs=1, device=recipe["trainer"]["device"], precision=recipe["trainer"]["precision"],
                               scheduler_interval=parts.scheduler_interval, progress_bar=False)
    start = time.perf_counter()
    trainer.fit(parts.model, parts.loaders["train"], parts.loss, parts.optimizer, val_loader=parts.loaders["val"],
                scheduler=parts.scheduler, metrics=recipe["metrics"])
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the clips, per way")
    parser.add_argument("--epochs", type=int, default=3, help="timed recipe epochs, per way")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    base = load_recipe(RECIPE, [f"trainer.device={args.device}"])
    dataset_kwargs = {k: v for k, v in base["data"]["dataset"].items() if k != "name"}
    n_mels = int(base["model"].get("n_mels", 64))
    rate = int(dataset_kwargs.get("sample_rate", 16000))
    clips = torchrig.get_dataset(base["data"]["dataset"]["name"], split="train", **dataset_kwargs)
    log_mel = torchrig.get_transform("audio/log_mel", sample_rate=rate, n_mels=n_mels)
    batch, workers = int(base["data"]["batch_size"]), int(base["data"]["num_workers"])

    def loader(ds: Any) -> DataLoader:
        return DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=pad_collate,
                          pin_memory=device.type == "cuda", persistent_workers=workers > 0)

    ways = {"per clip": (loader(TransformedDataset(clips, log_mel)), None),
            "batched": (loader(clips), LogMel(rate, n_mels=n_mels).to(device))}
    for ld, extract in ways.values():  # warm-up
        features_pass(ld, device, extract)
    seconds: dict[str, list[float]] = {k: [] for k in ways}
    for repeat in range(args.repeats):
        for name in (list(ways) if repeat % 2 else list(ways)[::-1]):  # neither way always first
            seconds[name].append(features_pass(*ways[name][:1], device, ways[name][1]))
    per_s = {k: len(clips) / statistics.median(v) for k, v in seconds.items()}
    print(f"{len(clips)} clips, log-mel {n_mels} bands at {rate} Hz, batch {batch}, {workers} workers, "
          f"device {device}, {torch.get_num_threads()} threads")
    for name, r in per_s.items():
        print(f"  features, {name:<9} {r:9.0f} clips/s  (median of {args.repeats})")
    feature_ratio = per_s["batched"] / per_s["per clip"]
    print(f"  ratio batched / per clip = {feature_ratio:.2f}x")

    overrides = [f"trainer.device={args.device}"]
    augment = base["data"].get("train_transform")
    augment_yaml = None if augment is None else yaml.safe_dump(augment, default_flow_style=True).strip()
    recipes = {"batched": overrides, "per clip": per_sample_recipe(overrides, n_mels, augment_yaml)}
    epochs: dict[str, list[float]] = {k: [] for k in recipes}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.epochs + 1):
            for name in (list(recipes) if repeat % 2 else list(recipes)[::-1]):
                took = epoch_seconds(recipes[name], Path(tmp) / f"{name}-{repeat}")
                if repeat:  # the first round warms up
                    epochs[name].append(took)
    for name, v in epochs.items():
        print(f"  recipe epoch, {name:<9} {statistics.median(v):6.2f} s  (median of {len(v)}, train + val)")
    epoch_ratio = statistics.median(epochs["per clip"]) / statistics.median(epochs["batched"])
    print(f"  ratio per-clip epoch / batched epoch = {epoch_ratio:.2f}x  "
          f"({'batched' if epoch_ratio >= 1 else 'per clip'} is faster; the recipe computes features in the model)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
