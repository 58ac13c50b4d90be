"""Weight averaging: an exponential moving average of the weights (EMA) or stochastic weight
averaging (SWA), through ``torch.optim.swa_utils``. Validation, checkpoints and the final weights
use the averaged model; training continues from the live weights; resume is exact."""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn

from ._callbacks import Callback
from ._errors import TorchrigError


class WeightAveraging(Callback):
    """Average the model's weights while it trains, and evaluate and keep the average.

    ``mode="ema"``: after every optimizer step, ``avg = decay * avg + (1 - decay) * weights``.
    ``mode="swa"``: from epoch ``start_epoch`` on, the learning rate goes to ``lr`` (annealed over
    ``anneal_epochs`` by ``SWALR``, in place of the run's own scheduler) and the weights at the
    end of each epoch are averaged with equal weight. Buffers (BatchNorm's statistics) are
    averaged alongside, so the averaged model needs no extra pass over the data.

    Each epoch, once there is an average, validation runs on it and the checkpoint keeps it; then
    training goes on from the live weights. ``on_fit_end`` leaves the average in the model. The
    average, the live weights and SWALR's state are in the resume checkpoint, so a resumed run
    ends with the same weights as an uninterrupted one.

    Args:
        mode: ``"ema"`` or ``"swa"``.
        decay: EMA's decay per step.
        start_epoch: SWA's first averaged epoch (counting from 1).
        lr: SWA's learning rate (the first param group's; others keep their ratios to it).
        anneal_epochs: epochs over which SWALR moves the learning rate to ``lr``.

    Example::

        trainer = Trainer(max_epochs=20, callbacks=[WeightAveraging("swa", start_epoch=15, lr=1e-3)])
    """

    order = 110  # after ModelCheckpoint (100), which saves the averaged weights, to put the live ones back
    rank_zero_only = False  # every rank keeps the same average: the next epoch trains from the live weights

    def __init__(self, mode: str = "ema", *, decay: float = 0.999, start_epoch: int = 1, lr: float | None = None,
                 anneal_epochs: int = 1) -> None:
        if mode not in ("ema", "swa"):
            raise TorchrigError(f"WeightAveraging: mode must be 'ema' or 'swa', got {mode!r}.")
        if mode == "ema" and not 0.0 < decay < 1.0:
            raise TorchrigError(f"trainer.ema.decay must be between 0 and 1 (such as 0.999), got {decay}.")
        if mode == "swa" and (start_epoch < 1 or anneal_epochs < 1 or (lr is not None and lr <= 0)):
            raise TorchrigError("trainer.swa: start_epoch and anneal_epochs must be >= 1 and lr > 0; got "
                                f"start_epoch={start_epoch}, anneal_epochs={anneal_epochs}, lr={lr}.")
        self.mode, self.decay, self.start_epoch, self.lr, self.anneal_epochs = mode, decay, start_epoch, lr, anneal_epochs
        self.averaged: AveragedModel | None = None
        self.swa_scheduler: SWALR | None = None
        self._live: dict[str, torch.Tensor] | None = None
        self._saved: dict[str, Any] | None = None
        self._last_step = -1

    # ------------------------------------------------------------ the average
    def _average(self, model: torch.nn.Module) -> AveragedModel:
        if self.averaged is None:
            fn = get_ema_multi_avg_fn(self.decay) if self.mode == "ema" else None
            self.averaged = AveragedModel(model, multi_avg_fn=fn, use_buffers=True)
        return self.averaged

    def _swa_started(self, epoch: int) -> bool:
        return self.mode == "swa" and epoch >= self.start_epoch

    def _start_swa(self, trainer: Any) -> None:
        """SWALR in place of the run's scheduler (the learning rate is SWA's from here on)."""
        if self.swa_scheduler is not None:
            return
        trainer.scheduler = None
        lr = self.lr if self.lr is not None else trainer.optimizer.param_groups[0]["lr"]
        base = trainer.optimizer.param_groups[0]["lr"] or 1.0
        swa_lrs = [lr * (g["lr"] or base) / base for g in trainer.optimizer.param_groups]
        self.swa_scheduler = SWALR(trainer.optimizer, swa_lr=swa_lrs, anneal_epochs=self.anneal_epochs,
                                   anneal_strategy="cos")

    # ------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: Any, **kwargs: Any) -> None:
        if self._saved is None:
            return
        saved, self._saved = self._saved, None  # a resume: put back what the checkpoint held
        model = trainer.model
        if saved.get("live") is not None:
            model.load_state_dict(saved["live"])  # the checkpoint's "model" is the average
        if saved.get("averaged") is not None:
            self._average(model).load_state_dict(saved["averaged"])
        self._last_step = int(saved.get("last_step", -1))
        if saved.get("swa_scheduler") is not None:
            lrs = [g["lr"] for g in trainer.optimizer.param_groups]
            self._start_swa(trainer)
            self.swa_scheduler.load_state_dict(saved["swa_scheduler"])
            for g, lr in zip(trainer.optimizer.param_groups, lrs):  # SWALR's constructor stepped them
                g["lr"] = lr

    def on_train_epoch_start(self, trainer: Any, epoch: int, **kwargs: Any) -> None:
        if self._swa_started(epoch):
            self._start_swa(trainer)

    def on_train_batch_end(self, trainer: Any, step: int, loss: torch.Tensor, **kwargs: Any) -> None:
        if self.mode == "ema" and trainer.global_step != self._last_step:  # once per optimizer step
            self._last_step = trainer.global_step
            self._average(trainer.model).update_parameters(trainer.model)

    def on_train_epoch_end(self, trainer: Any, epoch: int, **kwargs: Any) -> None:
        if self._swa_started(epoch):
            self._average(trainer.model).update_parameters(trainer.model)
            self.swa_scheduler.step()
        if self.averaged is not None:  # validation and the checkpoint see the average
            self._live = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            trainer.model.load_state_dict(self.averaged.module.state_dict())

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any], **kwargs: Any) -> None:
        if self._live is not None:  # training goes on from the live weights
            trainer.model.load_state_dict(self._live)
            self._live = None

    def on_fit_end(self, trainer: Any, **kwargs: Any) -> None:
        if self.averaged is not None:
            trainer.model.load_state_dict(self.averaged.module.state_dict())
        elif self.mode == "swa" and trainer.epoch >= trainer.max_epochs:
            import warnings

            warnings.warn(f"trainer.swa.start_epoch ({self.start_epoch}) is after the last epoch ({trainer.epoch}): "
                          "nothing was averaged. Lower start_epoch.", stacklevel=2)

    def on_exception(self, trainer: Any, exception: BaseException, **kwargs: Any) -> None:
        if self._live is not None:
            trainer.model.load_state_dict(self._live)
            self._live = None

    # ------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        swalr = None
        if self.swa_scheduler is not None:  # its numbers only: anneal_func is a function, not data
            swalr = {k: v for k, v in self.swa_scheduler.state_dict().items() if k != "anneal_func" and not callable(v)}
        return {"averaged": self.averaged.state_dict() if self.averaged is not None else None,
                "live": self._live, "last_step": self._last_step, "swa_scheduler": swalr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._saved = dict(state)
