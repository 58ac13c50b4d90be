"""The learning-rate range test (Smith 2017; fastai's and Lightning's ``lr_find``): train for a
few steps while the learning rate grows exponentially, record the loss, suggest the rate where it
falls fastest. Everything it touches is put back, so training afterwards is what it would have
been with that learning rate given by hand."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import _seed, _trainstate
from ._device import autocast, make_grad_scaler, to_device
from ._errors import TorchrigError
from ._loop import _forward


@dataclass
class LRFinderResult:
    """What :func:`lr_find` found.

    Attributes:
        lrs: the learning rate of each step.
        losses: each step's training loss, smoothed (an exponential moving average, bias-corrected).
        suggestion: the learning rate where the smoothed loss falls fastest (before its minimum),
            or None when the loss never fell.
        stopped_early: the sweep stopped because the loss diverged.
    """

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    suggestion: float | None = None
    stopped_early: bool = False

    def plot(self, path: str | Path) -> Path:
        """Save the loss-vs-learning-rate curve, the suggestion marked, as a PNG (atomically)."""
        from ._plots import _pyplot, save

        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(5.6, 3.8))
        ax.plot(self.lrs, self.losses, lw=1.5)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss (smoothed)")
        if self.suggestion is not None:
            i = min(range(len(self.lrs)), key=lambda k: abs(math.log(self.lrs[k] / self.suggestion)))
            ax.plot([self.lrs[i]], [self.losses[i]], "o", color="tab:red", ms=7,
                    label=f"suggestion {self.suggestion:.2g}")
            ax.axvline(self.suggestion, color="tab:red", lw=0.8, ls="--")
            ax.legend()
        ax.set_title("learning-rate range test")
        ax.grid(alpha=0.3, which="both")
        return save(fig, Path(path), tight=True)


def lr_find(trainer: Any, model: nn.Module, train_loader: Any, loss_fn: Callable, optimizer: torch.optim.Optimizer,
            *, min_lr: float = 1e-7, max_lr: float = 10.0, num_steps: int = 100, smoothing: float = 0.05,
            diverge: float = 4.0) -> LRFinderResult:
    """Sweep the learning rate from ``min_lr`` to ``max_lr`` over ``num_steps`` training steps
    (exponentially; cycling the loader if it is shorter) on ``trainer``'s device and precision,
    then put the model's weights and buffers, the optimizer, every global RNG and the loader's
    generators back as they were.

    Param groups keep their ratios to the first group's learning rate (fine-tuning's backbone
    scale). The sweep stops early once the smoothed loss exceeds ``diverge`` times its minimum.

    Args:
        trainer: a :class:`torchrig.Trainer` (its device and precision are used).
        model, train_loader, loss_fn, optimizer: what ``trainer.fit`` would take.
        min_lr, max_lr: the sweep's range.
        num_steps: optimizer steps in the sweep.
        smoothing: the weight of each new loss in the moving average.
        diverge: stop when the smoothed loss passes this multiple of the best.

    Returns:
        An :class:`LRFinderResult`; ``result.suggestion`` is the learning rate to use.

    Example::

        result = torchrig.lr_find(trainer, model, train_loader, loss_fn, optimizer)
        result.plot("lr_find.png")
        for group in optimizer.param_groups:
            group["lr"] = result.suggestion
        trainer.fit(model, train_loader, loss_fn, optimizer)
    """
    if not 0 < min_lr < max_lr:
        raise TorchrigError(f"lr_find: need 0 < min_lr < max_lr, got {min_lr} and {max_lr}.")
    if num_steps < 5:
        raise TorchrigError(f"lr_find: num_steps must be at least 5, got {num_steps}.")
    device = trainer.device
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_rng = _seed.get_rng_state()
    generators = _trainstate.loader_generators(train_loader)
    saved_generators = [g.get_state() for g in generators]
    training = model.training
    base = optimizer.param_groups[0]["lr"] or 1.0
    ratios = [(g["lr"] or base) / base for g in optimizer.param_groups]
    result = LRFinderResult()
    try:
        model.to(device).train()
        if isinstance(loss_fn, nn.Module):
            loss_fn.to(device)
        average, best = 0.0, math.inf
        scaler = make_grad_scaler(trainer.precision, device)  # fp16: as training scales its losses
        batches = _cycle(train_loader)
        for step in range(num_steps):
            lr = min_lr * (max_lr / min_lr) ** (step / (num_steps - 1))
            for group, ratio in zip(optimizer.param_groups, ratios):
                group["lr"] = lr * ratio
            batch = next(batches)
            inputs, target = batch[0], batch[1]
            if device.type != "cpu":
                inputs, target = to_device(inputs, device), to_device(target, device)
            optimizer.zero_grad()
            with autocast(trainer.precision, device):
                output = _forward(model, inputs)
                loss = loss_fn(output, target)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                result.stopped_early = True
                break
            average = smoothing * value + (1 - smoothing) * average
            smoothed = average / (1 - (1 - smoothing) ** (step + 1))
            result.lrs.append(lr)
            result.losses.append(smoothed)
            best = min(best, smoothed)
            if step > 0 and smoothed > diverge * best:
                result.stopped_early = True
                break
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        _seed.set_rng_state(saved_rng)
        for g, state in zip(generators, saved_generators):
            g.set_state(state)
        model.train(training)
    result.suggestion = suggest(result.lrs, result.losses)
    return result


def suggest(lrs: list[float], losses: list[float], skip_start: int = 10) -> float | None:
    """The learning rate of the steepest fall of the loss (per unit of log learning rate) before
    its minimum; the first ``skip_start`` steps (a noisy start) are left out."""
    if len(losses) < skip_start + 3:
        return None
    end = min(range(len(losses)), key=losses.__getitem__)
    if end <= skip_start + 1:
        return None
    logs = [math.log(lr) for lr in lrs]
    slopes = [(losses[i + 1] - losses[i - 1]) / (logs[i + 1] - logs[i - 1]) for i in range(skip_start, end)]
    steepest = min(range(len(slopes)), key=slopes.__getitem__)
    return float(lrs[skip_start + steepest]) if slopes[steepest] < 0 else None


def _cycle(loader: Any) -> Any:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise TorchrigError("lr_find: the loader yielded no batches.")



# Schedulers that set the learning rate themselves from their own arguments: a found lr would be
# overridden, so `lr: auto` refuses them when those arguments are given.
_OWN_LR = {"OneCycleLR": ("max_lr",), "CyclicLR": ("base_lr", "max_lr")}


def sweep_recipe(parts: Any, *, num_steps: int = 100) -> LRFinderResult:
    """:func:`lr_find` for a built recipe (``torchrig.build``): its model, loss and optimizer
    (its other settings; the learning rate is swept), on a loader of its own over the training
    split (seeded, in this process) so that the recipe's loaders are left untouched."""
    from torch.utils.data import DataLoader

    from ._loop import Trainer
    from ._recipe import component, resolve_optimizer

    recipe = parts.recipe
    if recipe.get("scheduler") is not None:
        s_name, s_kwargs = component(recipe["scheduler"])
        from ._recipe import resolve_scheduler

        cls_name = resolve_scheduler(s_name).__name__
        fixed = [k for k in _OWN_LR.get(cls_name, ()) if k in s_kwargs]
        if fixed:
            raise TorchrigError(f"The scheduler {s_name!r} sets the learning rate itself ({', '.join(fixed)} given), "
                                "so a learning rate found by lr-find would be overridden. Remove "
                                f"scheduler.{fixed[0]}, or give optimizer.lr by hand.")
    name, kwargs = component(recipe["optimizer"])
    cls = resolve_optimizer(name)
    others = {k: v for k, v in kwargs.items() if k != "lr"}
    params = parts.finetune.param_groups(parts.model, lr=1.0) if parts.finetune is not None else parts.model.parameters()
    optimizer = cls(params, lr=1.0, **others)
    train = parts.loaders["train"]
    loader = DataLoader(train.dataset, batch_size=recipe["data"]["batch_size"], shuffle=True,
                        generator=torch.Generator().manual_seed(int(recipe["seed"])), collate_fn=train.collate_fn)
    trainer = Trainer(device=recipe["trainer"]["device"], precision=recipe["trainer"]["precision"], progress_bar=False)
    return lr_find(trainer, parts.model, loader, parts.loss, optimizer, num_steps=num_steps)


def rounded(lr: float) -> float:
    """A found learning rate as a recipe records it: 3 significant digits."""
    return float(f"{lr:.3g}")
