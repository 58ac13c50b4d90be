"""The pieces the Trainer's loop leans on, kept beside it so ``fit`` reads top to bottom:

- :func:`capture` / :func:`restore`: everything ``state.pt`` holds to resume exactly (model,
  optimizer, scheduler, scaler, every RNG, the loader's shuffling, callbacks, history);
- :class:`LossMeter`: the epoch's training loss and the one non-finite check, the same on every
  device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import _dist, _seed
from ._callbacks import Callback
from ._checkpoint import load_state
from ._errors import TorchrigError

if TYPE_CHECKING:
    from ._loop import Trainer

__all__ = ["STATE_FORMAT", "LossMeter", "capture", "keyed_callbacks", "loader_generators", "restore"]

STATE_FORMAT = "torchrig.state/1"


def capture(trainer: Trainer) -> dict[str, Any]:
    """Everything needed to resume exactly, as a dict that loads with ``weights_only=True``."""
    return {
        "format": STATE_FORMAT,
        "epoch": trainer.epoch,
        "global_step": trainer.global_step,
        "model": trainer.model_state_dict(),
        "model_class": _class_name(trainer.model),  # named when a resume meets another model
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
        "rng": _seed.get_rng_state(),
        "loader_generators": [g.get_state() for g in loader_generators(trainer.train_loader)],
        "callbacks": {key: cb.state_dict() for key, cb in keyed_callbacks(trainer.callbacks)},
        "history": [dict(row) for row in trainer.history],
        "stopped": trainer.should_stop,  # early stopping fired: a resume must not train on
    }


def restore(trainer: Trainer, resume: bool | str | Path) -> None:
    """Put ``trainer`` back where ``state.pt`` left it (``resume=True``: the checkpoint dir's, if
    there is one yet; a path: that file, which must exist)."""
    if resume is True:
        if trainer.checkpoint is None:
            raise TorchrigError(
                "fit(resume=True) needs to know where checkpoints are: pass "
                "Trainer(checkpoint_dir=...) or a ModelCheckpoint callback, or resume='path/state.pt'."
            )
        path = trainer.checkpoint.state_path
        if not path.is_file():
            trainer.log(f"no checkpoint at {path}; starting from scratch")
            return
    else:
        path = Path(resume)
    state = load_state(path)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TorchrigError(f"{str(path)!r} is not a torchrig training state (no {STATE_FORMAT!r} marker).")
    _check_fits(trainer.model, state, path)
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.scheduler is not None and state["scheduler"] is not None:
        trainer.scheduler.load_state_dict(state["scheduler"])
    if trainer.scaler is not None and state["scaler"] is not None:
        trainer.scaler.load_state_dict(state["scaler"])
    for gen, gen_state in zip(loader_generators(trainer.train_loader), state["loader_generators"]):
        gen.set_state(gen_state)
    saved = state["callbacks"]
    for key, cb in keyed_callbacks(trainer.callbacks):
        if key in saved:
            cb.load_state_dict(saved[key])
    _seed.set_rng_state(state["rng"])
    trainer.epoch, trainer.global_step = int(state["epoch"]), int(state["global_step"])
    trainer.history = type(trainer.history)(state["history"])
    trainer.should_stop = bool(state.get("stopped", False))
    trainer.log(f"resumed from {path} after epoch {trainer.epoch}")


def _class_name(model: Any) -> str:
    model = getattr(model, "module", model)  # DDP's wrapper
    return f"{type(model).__module__}.{type(model).__qualname__}"


def _check_fits(model: Any, state: dict[str, Any], path: Path) -> None:
    """A checkpoint of another model: one TorchrigError naming the checkpoint, the model it was
    saved from and the first keys that differ, instead of load_state_dict's wall of keys."""
    from ._weights import _few

    saved, mine = state["model"], model.state_dict()
    missing = [k for k in mine if k not in saved]
    unexpected = [k for k in saved if k not in mine]
    reshaped = [k for k in mine if k in saved and tuple(saved[k].shape) != tuple(mine[k].shape)]
    if not (missing or unexpected or reshaped):
        return
    found = []
    if missing:
        found.append(f"{len(missing)} of the model's keys are not in it ({_few(missing, 3)})")
    if unexpected:
        found.append(f"{len(unexpected)} of its keys are not in the model ({_few(unexpected, 3)})")
    if reshaped:
        k = reshaped[0]
        found.append(f"{len(reshaped)} differ in shape ({k}: {tuple(saved[k].shape)} saved, {tuple(mine[k].shape)} now)")
    raise TorchrigError(
        f"Cannot resume from {str(path)!r}: it was saved from {state.get('model_class', 'another model')}, which "
        f"does not fit this {_class_name(model)}: {'; '.join(found)}. Give this model a checkpoint folder of its "
        "own (Trainer(checkpoint_dir=...) or --out), or fit without resume to start over.")


def keyed_callbacks(callbacks: Sequence[Callback]) -> list[tuple[str, Callback]]:
    """Each callback under a stable key (its class name, numbered from the second of a kind)."""
    counts: dict[str, int] = {}
    keyed = []
    for cb in callbacks:
        name = type(cb).__name__
        counts[name] = counts.get(name, 0) + 1
        keyed.append((name if counts[name] == 1 else f"{name}_{counts[name]}", cb))
    return keyed


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The generators that decide a loader's order (its own, its sampler's, its batch sampler's)."""
    candidates = [getattr(loader, "generator", None)]
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    candidates += [getattr(sampler, "generator", None), getattr(batch_sampler, "generator", None),
                   getattr(getattr(batch_sampler, "sampler", None), "generator", None)]
    found: list[torch.Generator] = []
    for gen in candidates:
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
            found.append(gen)
    return found


class LossMeter:
    """An epoch's mean training loss, weighted by batch size, read back in one transfer at the
    end of the epoch on every device, with the one non-finite check.

    With ``on_nan="skip"`` each loss is looked at as it comes (:meth:`keep`), so that a bad batch
    is dropped before its backward pass; otherwise the first non-finite loss of the epoch raises
    when the epoch's losses are read (naming its step).
    """

    def __init__(self, epoch: int, on_nan: str) -> None:
        self.epoch, self.on_nan = epoch, on_nan
        self.pending: list[tuple[int, torch.Tensor, int]] = []

    def keep(self, loss: torch.Tensor) -> bool:
        """False for a non-finite loss under ``on_nan="skip"`` (skip that batch); else True."""
        return self.on_nan != "skip" or math.isfinite(loss.item())

    def add(self, step: int, loss: torch.Tensor, size: int) -> None:
        self.pending.append((step, loss.detach(), size))

    def mean(self, device: torch.device) -> float:
        """The weighted mean over this rank's batches (summed over ranks under DDP)."""
        total, count = 0.0, 0
        if self.pending:
            losses = torch.stack([p[1].float() for p in self.pending]).cpu()
            bad = (~torch.isfinite(losses)).nonzero()
            if len(bad):
                i = int(bad[0])
                raise nonfinite(self.epoch, self.pending[i][0], float(losses[i]))
            sizes = torch.tensor([p[2] for p in self.pending], dtype=torch.float64)
            total, count = float((losses.double() * sizes).sum()), int(sizes.sum())
        if _dist.active():
            total, count = _dist.sum_all([total, count], device)
        return total / count if count else math.nan


def nonfinite(epoch: int, step: int, value: float) -> TorchrigError:
    return TorchrigError(
        f"The loss became {value} at epoch {epoch}, step {step + 1}. Lower the learning rate, "
        "clip gradients (gradient_clip_val=1.0), check the data for NaN/inf, or pass "
        "on_nan='skip' to skip such batches."
    )
