"""The Trainer: the tutorial loop (zero_grad, forward, loss, backward, step), kept honest.

It takes plain PyTorch objects and adds only what every project re-writes around that loop:
device moves, mixed precision, gradient accumulation and clipping, epoch-wide metrics, callbacks
(progress, early stopping, checkpoints, logs), and exact resume. With the same seed it produces
bit-identical parameters to the hand-written loop.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import _dist, _trainstate
from ._callbacks import Callback, CSVLogger, LRMonitor, ModelCheckpoint, ProgressBar
from ._checkpoint import save_state
from ._device import autocast, make_grad_scaler, resolve_device, resolve_precision, to_device
from ._errors import TorchrigError
from ._metrics import MetricSet

__all__ = ["Trainer", "History"]

STATE_FORMAT = _trainstate.STATE_FORMAT


class History(list):
    """The per-epoch logs returned by :meth:`Trainer.fit`: a list of dicts.

    ``history["val_loss"]`` gives one column as a list (epochs without that key are skipped).
    """

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return [row[key] for row in self if key in row]
        return super().__getitem__(key)


class Trainer:
    """Fit, evaluate and predict with any ``nn.Module``, ``DataLoader``, loss and optimizer.

    A batch is ``(inputs, target)``; ``inputs`` may be a tensor (``model(x)``), a tuple
    (``model(*x)``) or a dict of tensors (``model(**x)``, as Hugging Face tokenizers give). A model
    may return a tensor or an object with ``logits`` (a Hugging Face ``ModelOutput``).

    Under ``torchrun`` (several processes) ``fit`` joins the process group (nccl on CUDA, gloo on
    CPU), trains a ``DistributedDataParallel`` copy of the model, gives each rank its share of
    every ``DataLoader`` (a ``DistributedSampler`` for training, reseeded each epoch; evaluation
    counts every sample once), sums losses and metrics over ranks, and lets only rank 0 print and
    write files. The global batch is ``batch_size x world_size``.

    Args:
        max_epochs: number of epochs to train.
        device: ``"auto"`` (cuda, then mps, then cpu), or any torch device string.
        precision: ``"32"``, ``"bf16-mixed"``, ``"16-mixed"`` (CUDA, with a GradScaler), or
            ``"auto"`` (bf16-mixed on a CUDA device that supports it, else 32).
        accumulate_grad_batches: sum gradients over this many batches per optimizer step (each
            loss is divided by it, so the step sees the mean).
        gradient_clip_val: clip gradients to this value before each step (``None``: no clipping).
        gradient_clip_algorithm: ``"norm"`` (total L2 norm) or ``"value"`` (element-wise).
        scheduler_interval: step the LR scheduler every ``"epoch"`` or every optimizer ``"step"``.
        on_nan: a non-finite loss ``"raise"`` s an error naming the epoch and step, or is
            ``"skip"`` ped (that batch makes no update).
        callbacks: extra :class:`Callback` objects (your own, EarlyStopping, ...).
        checkpoint_dir: if given, save ``weights.safetensors`` and ``state.pt`` there each epoch,
            a ``metrics.csv``, and let ``fit(..., resume=True)`` continue from it.
        progress_bar: show a progress bar (on a terminal) and one summary line per epoch.
        restore_best: after ``fit``, load the best weights the checkpoint kept (the epoch with
            the best monitored value, e.g. ``val_loss``), as Keras' ``restore_best_weights``.
            By default the model holds the last epoch's weights, as in Lightning and Keras;
            ``weights.safetensors`` holds the best either way. Needs a ``checkpoint_dir`` (or a
            :class:`ModelCheckpoint` callback).

    Example::

        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        trainer = Trainer(max_epochs=20)
        history = trainer.fit(model, train_loader, nn.CrossEntropyLoss(), optimizer,
                              val_loader=val_loader, metrics=["accuracy"])
        scores = trainer.evaluate(model, test_loader, nn.CrossEntropyLoss(), metrics=["accuracy"])
        labels = trainer.predict(model, test_loader).argmax(1)
    """

    def __init__(
        self,
        *,
        max_epochs: int = 1,
        device: str | torch.device = "auto",
        precision: str | int = "auto",
        accumulate_grad_batches: int = 1,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        scheduler_interval: str = "epoch",
        on_nan: str = "raise",
        callbacks: Sequence[Callback] = (),
        checkpoint_dir: str | Path | None = None,
        progress_bar: bool = True,
        restore_best: bool = False,
    ) -> None:
        if int(max_epochs) < 1:
            raise TorchrigError(f"max_epochs must be >= 1, got {max_epochs!r}.")
        if int(accumulate_grad_batches) < 1:
            raise TorchrigError(f"accumulate_grad_batches must be >= 1, got {accumulate_grad_batches!r}.")
        if gradient_clip_val is not None and not gradient_clip_val > 0:  # a negative one reverses the gradients
            raise TorchrigError(f"gradient_clip_val must be above 0 (or None: no clipping), got {gradient_clip_val!r}.")
        _choice("gradient_clip_algorithm", gradient_clip_algorithm, ("norm", "value"))
        _choice("scheduler_interval", scheduler_interval, ("epoch", "step"))
        _choice("on_nan", on_nan, ("raise", "skip"))
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TorchrigError(
                    f"callbacks must be torchrig.Callback objects, got {type(cb).__name__}. "
                    "Subclass torchrig.Callback and override the on_* hooks you need."
                )
        self.max_epochs = int(max_epochs)
        _dist.local_device()  # under torchrun on GPUs: this process's GPU becomes "cuda"
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.accumulate_grad_batches = int(accumulate_grad_batches)
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.scheduler_interval = scheduler_interval
        self.on_nan = on_nan
        self.verbose = bool(progress_bar)
        self.restore_best = bool(restore_best)

        defaults: list[Callback] = [LRMonitor()]
        if progress_bar:
            defaults.append(ProgressBar())
        self.checkpoint: ModelCheckpoint | None = None
        if checkpoint_dir is not None:
            self.checkpoint = ModelCheckpoint(checkpoint_dir)
            defaults += [self.checkpoint, CSVLogger(Path(checkpoint_dir) / "metrics.csv")]
        user = list(callbacks)
        if self.checkpoint is None:
            self.checkpoint = next((cb for cb in user if isinstance(cb, ModelCheckpoint)), None)
        self.callbacks = sorted(defaults + user, key=lambda cb: cb.order)

        # Fit-time state, readable by callbacks.
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.scaler: torch.amp.GradScaler | None = None
        self.train_loader: Iterable | None = None
        self.epoch = 0
        self.global_step = 0
        self.num_train_batches: int | None = None
        self.history = History()
        self.should_stop = False
        self._metric_sets: dict[tuple, MetricSet] = {}
        self._net: nn.Module | None = None  # what training calls: the model, or its DDP wrapper
        self._ddp_trainable: tuple[bool, ...] = ()

    # ------------------------------------------------------------------ public verbs

    def fit(
        self,
        model: nn.Module,
        train_loader: Iterable,
        loss_fn: Callable[..., torch.Tensor],
        optimizer: torch.optim.Optimizer,
        *,
        val_loader: Iterable | None = None,
        scheduler: Any = None,
        metrics: Iterable[Any] | Mapping[str, Any] | None = None,
        resume: bool | str | Path = False,
    ) -> History:
        """Train ``model`` for ``max_epochs`` epochs; validate after each if ``val_loader``.

        Args:
            model: any ``nn.Module``; moved to the trainer's device.
            train_loader: yields ``(inputs, target)`` batches.
            loss_fn: ``loss_fn(output, target) -> scalar tensor``.
            optimizer: built on ``model.parameters()``.
            val_loader: evaluated after every epoch; its values are logged as ``val_*``.
                Validation never draws from the global RNG as seen by training, so adding it
                does not change the trained weights.
            scheduler: a ``torch.optim.lr_scheduler`` object, stepped per ``scheduler_interval``
                (``ReduceLROnPlateau`` is stepped with ``val_loss``, else ``train_loss``).
            metrics: metric names (``"accuracy"``, ``"f1"``, ``"mse"``, ...) or torchmetrics
                objects, computed over the whole validation epoch.
            resume: ``True`` continues from ``checkpoint_dir/state.pt`` when it exists (and starts
                afresh when it does not); a path resumes from that file, which must exist.

        Returns:
            The :class:`History` of per-epoch logs.

        Raises:
            TorchrigError: on bad input (empty loader, wrong batch shape, output that does not fit
                the loss, unknown metric, missing or unsafe checkpoint) or a non-finite loss.
        """
        if not isinstance(model, nn.Module):
            raise TorchrigError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TorchrigError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}. "
                "Build it with e.g. torch.optim.AdamW(model.parameters(), lr=1e-3)."
            )
        metric_set = self._metric_set(metrics)
        owned = _dist.setup(self.device)
        try:
            if self.restore_best and self._best_keeper() is None:
                raise TorchrigError("restore_best=True needs checkpoints to restore from: pass "
                                    "Trainer(checkpoint_dir=...) or a ModelCheckpoint callback.")
            return self._fit(model, train_loader, loss_fn, optimizer, val_loader, scheduler, metric_set, resume)
        finally:
            _dist.teardown(owned)

    def _fit(self, model: nn.Module, train_loader: Iterable, loss_fn: Callable, optimizer: torch.optim.Optimizer,
             val_loader: Iterable | None, scheduler: Any, metric_set: MetricSet, resume: bool | str | Path) -> History:
        if _dist.active():
            train_loader = _dist.distributed_loader(train_loader, train=True)
            val_loader = _dist.distributed_loader(val_loader, train=False) if val_loader is not None else None
        self.num_train_batches = _check_loader(train_loader, "train_loader")
        if val_loader is not None:
            _check_loader(val_loader, "val_loader")

        self.model = model.to(self.device)
        if isinstance(loss_fn, nn.Module):  # its buffers (class weights) go where the outputs are
            loss_fn.to(self.device)
        self._net = self.model
        self._wrap_ddp()
        self.optimizer, self.scheduler, self.train_loader = optimizer, scheduler, train_loader
        self.scaler = make_grad_scaler(self.precision, self.device)
        self.history, self.epoch, self.global_step, self.should_stop = History(), 0, 0, False
        if resume:
            _trainstate.restore(self, resume)

        step_callbacks = [cb for cb in self.callbacks
                          if type(cb).on_train_batch_end is not Callback.on_train_batch_end
                          and (self.is_global_zero or not cb.rank_zero_only)]
        self._call("on_fit_start")
        try:
            while self.epoch < self.max_epochs and not self.should_stop:
                epoch = self.epoch + 1
                started = time.perf_counter()
                set_epoch = getattr(getattr(self.train_loader, "sampler", None), "set_epoch", None)
                if set_epoch is not None:  # DistributedSampler: a new shuffle each epoch
                    set_epoch(epoch)
                model.train()  # before the hooks, so a callback may set a part to eval (FineTune)
                self._call("on_train_epoch_start", epoch=epoch)
                self._wrap_ddp()  # a callback changed which parameters train: DDP must know
                logs: dict[str, Any] = {"epoch": epoch, "train_loss": self._train_epoch(epoch, loss_fn, step_callbacks)}
                self._call("on_train_epoch_end", epoch=epoch)
                if val_loader is not None:
                    val = self._evaluate(model, val_loader, loss_fn, metric_set)
                    logs.update({f"val_{k}": v for k, v in val.items()})
                if self.scheduler is not None and self.scheduler_interval == "epoch":
                    self._step_scheduler(logs)
                logs["time"] = time.perf_counter() - started
                self.epoch = epoch
                self.history.append(logs)
                self._call("on_epoch_end", epoch=epoch, logs=logs)
        except BaseException as exc:
            self._call("on_exception", exception=exc)
            if isinstance(exc, KeyboardInterrupt) and self.checkpoint is not None:
                self.log(f"interrupted; the last finished epoch is saved in {self.checkpoint.dirpath}. "
                         "Run again with fit(..., resume=True) to continue.")
            raise
        self._call("on_fit_end")
        _dist.barrier()  # rank 0's files are complete before any rank reads them
        if self.restore_best:
            self._restore_best(model)
        return self.history

    def _best_keeper(self) -> ModelCheckpoint | None:
        return self.checkpoint or next((c for c in self.callbacks if isinstance(c, ModelCheckpoint)), None)

    def _restore_best(self, model: nn.Module) -> None:
        """Load the best weights the ModelCheckpoint kept (``restore_best=True``)."""
        from ._checkpoint import load_weights

        checkpoint = self._best_keeper()
        if checkpoint is not None and checkpoint.weights_path.is_file():
            model.load_state_dict(load_weights(checkpoint.weights_path, device=self.device))
            if checkpoint.best_epoch is not None:
                self.log(f"restored the best weights, from epoch {checkpoint.best_epoch} of {self.epoch}")

    def evaluate(
        self,
        model: nn.Module,
        loader: Iterable,
        loss_fn: Callable[..., torch.Tensor] | None = None,
        *,
        metrics: Iterable[Any] | Mapping[str, Any] | None = None,
    ) -> dict[str, float]:
        """Compute the mean loss and metrics of ``model`` over every batch of ``loader``.

        Returns:
            ``{"loss": ..., "accuracy": ...}`` (``loss`` only when ``loss_fn`` is given).
        """
        _check_loader(loader, "loader")
        model.to(self.device)
        if isinstance(loss_fn, nn.Module):
            loss_fn.to(self.device)
        if _dist.active():  # each rank evaluates its share; losses and metrics are summed over ranks
            loader = _dist.distributed_loader(loader, train=False)
        return self._evaluate(model, loader, loss_fn, self._metric_set(metrics))

    def predict(self, model: nn.Module, loader: Iterable) -> torch.Tensor:
        """Run ``model`` in eval mode over ``loader`` and return the outputs, on the CPU.

        ``loader`` may yield ``(inputs, target)`` (the target is ignored) or bare inputs.

        Returns:
            The outputs of every batch concatenated along the first dimension (float32).
        """
        _check_loader(loader, "loader")
        model.to(self.device)
        outputs = []
        with _eval_mode(model), torch.inference_mode(), _preserved_rng(self.device):
            for batch in loader:
                inputs = batch[0] if isinstance(batch, (tuple, list)) and len(batch) == 2 else batch
                with autocast(self.precision, self.device):
                    out = _forward(model, to_device(inputs, self.device))
                outputs.append(_to_cpu(out))
        if not outputs:
            raise TorchrigError("predict: the loader yielded no batches.")
        if isinstance(outputs[0], torch.Tensor):
            return torch.cat(outputs)
        return outputs  # type: ignore[return-value]

    def _metric_set(self, metrics: Any) -> MetricSet:
        """Metric objects are reused across fit/evaluate calls: building them costs ~1 ms."""
        if metrics is None or isinstance(metrics, str) or (
                isinstance(metrics, (list, tuple)) and all(isinstance(m, str) for m in metrics)):
            key = (metrics,) if metrics is None or isinstance(metrics, str) else tuple(metrics)
            if key not in self._metric_sets:
                self._metric_sets[key] = MetricSet(metrics)
            return self._metric_sets[key]
        return MetricSet(metrics)

    # ------------------------------------------------------------------ checkpoints

    def model_state_dict(self) -> dict[str, torch.Tensor]:
        """The trained model's ``state_dict`` (override point for wrapped models)."""
        return self.model.state_dict()

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write everything needed to resume exactly, as a weights-only-loadable dict."""
        return save_state(path, _trainstate.capture(self))

    # ------------------------------------------------------------------ the loops

    def _train_epoch(self, epoch: int, loss_fn: Callable, step_callbacks: list[Callback]) -> float:
        model, optimizer, scaler, device = self._net, self.optimizer, self.scaler, self.device
        accumulate = self.accumulate_grad_batches
        n_batches = self.num_train_batches
        move = device.type != "cpu"  # DataLoader batches already live on the CPU
        step_scheduler = self.scheduler is not None and self.scheduler_interval == "step"
        meter = _trainstate.LossMeter(epoch, self.on_nan)

        optimizer.zero_grad()
        step = -1
        for step, batch in enumerate(self.train_loader):
            inputs, target = _split_batch(batch, step)
            if move:
                inputs, target = to_device(inputs, device), to_device(target, device)
            with autocast(self.precision, device):
                output = _forward(model, inputs, step)
                loss = _loss(loss_fn, output, target, step)
            if not meter.keep(loss):  # on_nan="skip": drop this batch before its backward
                optimizer.zero_grad()
                continue
            meter.add(step, loss, _batch_size(target))
            scaled = loss / accumulate if accumulate > 1 else loss
            if scaler is not None:
                scaler.scale(scaled).backward()
            else:
                scaled.backward()
            if accumulate == 1 or (step + 1) % accumulate == 0 or step + 1 == n_batches:
                self._optimizer_step()
                if step_scheduler:
                    self._step_scheduler({})
            for cb in step_callbacks:
                cb.on_train_batch_end(self, step=step, loss=loss.detach())
        if step < 0:
            raise TorchrigError(
                f"train_loader yielded no batches in epoch {epoch}. Check that its dataset is not "
                "empty and that drop_last=True does not drop every batch."
            )
        if accumulate > 1 and n_batches is None and (step + 1) % accumulate:
            self._optimizer_step()  # a trailing partial window of a loader without len()
        return meter.mean(device)  # one read-back per epoch; raises on the first non-finite loss

    def _wrap_ddp(self) -> None:
        self._net, self._ddp_trainable = _dist.wrap(self.model, self.device, self._net, self._ddp_trainable)

    def _optimizer_step(self) -> None:
        optimizer, scaler = self.optimizer, self.scaler
        if self.gradient_clip_val is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)
            params = [p for g in optimizer.param_groups for p in g["params"]]
            if self.gradient_clip_algorithm == "norm":
                torch.nn.utils.clip_grad_norm_(params, self.gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_value_(params, self.gradient_clip_val)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad()
        self.global_step += 1

    def _step_scheduler(self, logs: dict[str, Any]) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if not logs:
                raise TorchrigError("ReduceLROnPlateau needs scheduler_interval='epoch'.")
            self.scheduler.step(logs.get("val_loss", logs["train_loss"]))
        else:
            self.scheduler.step()

    def _evaluate(self, model: nn.Module, loader: Iterable, loss_fn: Callable | None,
                  metric_set: MetricSet) -> dict[str, float]:
        device = self.device
        metric_set.reset()
        losses: list[torch.Tensor] = []
        sizes: list[int] = []
        step = -1
        with _eval_mode(model), torch.inference_mode(), _preserved_rng(device):
            for step, batch in enumerate(loader):
                inputs, target = _split_batch(batch, step)
                inputs, target = to_device(inputs, device), to_device(target, device)
                with autocast(self.precision, device):
                    output = _forward(model, inputs, step)
                    if loss_fn is not None:
                        losses.append(_loss(loss_fn, output, target, step).float())
                        sizes.append(_batch_size(target))
                if metric_set:
                    metric_set.update(output, target)
        if step < 0:
            raise TorchrigError("The evaluation loader yielded no batches; check that its dataset is not empty.")
        scores = {}
        if loss_fn is not None:  # one device-to-host read per epoch, weighted by batch size
            weights = torch.tensor(sizes, dtype=torch.float64)
            total = float((torch.stack(losses).double().cpu() * weights).sum()) if losses else 0.0
            total, count = _dist.sum_all([total, float(weights.sum())], device)
            scores["loss"] = total / count
        scores.update(metric_set.compute())  # torchmetrics gathers its states over ranks
        return scores

    # ------------------------------------------------------------------ plumbing

    def _call(self, hook: str, **kwargs: Any) -> None:
        zero = self.is_global_zero
        for cb in self.callbacks:
            if zero or not cb.rank_zero_only:
                getattr(cb, hook)(self, **kwargs)

    @property
    def world_size(self) -> int:
        """Processes training together (1 unless launched by torchrun)."""
        return _dist.world_size()

    @property
    def global_batch_size(self) -> int | None:
        """Samples per optimizer step over all ranks: the train loader's batch size x world size
        x ``accumulate_grad_batches`` (None before ``fit`` or for loaders without a batch size)."""
        size = getattr(self.train_loader, "batch_size", None)
        return None if size is None else size * self.world_size * self.accumulate_grad_batches

    @property
    def global_rank(self) -> int:
        return _dist.rank()

    @property
    def is_global_zero(self) -> bool:
        """True in the process that prints and writes files (always, without DDP)."""
        return _dist.rank() == 0

    def log(self, message: str) -> None:
        """Print an informational line (to stderr) unless the trainer is quiet (rank 0 only)."""
        if self.verbose and self.is_global_zero:
            print(f"torchrig: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- helpers


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise TorchrigError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")


def _check_loader(loader: Any, name: str) -> int | None:
    if isinstance(loader, (torch.Tensor, torch.utils.data.Dataset)) and not isinstance(
        loader, torch.utils.data.IterableDataset
    ):
        raise TorchrigError(
            f"{name} is a {type(loader).__name__}; pass a DataLoader that yields (inputs, target) "
            f"batches, e.g. DataLoader(dataset, batch_size=32, shuffle=True)."
        )
    if not hasattr(loader, "__iter__"):
        raise TorchrigError(f"{name} must be an iterable of (inputs, target) batches, got {type(loader).__name__}.")
    try:
        n = len(loader)
    except TypeError:
        return None
    if n == 0:
        raise TorchrigError(
            f"{name} is empty (len 0). Check its dataset's length, and that batch_size is not larger "
            "than the dataset while drop_last=True."
        )
    return n


def _split_batch(batch: Any, step: int) -> tuple[Any, Any]:
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, Mapping):
        for ik, tk in (("inputs", "target"), ("input", "target"), ("x", "y")):
            if ik in batch and tk in batch:
                return batch[ik], batch[tk]
    kind = f"a {type(batch).__name__}"
    if isinstance(batch, (tuple, list)):
        kind += f" of length {len(batch)}"
    elif isinstance(batch, torch.Tensor):
        kind += f" of shape {tuple(batch.shape)}"
    elif isinstance(batch, Mapping):
        kind += f" with keys {sorted(batch)}"
    raise TorchrigError(
        f"Batch {step + 1} is {kind}; expected a pair (inputs, target). Make the Dataset's "
        "__getitem__ return (x, y); put several inputs in a tuple or dict: ((x1, x2), y)."
    )


def _forward(model: nn.Module, inputs: Any, step: int = -1) -> Any:
    try:
        if isinstance(inputs, Mapping):
            output = model(**inputs)
        elif isinstance(inputs, (tuple, list)):
            output = model(*inputs)
        else:
            output = model(inputs)
        # Hugging Face models return an output object (a ModelOutput): its ``logits`` are the output
        return output if isinstance(output, torch.Tensor) else getattr(output, "logits", output)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        if step != 0:
            raise
        raise TorchrigError(
            f"{type(model).__name__} failed on the first batch, whose inputs are {_describe(inputs)}: "
            f"{exc}. Check that the data's shape matches what the model expects."
        ) from exc


# Losses that compare output and target element by element: torch broadcasts mismatched shapes
# with only a warning, which silently trains on the wrong thing, so we refuse it on the first step.
_ELEMENTWISE_LOSSES = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss, nn.BCELoss, nn.BCEWithLogitsLoss)


def _loss(loss_fn: Callable, output: Any, target: Any, step: int) -> torch.Tensor:
    try:
        if (step == 0 and isinstance(loss_fn, _ELEMENTWISE_LOSSES) and isinstance(output, torch.Tensor)
                and isinstance(target, torch.Tensor) and output.shape != target.shape):
            raise ValueError("output and target shapes differ, and this loss would broadcast them")
        loss = loss_fn(output, target)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        if step != 0:
            raise
        setting = _named_setting(loss_fn, str(exc))
        if setting is not None:  # torch checks some settings only when the loss runs (label_smoothing)
            raise TorchrigError(f"The loss {type(loss_fn).__name__} refused its setting {setting}: "
                                f"{str(exc).strip().rstrip('.')}. In a recipe it is loss.{setting}.") from exc
        raise TorchrigError(
            f"The loss {type(loss_fn).__name__} does not fit the model's output {_describe(output)} "
            f"and the target {_describe(target)}: {str(exc).strip().rstrip('.')}. {_loss_hint(loss_fn)}"
            f"{_classes_hint(output, target)}"
        ) from exc
    if step == 0 and not (isinstance(loss, torch.Tensor) and loss.numel() == 1):
        raise TorchrigError(
            f"The loss {type(loss_fn).__name__} returned {_describe(loss)}; expected a scalar tensor. "
            "Use reduction='mean' (the default) or 'sum'."
        )
    return loss


def _named_setting(loss_fn: Any, message: str) -> str | None:
    """The loss's constructor argument that its error names, if any (then the value is wrong,
    not the shapes)."""
    import inspect

    try:
        names = inspect.signature(type(loss_fn)).parameters
    except (TypeError, ValueError):
        return None
    return next((n for n in names if len(n) > 3 and n in message and n not in ("input", "target")), None)


def _classes_hint(output: Any, target: Any) -> str:
    """A class index past the model's outputs: say where the number of classes comes from."""
    if not (isinstance(output, torch.Tensor) and isinstance(target, torch.Tensor) and output.ndim == 2
            and not target.is_floating_point() and target.numel() and int(target.max()) >= output.shape[1]):
        return ""
    return (f" The model has {output.shape[1]} outputs, and the targets reach class {int(target.max())}: build "
            f"it with num_classes={int(target.max()) + 1} or more (in a recipe: model.num_classes, or give the "
            "dataset a `classes` attribute, the class names, and it is filled in).")


def _loss_hint(loss_fn: Callable) -> str:
    name = type(loss_fn).__name__
    if name in ("CrossEntropyLoss", "NLLLoss"):
        return ("It expects an output of shape (N, num_classes) and a target of class indices, "
                "shape (N,), dtype torch.long.")
    if name == "BCEWithLogitsLoss":
        return "It expects an output and a float target of the same shape, e.g. (N,) or (N, 1)."
    if name in ("MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss"):
        return "It expects an output and a float target of the same shape, e.g. both (N, 1)."
    return "Check the shapes and dtypes the loss expects."


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)} ({x.dtype})"
    if isinstance(x, Mapping):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in x.items()) + "}"
    if isinstance(x, (tuple, list)):
        return "(" + ", ".join(_describe(v) for v in x) + ")"
    return type(x).__name__


def _batch_size(target: Any) -> int:
    if isinstance(target, torch.Tensor):
        return target.shape[0] if target.ndim else 1
    if isinstance(target, (tuple, list)):
        return len(target)
    return 1


def _to_cpu(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.float().cpu() if out.is_floating_point() else out.cpu()
    if isinstance(out, Mapping):
        return {k: _to_cpu(v) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return type(out)(_to_cpu(v) for v in out)
    return out


class _eval_mode:
    """``model.eval()`` for the block, then back to the mode it was in."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc: Any) -> None:
        self.model.train(self.was_training)


class _preserved_rng:
    """Restore the torch RNG after evaluation.

    Creating a DataLoader iterator draws a seed from the global torch RNG (and a shuffled val
    loader draws more). Without this, adding a val_loader would shift the training shuffle and
    dropout masks of every later epoch, so weights would differ from the plain training loop's.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __enter__(self) -> None:
        self.cpu_state = torch.get_rng_state()
        self.cuda_state = torch.cuda.get_rng_state() if self.cuda else None

    def __exit__(self, *exc: Any) -> None:
        torch.set_rng_state(self.cpu_state)
        if self.cuda_state is not None:
            torch.cuda.set_rng_state(self.cuda_state)
