"""Building a recipe's data: datasets per split (own or carved), transforms, loaders."""

from __future__ import annotations

import bisect
import inspect
import os
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler, Sampler, Subset

from . import protocols
from ._errors import InputError, TorchrigError
from ._recipe import Recipe, component
from ._registry import get_component, get_entry

SPLITS = ("train", "val", "test")


class TransformedDataset(Dataset):
    """Apply ``transform`` to each sample's inputs (not its target); keep ``classes``."""

    def __init__(self, dataset: Dataset, transform: Callable | None) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        inputs, target = self.dataset[index]
        return (self.transform(inputs) if self.transform is not None else inputs), target


class PooledDataset(ConcatDataset):
    """A dataset's own train and val splits as one pool, for ``torchrig cv`` to cut folds from.

    What a plugin's dataset carries for the loop (``classes``, ``collate_fn``, ``show``,
    ``model_kwargs``, ``preprocessing``) is the first part's; ``describe`` and ``lengths`` span
    every part. (A bare ``ConcatDataset`` hides them all: padded audio would not batch.)
    """

    _SHARED = ("classes", "collate_fn", "show", "model_kwargs", "preprocessing")

    def __getattr__(self, name: str) -> Any:
        if name in PooledDataset._SHARED:
            return getattr(self.datasets[0], name)
        if name == "describe" and protocols.describe(self.datasets[0], 0) is not None:
            return self._describe
        if name == "lengths" and all(protocols.lengths(protocols.base_dataset(p)) is not None for p in self.datasets):
            return [n for part in self.datasets for n in lengths_of(part)]
        raise AttributeError(name)

    def _describe(self, index: int) -> str | None:
        part = bisect.bisect_right(self.cumulative_sizes, index)
        return protocols.describe(self.datasets[part], index - (self.cumulative_sizes[part - 1] if part else 0))


def targets_of(dataset: Dataset) -> list[Any]:
    """The targets of every sample: the dataset's ``targets`` if it has them, else read them."""
    if isinstance(dataset, Subset):
        base = targets_of(dataset.dataset)
        return [base[i] for i in dataset.indices]
    if isinstance(dataset, ConcatDataset):
        return [t for part in dataset.datasets for t in targets_of(part)]
    targets = protocols.targets(dataset)
    if targets is not None:
        return [int(t) if isinstance(t, torch.Tensor) and t.ndim == 0 else t for t in targets]
    return [_plain(dataset[i][1]) for i in range(len(dataset))]


def lengths_of(dataset: Dataset, transform: Any = None) -> list[int]:
    """Each sample's length, for length bucketing: the dataset's ``lengths`` if it has them,
    else the transform's ``lengths(inputs)`` over the raw inputs."""
    if isinstance(dataset, Subset):
        base = protocols.lengths(dataset.dataset)
        if base is not None:
            return [int(base[i]) for i in dataset.indices]
    elif (own := protocols.lengths(dataset)) is not None:
        return [int(n) for n in own]
    measure = protocols.lengths(transform)
    if measure is None:
        raise TorchrigError(f"data.bucket_by_length needs each sample's length, but neither the dataset "
                            f"({type(dataset).__name__}) has `lengths` nor the train_transform has "
                            "`lengths(inputs)`. Remove bucket_by_length for this dataset.")
    return [int(n) for n in measure(dataset[i][0] for i in range(len(dataset)))]


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of samples of similar length, in random order: less padding per batch.

    Each epoch the indices are shuffled and cut into pools of ``batch_size * pool`` samples;
    each pool is sorted by length and cut into batches; then the batches are shuffled. So a
    batch holds neighbours in length, while the order of batches (and which samples meet) still
    changes every epoch. Deterministic given ``generator`` (saved and restored on resume).

    Args:
        lengths: one length per sample (tokens, characters, seconds: any size measure).
        batch_size: samples per batch.
        shuffle: shuffle samples and batches (``False``: pools in index order, for evaluation).
        drop_last: drop the final short batch.
        pool: batches per sorting pool; larger sorts more globally but mixes less.
        generator: the random source (a fresh seed from torch's global RNG if not given).

    Example::

        sampler = BucketBatchSampler([len(t) for t in texts], batch_size=32, generator=g)
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=encoder.collate_fn)
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, shuffle: bool = True, drop_last: bool = False,
                 pool: int = 50, generator: torch.Generator | None = None) -> None:
        if batch_size < 1 or pool < 1:
            raise TorchrigError(f"BucketBatchSampler: batch_size and pool must be >= 1, got {batch_size}, {pool}.")
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        if self.lengths.ndim != 1 or len(self.lengths) == 0:
            raise TorchrigError("BucketBatchSampler: lengths must be a non-empty list of numbers, one per sample.")
        self.batch_size, self.shuffle, self.drop_last, self.pool = batch_size, shuffle, drop_last, pool
        if generator is None and shuffle:
            generator = torch.Generator().manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        self.generator = generator

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        n, size = len(self.lengths), self.batch_size
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        batches: list[torch.Tensor] = []
        step = size * self.pool
        for start in range(0, n, step):
            chunk = order[start:start + step]
            chunk = chunk[torch.sort(self.lengths[chunk], stable=True).indices]
            batches += list(chunk.split(size))
        if self.drop_last and len(batches[-1]) < size:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]
        for batch in batches:
            yield batch.tolist()


class BalancedSampler(Sampler[int]):
    """Each epoch, ``len(targets)`` samples drawn with replacement so that every class is drawn
    equally often on average (a sample's weight is 1 / its class's count): the seeded, resumable
    and DDP-ready form of ``WeightedRandomSampler``.

    The draw depends only on ``seed`` and the epoch (``set_epoch``, which the Trainer calls), so
    a resumed run draws what the interrupted one would have. Under DDP, :meth:`shard` gives rank
    ``r`` of ``w`` every ``w``-th index of the same draw: the ranks' k-th batches together are one
    process's k-th batch.

    Example::

        sampler = BalancedSampler(dataset.targets, seed=0)
        loader = DataLoader(dataset, batch_size=32, sampler=sampler)
        for epoch in range(1, 6):
            sampler.set_epoch(epoch)
            for x, y in loader: ...
    """

    def __init__(self, targets: Sequence[Any], *, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        t = torch.as_tensor([int(x) for x in targets], dtype=torch.long)
        if t.ndim != 1 or len(t) == 0:
            raise TorchrigError("BalancedSampler needs one class index per sample.")
        counts = torch.bincount(t)
        self.targets, self.weights = t, (1.0 / counts.double())[t]
        self.seed, self.epoch, self.num_replicas, self.rank = int(seed), 0, num_replicas, rank
        self.total = -(-len(t) // num_replicas) * num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def shard(self, num_replicas: int, rank: int) -> BalancedSampler:
        """This sampler's draw, rank ``rank`` of ``num_replicas``'s share."""
        other = BalancedSampler(self.targets.tolist(), seed=self.seed, num_replicas=num_replicas, rank=rank)
        other.epoch = self.epoch
        return other

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, self.total, replacement=True, generator=generator)
        return iter(drawn[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.total // self.num_replicas


def _plain(t: Any) -> Any:
    return t.item() if isinstance(t, torch.Tensor) and t.ndim == 0 else t


def carve(dataset: Dataset, fractions: dict[str, float], *, seed: int, stratify: bool,
          groups: Sequence[Any] | None = None) -> dict[str, Subset]:
    """Split ``dataset`` into ``train`` and the named fractions, seeded (and stratified by class).

    With ``groups`` (one label per sample: a speaker, a patient), whole groups go to one split
    each, so no group is in two splits: the groups are shuffled (seeded) and each split takes
    groups until it holds its share of the samples.

    The split depends only on ``seed``, the targets and the groups, so evaluate/predict can
    recompute it.
    """
    n = len(dataset)
    generator = torch.Generator().manual_seed(seed)
    if groups is not None:
        parts = _carve_groups(groups, fractions, generator)
    else:
        parts = _carve_samples(dataset, fractions, generator, stratify)
    for name, idx in parts.items():
        if not idx:
            more = " (whole groups: fewer, larger groups leave less room)" if groups is not None else ""
            raise TorchrigError(f"The {name} split is empty: the dataset has {n} samples{more}. "
                                "Lower data.split fractions or use a larger dataset.")
    return {name: Subset(dataset, sorted(idx)) for name, idx in parts.items()}


def _carve_samples(dataset: Dataset, fractions: dict[str, float], generator: torch.Generator,
                   stratify: bool) -> dict[str, list[int]]:
    n = len(dataset)
    strata: list[list[int]]
    if stratify:
        by_class: dict[Any, list[int]] = {}
        for i, t in enumerate(targets_of(dataset)):
            by_class.setdefault(t, []).append(i)
        strata = [by_class[k] for k in sorted(by_class, key=str)]
    else:
        strata = [list(range(n))]
    parts: dict[str, list[int]] = {name: [] for name in ("train", *fractions)}
    for stratum in strata:
        order = [stratum[i] for i in torch.randperm(len(stratum), generator=generator).tolist()]
        start = 0
        for name, fraction in fractions.items():
            count = round(fraction * len(stratum))
            parts[name] += order[start:start + count]
            start += count
        parts["train"] += order[start:]
    return parts


def _carve_groups(groups: Sequence[Any], fractions: dict[str, float],
                  generator: torch.Generator) -> dict[str, list[int]]:
    import warnings

    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(str(g), []).append(i)
    names = sorted(members)
    order = [names[i] for i in torch.randperm(len(names), generator=generator).tolist()]
    parts: dict[str, list[int]] = {name: [] for name in ("train", *fractions)}
    n = len(groups)
    targets = {name: round(fraction * n) for name, fraction in fractions.items()}
    for group in order:
        size = len(members[group])
        # the first split still short of its share takes the group; the rest go to train
        open_ = [name for name in fractions if len(parts[name]) < targets[name]]
        if not open_:
            parts["train"] += members[group]
            continue
        name = open_[0]
        if size > targets[name] and not parts[name]:
            warnings.warn(f"data.split.group_by: group {group!r} has {size} samples, more than the {name} share "
                          f"({targets[name]} of {n}); the {name} split holds it whole, so it is larger than asked.",
                          stacklevel=2)
        parts[name] += members[group]
    return parts


def groups_of(dataset: Dataset, group_by: str) -> list[str]:
    """Each sample's group: the dataset's field ``group_by`` (a sequence, one entry per sample),
    or else ``group_by`` as a regular expression on each sample's file name (its first
    parenthesised group, or the whole match), e.g. ``'^[^_]+_([^_]+)_'`` for ``7_jackson_32.wav``."""
    import re

    if isinstance(dataset, ConcatDataset):  # a dataset's own train and val, pooled for cv
        return [g for part in dataset.datasets for g in groups_of(part, group_by)]
    field = getattr(dataset, group_by, None) if group_by.isidentifier() else None
    if field is not None and not callable(field):
        values = list(field)
        if len(values) != len(dataset):
            raise TorchrigError(f"data.split.group_by: the dataset's {group_by!r} has {len(values)} entries for "
                                f"{len(dataset)} samples.")
        return [str(v) for v in values]
    try:
        pattern = re.compile(group_by)
    except re.error as exc:
        raise TorchrigError(f"data.split.group_by: {group_by!r} is neither a field of the dataset "
                            f"({type(dataset).__name__}) nor a valid regular expression ({exc}).") from None
    found = []
    for i in range(len(dataset)):
        source = protocols.describe(dataset, i)
        if source is None:
            raise TorchrigError(f"data.split.group_by: {type(dataset).__name__} has no field {group_by!r} and does "
                                "not name its samples' files (describe), so a regular expression has nothing to read.")
        name = Path(source).name
        match = pattern.search(name)
        if match is None:
            raise TorchrigError(f"data.split.group_by: {group_by!r} matches no group in the file name {name!r} "
                                f"(of {source!r}). Write a regular expression whose first group is the group, "
                                "e.g. '^[^_]+_([^_]+)_' for 7_jackson_32.wav.")
        found.append(match.group(1) if pattern.groups else match.group(0))
    return found


def build_splits(recipe: Recipe) -> tuple[dict[str, Dataset], dict[str, Any]]:
    """The train/val/test datasets (before transforms), and what the data says about itself:
    ``classes`` (label names), ``model_kwargs`` (sizes the model needs, e.g. ``in_channels``) and
    ``skipped`` (unreadable samples left out, per split)."""
    data = recipe["data"]
    name, kwargs = component(data["dataset"])
    builder = get_entry("dataset", name).builder
    splits: dict[str, Dataset] = {}
    try:
        if "split" in inspect.signature(builder).parameters:
            for split in SPLITS:
                ds = get_component("dataset", name, split=split, **kwargs)
                if ds is not None:
                    splits[split] = ds
        else:
            splits["train"] = get_component("dataset", name, **kwargs)
    except TorchrigError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:
        raise recipe.error(("data", "dataset"), f"building {name!r} failed: {exc}") from exc
    if "train" not in splits:
        raise recipe.error(("data", "dataset"), f"{name!r} has no 'train' split.")
    info = {
        "classes": protocols.classes(splits["train"]),
        "model_kwargs": protocols.model_kwargs(splits["train"]),
        "skipped": {s: len(protocols.skipped(d)) for s, d in splits.items() if protocols.skipped(d)},
    }
    fractions = {s: float(data["split"].get(s, 0)) for s in ("val", "test")
                 if s not in splits and float(data["split"].get(s, 0)) > 0}
    group_by = data["split"].get("group_by")
    if data["split"].get("folds"):
        _fold(recipe, splits, info, group_by)
    elif fractions:
        groups = groups_of(splits["train"], group_by) if group_by else None
        carved = carve(splits["train"], fractions, seed=int(recipe["seed"]),
                       stratify=recipe["task"] == "classification", groups=groups)
        splits.update(carved)
        if groups is not None:
            info["groups"] = {name: len({groups[i] for i in part.indices}) for name, part in carved.items()}
    elif group_by:
        raise recipe.error(("data", "split", "group_by"), f"group_by has nothing to split: {name!r} gives its own "
                                                          "val and test splits, or data.split asks for none.")
    return splits, info


def _fold(recipe: Recipe, splits: dict[str, Dataset], info: dict[str, Any], group_by: str | None) -> None:
    """``data.split: {folds: K, fold: i}`` (what ``torchrig cv`` runs): the test split held out as
    usual, then fold ``i`` of a seeded K-fold over the rest (train and val together), stratified
    by class, or by groups with ``group_by``: its val part is fold ``i``, its train the others."""
    split = recipe["data"]["split"]
    k, i = int(split["folds"]), int(split.get("fold", 1))
    if k < 2 or not 1 <= i <= k:
        raise recipe.error(("data", "split", "fold"), f"fold {i} of {k}: folds must be >= 2 and 1 <= fold <= folds.")
    if "val" in splits:  # the data's own val split joins the pool the folds are cut from
        splits["train"] = PooledDataset([splits["train"], splits.pop("val")])
    base = splits["train"]
    groups = groups_of(base, group_by) if group_by else None
    seed, stratify = int(recipe["seed"]), recipe["task"] == "classification"
    pool = list(range(len(base)))
    test = float(split.get("test", 0))
    if "test" not in splits and test > 0:
        carved = carve(base, {"test": test}, seed=seed, stratify=stratify, groups=groups)
        splits["test"], pool = carved["test"], list(carved["train"].indices)
    targets = targets_of(base)
    folds = kfold([targets[j] for j in pool] if stratify else None,
                  [groups[j] for j in pool] if groups is not None else None, len(pool), k, seed,
                  classes=info.get("classes"))
    splits["val"] = Subset(base, sorted(pool[j] for j in folds[i - 1]))
    splits["train"] = Subset(base, sorted(pool[j] for f, part in enumerate(folds) if f != i - 1 for j in part))
    info["fold"] = {"fold": i, "folds": k}


def kfold(targets: Sequence[Any] | None, groups: Sequence[Any] | None, n: int, k: int, seed: int, *,
          classes: Sequence[str] | None = None) -> list[list[int]]:
    """``k`` folds of ``range(n)``, seeded: by class (each class dealt round the folds after a
    shuffle), or by group (whole groups, each to the fold with the fewest samples so far)."""
    generator = torch.Generator().manual_seed(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    if groups is not None:
        members: dict[str, list[int]] = {}
        for j, g in enumerate(groups):
            members.setdefault(str(g), []).append(j)
        if len(members) < k:
            raise TorchrigError(f"--folds {k} needs at least {k} groups; group_by found {len(members)}.")
        names = sorted(members)
        for name in (names[j] for j in torch.randperm(len(names), generator=generator).tolist()):
            min(folds, key=len).extend(members[name])
        return folds
    strata: dict[Any, list[int]] = {}
    for j in range(n):
        strata.setdefault(targets[j] if targets is not None else 0, []).append(j)
    if targets is not None:
        label, smallest = min(((t, len(m)) for t, m in strata.items()), key=lambda x: x[1])
        if classes is not None and isinstance(label, int) and 0 <= label < len(classes):
            label = classes[label]
        if smallest < k:
            raise TorchrigError(f"--folds {k} is more than the {smallest} sample(s) of class {label!r} outside the test "
                                f"split, so some folds would have none. Lower --folds to {smallest} or fewer.")
    start = 0
    for key in sorted(strata, key=str):
        members = strata[key]
        for r, j in enumerate(torch.randperm(len(members), generator=generator).tolist()):
            folds[(start + r) % k].append(members[j])
        start += len(members)  # the next class starts where this one ended: folds stay even in size
    return folds


def build_transform(value: Any) -> Callable | None:
    if value is None:
        return None
    name, kwargs = component(value)
    return get_component("transform", name, **kwargs)


def make_loader(dataset: Dataset, recipe: Recipe, *, train: bool, device: torch.device,
                generator: torch.Generator | None = None, collate_fn: Callable | None = None,
                lengths: Sequence[int] | None = None, targets: Sequence[Any] | None = None) -> DataLoader:
    """A recipe's loader; with ``lengths`` (training, ``data.bucket_by_length``) batches group
    samples of similar length through :class:`BucketBatchSampler`; with ``targets`` (training,
    ``data.sampler: balanced``) a :class:`BalancedSampler` draws every class equally often."""
    data = recipe["data"]
    batch_size = data["batch_size"] if train else data.get("eval_batch_size", data["batch_size"])
    workers = int(data["num_workers"])
    common = {"num_workers": workers, "pin_memory": device.type == "cuda", "persistent_workers": workers > 0,
              "collate_fn": collate_fn, "generator": generator if train else None}
    if lengths is not None and targets is not None:
        raise recipe.error(("data", "sampler"), "data.sampler: balanced and data.bucket_by_length both choose the "
                                                "training order; use one of them.")
    if lengths is not None:
        sampler = BucketBatchSampler(lengths, batch_size, shuffle=train, generator=generator if train else None)
        return DataLoader(dataset, batch_sampler=sampler, **common)
    if targets is not None:
        seed = int(generator.initial_seed()) if generator is not None else int(recipe["seed"])
        return DataLoader(dataset, batch_size=batch_size, sampler=BalancedSampler(targets, seed=seed), **common)
    if train:
        # The order DDP uses, on one process: a permutation drawn from (seed, epoch) each epoch
        # (the Trainer calls set_epoch). Under torchrun each rank takes every world_size-th sample
        # of the same permutation, so its k-th batches together are this k-th batch.
        seed = int(generator.initial_seed()) if generator is not None else int(recipe["seed"])
        order = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=order, **common)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **common)


def collate_of(dataset: Dataset) -> Callable | None:
    """A dataset may carry its own ``collate_fn`` (e.g. padding variable-length samples)."""
    while isinstance(dataset, (Subset, TransformedDataset)):
        found = protocols.collate_of(dataset)
        if found is not None:
            return found
        dataset = dataset.dataset
    return protocols.collate_of(dataset)


def _visible(name: str) -> bool:
    return not name.startswith((".", "__"))


def _scan(folder: Path, suffixes: tuple[str, ...]) -> list[tuple[str, list[Path]]]:
    """Class folders (sorted by name) and their files (sorted, nested folders included);
    hidden entries and other suffixes ignored."""
    found = []
    for cls in sorted((p for p in folder.iterdir() if p.is_dir() and _visible(p.name)), key=lambda p: p.name):
        # a dangling link is kept: the dataset reports it (or skips it with on_error: skip)
        files = sorted(p for p in cls.rglob("*") if (p.is_file() or (p.is_symlink() and not p.exists()))
                       and p.suffix.lower() in suffixes and all(_visible(part) for part in p.relative_to(cls).parts))
        found.append((unicodedata.normalize("NFC", cls.name), files))
    return found


def class_folder_files(root: str | os.PathLike, split: str, suffixes: Sequence[str], *,
                       component: str) -> tuple[list[str], list[tuple[Path, int]]] | None:
    """The files of a "one folder per class" layout, for dataset builders.

    ``root/<class>/<file>`` is one pool (only ``split="train"`` returns it; the recipe carves val
    and test); ``root/train/<class>/...`` with ``root/val`` and/or ``root/test`` gives each split
    its own folder. Hidden files and folders, and files of other suffixes, are ignored.

    Args:
        root: the folder.
        split: "train", "val" or "test".
        suffixes: the file suffixes to keep, lower case with the dot (".wav").
        component: the builder's name, for error messages.

    Returns:
        ``(classes, [(path, class index), ...])`` with classes sorted by name (the training
        split's), or ``None`` when the layout has no such split.

    Raises:
        TorchrigError: ``root`` is not a folder, a split has a class the training split lacks, or
            a split folder holds no matching file.
    """
    base = Path(os.path.expanduser(str(root)))
    if not base.is_dir():
        raise TorchrigError(f"{component}: root {str(root)!r} is not a folder. Point data.dataset.root at "
                            "a folder of class folders.")
    suffixes = tuple(s.lower() for s in suffixes)
    has_splits = (base / "train").is_dir() and any((base / s).is_dir() for s in ("val", "test"))
    folder = base / split if has_splits else base
    if (not has_splits and split != "train") or not folder.is_dir():
        return None
    pool = _scan(base / "train" if has_splits else base, suffixes)
    empty = [name for name, paths in pool if not paths]
    if empty and len(empty) < len(pool):  # (none with files at all: the error below says so)
        kinds = "/".join(suffixes[:4]) + ("/..." if len(suffixes) > 4 else "")
        raise InputError(f"{component}: the class folder(s) {', '.join(repr(n) for n in empty)} in "
                         f"{str(base / 'train' if has_splits else base)!r} hold no {kinds} file. Every folder "
                         "there is a class: add its samples, or move the folder out.")
    classes = [name for name, _ in pool]
    found = _scan(folder, suffixes)
    unknown = [name for name, _ in found if name not in classes]
    if unknown:
        raise TorchrigError(f"{component}: {folder} has class folders that train lacks: {', '.join(unknown)}. "
                            "Every class needs training samples.")
    index = {name: i for i, name in enumerate(classes)}
    files = [(path, index[name]) for name, paths in found for path in paths]
    if not files:
        raise TorchrigError(f"{component}: no files under {str(folder)!r}. Expected {folder}/<class>/<file> "
                            f"with suffixes {', '.join(suffixes)}.")
    return classes, files
