"""torch.distributed plumbing for the Trainer: torchrun's environment, the process group,
distributed loaders and cross-rank sums. Nothing here runs unless torchrun started us."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler

from ._errors import TorchrigError


def launched() -> bool:
    """True in a process that torchrun started as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def active() -> bool:
    """A process group of more than one process is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_device() -> None:
    """Under torchrun on GPUs, each process uses the GPU of its ``LOCAL_RANK``."""
    if launched() and torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


def setup(device: torch.device) -> bool:
    """Join torchrun's process group (nccl on CUDA, gloo on CPU) if launched and not yet joined.

    Returns:
        True if this call created the group (the caller destroys it with :func:`teardown`).
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return False
    if not dist.is_available():
        raise TorchrigError("torchrun started this process, but this torch build has no torch.distributed.")
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = datetime.timedelta(seconds=float(os.environ.get("TORCHRIG_DIST_TIMEOUT", "1800")))
    kwargs = {"device_id": device} if device.type == "cuda" else {}  # binds NCCL to this GPU early
    dist.init_process_group(backend, timeout=timeout, **kwargs)
    return True


def teardown(owned: bool) -> None:
    if owned and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def sum_all(values: Sequence[float], device: torch.device) -> list[float]:
    """Each value summed over all ranks (float64; one collective)."""
    if not active():
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


class ShardSampler(Sampler[int]):
    """Rank r of w gets samples r, r + w, r + 2w, ...: every sample exactly once, no padding
    (ranks may get one sample more or less), in order. For evaluation."""

    def __init__(self, dataset: Dataset) -> None:
        self.n, self.rank, self.world = len(dataset), rank(), world_size()

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


def distributed_loader(loader: Any, *, train: bool) -> Any:
    """``loader`` with each rank reading its share: a DistributedSampler for training (shuffled
    if the loader shuffled, reseeded every epoch by ``set_epoch``), a :class:`ShardSampler` for
    evaluation (every sample counted once). Loaders that already shard are returned as they are."""
    if not isinstance(loader, DataLoader):
        return loader  # an iterable we cannot re-shard: the user shards it
    sampler = loader.sampler
    if isinstance(sampler, ShardSampler) or (isinstance(sampler, DistributedSampler)
                                             and sampler.num_replicas == world_size()):
        return loader
    batch_sampler = loader.batch_sampler
    if batch_sampler is not None and type(batch_sampler) is not BatchSampler:
        raise TorchrigError(f"Under DDP the Trainer shards each loader with a DistributedSampler, but this loader "
                            f"has a custom batch_sampler ({type(batch_sampler).__name__}). Give each rank its share "
                            "yourself (and call set_epoch), or use a plain batch_size.")
    dataset = loader.dataset
    if train and callable(getattr(sampler, "shard", None)):  # a sampler that shards itself (BalancedSampler)
        shard: Sampler = sampler.shard(world_size(), rank())
    elif train:
        if isinstance(sampler, DistributedSampler):  # a one-process order (recipes): keep its seed
            shuffle, seed = sampler.shuffle, sampler.seed
        else:
            generator = loader.generator
            shuffle = isinstance(sampler, RandomSampler)
            seed = int(generator.initial_seed()) if generator is not None else 0
        shard = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=False)
    else:
        shard = ShardSampler(dataset)
    return DataLoader(
        dataset, batch_size=loader.batch_size, sampler=shard, num_workers=loader.num_workers,
        collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
        drop_last=loader.drop_last if batch_sampler is not None else False, timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn, generator=loader.generator,
        persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False,
        prefetch_factor=loader.prefetch_factor if loader.num_workers > 0 else None,
    )


def wrap(model: torch.nn.Module, device: torch.device, net: torch.nn.Module | None,
         trainable_before: tuple[bool, ...]) -> tuple[torch.nn.Module, tuple[bool, ...]]:
    """What training calls: ``model`` itself, or under DDP its ``DistributedDataParallel`` wrapper,
    made anew when the set of trainable parameters changed (fine-tuning unfroze the backbone):
    DDP's reducer waits for a gradient of every parameter that required one when it was built.
    Returns ``(net, trainable)``; the plain module stays ``model``."""
    if not active():
        return model, ()
    trainable = tuple(p.requires_grad for p in model.parameters())
    if net is not None and net is not model and trainable == trainable_before:
        return net, trainable
    from torch.nn.parallel import DistributedDataParallel

    # gradients all-reduced in backward
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None), trainable
