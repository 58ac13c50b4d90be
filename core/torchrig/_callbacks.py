"""Callbacks: one small hook interface for the progress bar, checkpoints, early stopping, logs.

Every hook is a no-op that accepts ``**kwargs``, so a callback overrides only what it needs and
keeps working when hooks gain arguments. ``on_train_batch_end`` is only called on callbacks that
override it, so unused per-step hooks cost nothing.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import TorchrigError, did_you_mean

if TYPE_CHECKING:
    import torch

    from ._loop import Trainer

__all__ = [
    "Callback",
    "ProgressBar",
    "EarlyStopping",
    "ModelCheckpoint",
    "LRMonitor",
    "CSVLogger",
    "TensorBoardLogger",
]


class Callback:
    """Base class: override any ``on_*`` hook; all accept ``**kwargs``.

    ``order`` sorts callbacks before each hook runs (lower first): loggers that add values to
    ``logs`` run before those that read them, and checkpointing runs last so that the saved state
    includes every other callback's update for that epoch.

    Override ``state_dict``/``load_state_dict`` for state that must survive a resume. Under DDP
    every rank runs every callback, except those with ``rank_zero_only = True`` (progress bar,
    checkpoints, loggers: whatever prints or writes files), which run on rank 0 alone.

    Example::

        class PrintBest(Callback):
            def on_epoch_end(self, trainer, epoch, logs, **kwargs):
                print(epoch, logs["val_loss"])
    """

    order: int = 0
    rank_zero_only: bool = False

    def on_fit_start(self, trainer: Trainer, **kwargs: Any) -> None:
        """Called once before the first epoch (after a resume has restored state)."""

    def on_train_epoch_start(self, trainer: Trainer, epoch: int, **kwargs: Any) -> None:
        """Called before each training epoch; ``epoch`` counts from 1."""

    def on_train_batch_end(self, trainer: Trainer, step: int, loss: torch.Tensor, **kwargs: Any) -> None:
        """Called after each training batch with its (detached, unscaled) loss tensor."""

    def on_train_epoch_end(self, trainer: Trainer, epoch: int, **kwargs: Any) -> None:
        """Called after each training epoch, before its validation."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float], **kwargs: Any) -> None:
        """Called after training and validation of an epoch; ``logs`` may be added to."""

    def on_fit_end(self, trainer: Trainer, **kwargs: Any) -> None:
        """Called once when training ends normally (including early stopping)."""

    def on_exception(self, trainer: Trainer, exception: BaseException, **kwargs: Any) -> None:
        """Called when ``fit`` is left by an exception, KeyboardInterrupt included."""

    def state_dict(self) -> dict[str, Any]:
        """State to save in the resume checkpoint (plain numbers, strings, lists, dicts)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def _monitored(logs: dict[str, float], monitor: str, who: str) -> float:
    if monitor not in logs:
        raise TorchrigError(
            f"{who} monitors {monitor!r}, which is not among this epoch's values: "
            f"{', '.join(sorted(logs))}.{did_you_mean(monitor, logs)} "
            "Pass a val_loader for 'val_*' values, or choose another monitor."
        )
    return float(logs[monitor])


def _check_mode(mode: str) -> str:
    if mode not in ("min", "max"):
        raise TorchrigError(f"mode must be 'min' or 'max', got {mode!r}.")
    return mode


def _better(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _auto_monitor(monitor: str, logs: dict[str, float]) -> str:
    if monitor != "auto":
        return monitor
    return "val_loss" if "val_loss" in logs else "train_loss"


def format_logs(logs: dict[str, Any], max_epochs: int | None = None) -> str:
    """One summary line: ``epoch 3/10  train_loss 0.1234  val_accuracy 0.9750  2.1s``."""
    parts = [f"epoch {logs['epoch']}" + (f"/{max_epochs}" if max_epochs else "")]
    for key, value in logs.items():
        if key in ("epoch", "time"):
            continue
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}" if key.startswith("lr") else f"{key} {value:.4f}")
        else:
            parts.append(f"{key} {value}")
    if "time" in logs:
        parts.append(f"{logs['time']:.1f}s")
    return "  ".join(parts)


class ProgressBar(Callback):
    """A tqdm bar per epoch with the running loss, and one summary line per epoch.

    Args:
        refresh_rate: update the loss shown on the bar every this many steps (reading the loss
            forces a GPU sync, so not every step).
        bar: show the bar; ``None`` (default) shows it only when the output is a terminal.
        file: where to write; default ``sys.stderr``.
    """

    order = 50
    rank_zero_only = True

    def __init__(self, *, refresh_rate: int = 10, bar: bool | None = None, file: Any = None) -> None:
        self.refresh_rate = max(1, int(refresh_rate))
        self.bar = bar
        self.file = file
        self._pbar: Any = None
        self._running = 0.0
        self._seen = 0

    def _out(self) -> Any:
        return self.file if self.file is not None else sys.stderr

    def on_train_epoch_start(self, trainer: Trainer, epoch: int, **kwargs: Any) -> None:
        from tqdm.auto import tqdm

        show = self.bar if self.bar is not None else _isatty(self._out())
        self._running, self._seen = 0.0, 0
        self._pbar = tqdm(
            total=trainer.num_train_batches, desc=f"epoch {epoch}/{trainer.max_epochs}",
            leave=False, disable=not show, file=self._out(), dynamic_ncols=True, unit="batch",
        )

    def on_train_batch_end(self, trainer: Trainer, step: int, loss: torch.Tensor, **kwargs: Any) -> None:
        pbar = self._pbar
        if pbar.disable:
            return
        pbar.update(1)
        if pbar.n % self.refresh_rate == 0:
            self._running += float(loss)
            self._seen += 1
            pbar.set_postfix(loss=f"{self._running / self._seen:.4f}", refresh=False)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float], **kwargs: Any) -> None:
        self._close()
        print(format_logs(logs, trainer.max_epochs), file=self._out(), flush=True)

    def on_exception(self, trainer: Trainer, exception: BaseException, **kwargs: Any) -> None:
        self._close()

    def on_fit_end(self, trainer: Trainer, **kwargs: Any) -> None:
        self._close()

    def _close(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Args:
        monitor: a key of the epoch logs, e.g. ``"val_loss"`` or ``"val_accuracy"``; ``"auto"``
            picks ``val_loss`` when there is validation, else ``train_loss``.
        mode: ``"min"`` or ``"max"``.
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
    """

    order = 10

    def __init__(self, monitor: str = "auto", *, mode: str = "min", patience: int = 3,
                 min_delta: float = 0.0) -> None:
        self.monitor = monitor
        self.mode = _check_mode(mode)
        if int(patience) < 0 or float(min_delta) < 0:
            raise TorchrigError(f"EarlyStopping: patience and min_delta must be at least 0, got {patience!r} and "
                                f"{min_delta!r}.")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float], **kwargs: Any) -> None:
        value = _monitored(logs, _auto_monitor(self.monitor, logs), "EarlyStopping")
        if _better(value, self.best, self.mode, self.min_delta):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            trainer.should_stop = True
            trainer.log(f"early stopping at epoch {epoch}: {self.monitor} has not improved for "
                        f"{self.patience} epochs (best {self.best:.4f})")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait, self.stopped_epoch = state["best"], state["wait"], state["stopped_epoch"]


class ModelCheckpoint(Callback):
    """Save the best weights and the resume state after every epoch, atomically.

    Writes into ``dirpath``:

    - ``weights.safetensors``: the model's weights at the best ``monitor`` value so far (or the
      last epoch's when ``monitor=None``), readable by any safetensors tool;
    - ``state.pt``: everything ``fit(..., resume=True)`` needs (last weights, optimizer,
      scheduler, grad scaler, epoch, step, RNG states, callback state, history), loadable with
      ``torch.load(weights_only=True)``.

    Args:
        dirpath: the folder to write to (created if missing).
        monitor: a key of the epoch logs; ``"auto"`` is ``val_loss`` with validation, else
            ``train_loss``; ``None`` keeps the last weights.
        mode: ``"min"`` or ``"max"``.
    """

    order = 100
    rank_zero_only = True
    WEIGHTS = "weights.safetensors"
    STATE = "state.pt"

    def __init__(self, dirpath: str | Path, *, monitor: str | None = "auto", mode: str = "min") -> None:
        self.dirpath = Path(dirpath)
        self.monitor = monitor
        self.mode = _check_mode(mode)
        self.best: float | None = None
        self.best_epoch: int | None = None

    @property
    def state_path(self) -> Path:
        return self.dirpath / self.STATE

    @property
    def weights_path(self) -> Path:
        return self.dirpath / self.WEIGHTS

    def on_fit_start(self, trainer: Trainer, **kwargs: Any) -> None:
        from ._checkpoint import remove_stale_temp_files

        if self.dirpath.is_dir():  # left by a process killed mid-write
            remove_stale_temp_files(self.dirpath)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float], **kwargs: Any) -> None:
        from ._checkpoint import save_weights

        improved = True
        if self.monitor is not None:
            value = _monitored(logs, _auto_monitor(self.monitor, logs), "ModelCheckpoint")
            improved = _better(value, self.best, self.mode)
            if improved:
                self.best, self.best_epoch = value, epoch
        if improved:
            save_weights(self.weights_path, trainer.model_state_dict(), {"epoch": str(epoch)})
        trainer.save_checkpoint(self.state_path)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class LRMonitor(Callback):
    """Add the learning rate used during each epoch to the logs (``lr``, or ``lr/gN`` per group)."""

    order = -10

    def __init__(self) -> None:
        self._lrs: list[float] = []

    def on_train_epoch_start(self, trainer: Trainer, epoch: int, **kwargs: Any) -> None:
        self._lrs = [float(g["lr"]) for g in trainer.optimizer.param_groups]

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float], **kwargs: Any) -> None:
        if len(self._lrs) == 1:
            logs["lr"] = self._lrs[0]
        else:
            logs.update({f"lr/g{i}": lr for i, lr in enumerate(self._lrs)})


class CSVLogger(Callback):
    """Write the history to a CSV file, one row per epoch, rewritten atomically each epoch.

    Rewriting the whole (small) file keeps it consistent with the resume state: after a kill and
    a resume, rows of epochs that were never checkpointed disappear instead of repeating.
    """

    order = 60
    rank_zero_only = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float], **kwargs: Any) -> None:
        from ._checkpoint import atomic_write

        rows = trainer.history
        fields: list[str] = []
        for row in rows:
            fields.extend(k for k in row if k not in fields)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.path, buf.getvalue().encode())


class TensorBoardLogger(Callback):
    """Write each epoch's values to TensorBoard (needs ``pip install tensorboard``).

    Args:
        log_dir: the event-file folder, as for ``torch.utils.tensorboard.SummaryWriter``.
    """

    order = 60
    rank_zero_only = True

    def __init__(self, log_dir: str | Path) -> None:
        try:
            import tensorboard  # noqa: F401
        except ImportError as exc:
            raise TorchrigError(
                "TensorBoardLogger needs the tensorboard package: pip install tensorboard"
            ) from exc
        self.log_dir = str(log_dir)
        self._writer: Any = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float], **kwargs: Any) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(self.log_dir)
        for key, value in logs.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self._writer.add_scalar(key, value, epoch)
        self._writer.flush()

    def on_fit_end(self, trainer: Trainer, **kwargs: Any) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    on_exception = on_fit_end  # type: ignore[assignment]


