"""Build a recipe's parts (datasets, fitted transforms, loaders, model, loss, optimizer,
scheduler, callbacks): the one path behind train, evaluate, predict and the benchmarks, and the
names of a run dir's files."""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from . import _dist, protocols
from ._callbacks import CSVLogger, EarlyStopping, ModelCheckpoint
from ._checkpoint import atomic_write
from ._data import TransformedDataset, build_splits, build_transform, collate_of, lengths_of, make_loader, targets_of
from ._device import resolve_device
from ._errors import TorchrigError
from ._finetune import FineTune
from ._recipe import Recipe, component, resolve_loss, resolve_optimizer, resolve_scheduler
from ._registry import get_entry
from ._weights import Source
from ._weights import build_model as build_model_with_weights

__all__ = ["Parts", "build", "build_loss", "build_model", "build_optimizer", "build_scheduler", "build_transforms",
           "fit_transforms", "prepare_weights", "share_model_settings"]

from ._files import FITTED, META, METRICS, RECIPE, STATE, SUMMARY, WEIGHTS  # noqa: F401  (a run dir's files)


# ---------------------------------------------------------------- building


@contextlib.contextmanager
def refused_settings(recipe: Recipe, section: str, what: str | None = None) -> Iterator[None]:
    """Build a recipe section's object (``what``: default, the section's component); a value its
    library refuses (torch's "Invalid learning rate: -1", a DataLoader's ``batch_size=0``, a
    dropout of 2) is the recipe's to fix, so it is an error at that section, in the library's
    words, not an internal error."""
    try:
        yield
    except TorchrigError:
        raise
    except (ValueError, TypeError, RuntimeError) as exc:
        what = what or component(recipe[section])[0]
        raise recipe.error((section,), f"{what} refused these settings: {exc}") from exc


def _inject_sizes(recipe: Recipe, info: dict[str, Any], inherited: dict[str, Any] | None = None) -> None:
    """Fill sizes the data implies (``num_classes`` from its classes, and whatever the dataset
    lists in ``model_kwargs``, e.g. ``in_channels``) when the model builder takes them and the
    recipe leaves them out; then the settings ``inherited`` from a run dir the weights come from.
    The resolved recipe then records them."""
    name, kwargs = component(recipe["model"])
    params = inspect.signature(get_entry("model", name).builder).parameters
    implied = dict(info["model_kwargs"])
    if info["classes"] is not None:
        implied["num_classes"] = len(info["classes"])
    for key, value in {**(inherited or {}), **implied}.items():
        if key in params and key not in kwargs:
            kwargs[key] = value
    recipe.data["model"] = {"name": name, **kwargs}


def share_model_settings(recipe: Recipe) -> None:
    """Fill the transform arguments a transform builder takes from the model (its ``from_model``
    names, e.g. a Hugging Face tokenizer's ``checkpoint``) where the recipe leaves them out, so a
    recipe names the checkpoint once; the resolved recipe records them."""
    _, model_kwargs = component(recipe["model"])
    data = recipe.data["data"]
    for key in ("train_transform", "eval_transform"):
        if data.get(key) is None:
            continue
        t_name, t_kwargs = component(data[key])
        for k in protocols.from_model(get_entry("transform", t_name).builder):
            if t_kwargs.get(k) is None and model_kwargs.get(k) is not None:
                t_kwargs[k] = model_kwargs[k]
        data[key] = {"name": t_name, **t_kwargs}


def prepare_weights(recipe: Recipe) -> Source | None:
    """Resolve ``model.weights`` before any data is read: fetch a library's named weights (or
    fail with where to put the file), write the preprocessing they were trained with into the
    recipe's transforms (unless the recipe sets it), and record the file's sha256."""
    from ._weights import resolve_weights, split_weights_kwargs

    name, kwargs = component(recipe["model"])
    if kwargs.get("weights") is None:
        return None
    source = resolve_weights(kwargs["weights"], name, get_entry("model", name).builder,
                             split_weights_kwargs(kwargs)[0])
    source.ensure()
    source.verify(kwargs.get("weights_sha256"), name)  # a resolved recipe run again: the same file
    if source.named is not None:
        data = recipe.data["data"]
        for key, which in (("train_transform", "train"), ("eval_transform", "eval")):
            if data.get(key) is None:
                continue
            t_name, t_kwargs = component(data[key])
            params = inspect.signature(get_entry("transform", t_name).builder).parameters
            for k, v in source.named.transform_kwargs.get(which, {}).items():
                if k in params and k not in t_kwargs:
                    t_kwargs[k] = v
            data[key] = {"name": t_name, **t_kwargs}
    sha = source.sha256()
    if sha is not None:
        recipe.data["model"] = {"name": name, **kwargs, "weights_sha256": sha}
    return source


def build_model(recipe: Recipe, *, pretrained: bool = True) -> torch.nn.Module:
    """The recipe's model; ``pretrained=False`` skips ``model.weights`` (evaluate and predict load
    the run's own weights instead)."""
    name, kwargs = component(recipe["model"])
    if not pretrained:
        kwargs = own_weights_kwargs(kwargs)
    return build_model_with_weights(name, kwargs)[0]


def own_weights_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A run's model settings without what only starts training (``weights`` and its keys, word
    ``vectors``): evaluate, predict and ``from_run`` load the run's own weights next, so the
    source files need not exist any more."""
    from ._weights import INIT_KEYS, split_weights_kwargs

    return {k: v for k, v in split_weights_kwargs(kwargs)[0].items() if k not in INIT_KEYS}


def build_loss(recipe: Recipe, *, classes: list[str] | None = None, targets: list[Any] | None = None) -> Any:
    """The recipe's loss; ``class_weights`` (``balanced``, a list, or a mapping of class name to
    weight) become its ``weight`` (``pos_weight`` for a binary BCE loss), from the training
    split's ``targets``."""
    name, kwargs = component(recipe["loss"])
    cls = resolve_loss(name)
    spec = kwargs.pop("class_weights", None)
    if spec is not None:
        weights = class_weights(spec, classes, targets)
        if "weight" in inspect.signature(cls).parameters:
            kwargs["weight"] = weights
        else:  # BCEWithLogitsLoss: one output, positives weighed against negatives
            if len(weights) != 2:
                raise TorchrigError(f"loss {name!r} weighs the positive class of a binary task; these data have "
                                    f"{len(weights)} classes. Use cross_entropy for class weights.")
            kwargs["pos_weight"] = weights[1:] / weights[0]
    return cls(**kwargs)


def class_weights(spec: Any, classes: list[str] | None, targets: list[Any] | None) -> torch.Tensor:
    """One weight per class: ``balanced`` is scikit-learn's ``n_samples / (n_classes * count)``
    over the training targets; a list is taken as it is; a mapping names classes (others: 1)."""
    from ._errors import did_you_mean

    if not classes:
        raise TorchrigError("loss.class_weights needs the dataset's classes (its `classes` attribute).")
    n = len(classes)
    if spec == "balanced":
        counts = torch.bincount(torch.as_tensor([int(t) for t in targets or []], dtype=torch.long), minlength=n)
        if (counts == 0).any():
            empty = [classes[i] for i in (counts == 0).nonzero().flatten().tolist()]
            raise TorchrigError(f"loss.class_weights: balanced: the training split has no sample of {', '.join(empty)}.")
        return counts.sum() / (n * counts.double()).float()
    if isinstance(spec, list):
        if len(spec) != n:
            raise TorchrigError(f"loss.class_weights has {len(spec)} weights for {n} classes "
                                f"({', '.join(classes)}); give one per class, in that order.")
        return torch.tensor(spec, dtype=torch.float32)
    unknown = [k for k in spec if k not in classes]
    if unknown:
        raise TorchrigError(f"loss.class_weights names {unknown[0]!r}, which is not a class."
                            f"{did_you_mean(str(unknown[0]), classes)} The classes: {', '.join(classes)}.")
    return torch.tensor([float(spec.get(c, 1.0)) for c in classes], dtype=torch.float32)


def class_counts(parts: Parts) -> dict[str, dict[str, int]]:
    """Samples per class in each split (for summary.json); empty unless each target is one class index."""
    if not parts.classes or parts.recipe["task"] != "classification":
        return {}
    found = {}
    for split, dataset in parts.splits.items():
        try:
            indices = torch.as_tensor([int(t) for t in targets_of(dataset)], dtype=torch.long)
        except (TypeError, ValueError, RuntimeError):  # multi-label targets: no single class to count
            return {}
        counts = torch.bincount(indices, minlength=len(parts.classes))
        found[split] = {c: int(k) for c, k in zip(parts.classes, counts.tolist())}
    return found


def build_optimizer(recipe: Recipe, model: torch.nn.Module, finetune: FineTune | None = None) -> torch.optim.Optimizer:
    """The recipe's optimizer; with fine-tuning, the backbone and the head in two groups."""
    name, kwargs = component(recipe["optimizer"])
    cls = resolve_optimizer(name)
    if finetune is None:
        return cls(model.parameters(), **kwargs)
    lr = kwargs.get("lr", inspect.signature(cls).parameters["lr"].default)
    return cls(finetune.param_groups(model, lr=float(lr)), **kwargs)


def build_scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> tuple[Any, str]:
    """The scheduler and its interval; sensible lengths are filled in from the recipe."""
    if recipe.get("scheduler") is None:
        return None, "epoch"
    name, kwargs = component(recipe["scheduler"])
    cls = resolve_scheduler(name)
    epochs = recipe["trainer"]["max_epochs"]
    interval = recipe["trainer"].get("scheduler_interval", "epoch")
    params = inspect.signature(cls).parameters
    if cls.__name__ == "OneCycleLR":
        interval = "step"  # OneCycle is defined per optimizer step
        kwargs.setdefault("max_lr", [g["lr"] for g in optimizer.param_groups])
        kwargs.setdefault("total_steps", epochs * steps_per_epoch)
    if "T_max" in params:
        kwargs.setdefault("T_max", epochs * steps_per_epoch if interval == "step" else epochs)
    if "total_iters" in params and cls.__name__ in ("PolynomialLR",):
        kwargs.setdefault("total_iters", epochs * steps_per_epoch if interval == "step" else epochs)
    return cls(optimizer, **kwargs), interval


def build_transforms(recipe: Recipe) -> tuple[Any, Any]:
    """The train and eval transforms; one object when the recipe gives the same component."""
    data = recipe["data"]
    train_t = build_transform(data.get("train_transform"))
    same = data.get("eval_transform") == data.get("train_transform")
    return train_t, (train_t if same else build_transform(data.get("eval_transform")))


def fit_transforms(transforms: tuple[Any, Any], run_dir: Path | None, train_data: Dataset | None) -> dict[str, Any]:
    """Fit transforms that learn from data (a tokenizer's vocabulary), or reload their state.

    A transform with ``fit(inputs)``, ``state_dict()`` and ``load_state_dict(state)`` is fitted on
    the training split's inputs once; its state goes into ``run_dir/fitted.json`` so that resume,
    evaluate and predict reproduce it exactly. Returns what the fitted transforms tell the model
    (their ``model_kwargs``, e.g. ``vocab_size``).
    """
    path = run_dir / FITTED if run_dir is not None else None  # None: fitted in memory only
    saved = json.loads(path.read_text(encoding="utf-8")) if path is not None and path.is_file() else {}
    fitted, changed, implied = {}, False, {}
    for key, transform in zip(("train_transform", "eval_transform"), transforms):
        if not protocols.is_fitted(transform) or any(transform is t for t in fitted.values()):
            continue
        if key in saved:
            transform.load_state_dict(saved[key])
        elif train_data is not None:
            transform.fit(_inputs(train_data))
            saved[key], changed = transform.state_dict(), True
        else:
            raise TorchrigError(f"{str(run_dir)!r} lacks the fitted state of its {key} ({FITTED}); "
                                "the run did not finish its set-up. Train it again.")
        fitted[key] = transform
        implied.update(protocols.model_kwargs(transform))
    if changed and path is not None and _dist.rank() == 0:  # under DDP every rank fits the same state; rank 0 writes it
        atomic_write(path, json.dumps(saved).encode("utf-8"))
    return implied


def _inputs(dataset: Dataset) -> Any:
    for i in range(len(dataset)):
        yield dataset[i][0]


@dataclass
class Parts:
    """Everything a recipe makes, as :func:`build` returns it.

    Attributes:
        recipe: the recipe, resolved in place (sizes the data implies are written in).
        splits: the datasets per split (``train``, and ``val`` / ``test`` if there are), before
            transforms; empty with ``data=False``.
        classes: the label names (or None).
        train_transform, eval_transform: fitted on the training split (or reloaded from the run dir).
        loaders: ``train`` (shuffled, seeded; sharded under DDP), and ``val`` if there is one.
        model: the model (with ``weights`` loaded when ``pretrained``), on the CPU.
        weights_report: what loading ``weights`` did (or None).
        loss, optimizer, scheduler, scheduler_interval, finetune: for training.
        callbacks: checkpoint, CSV log, fine-tuning and early stopping (with a ``run_dir``).
        lr_find: with ``optimizer.lr: auto``, the range test that chose it (``plot(path)``).
    """

    recipe: Recipe
    splits: dict[str, Dataset] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    train_transform: Any = None
    eval_transform: Any = None
    context: dict[str, Any] = field(default_factory=dict)  # what fitted transforms tell the model off the record
    device: torch.device | None = None
    loaders: dict[str, Any] = field(default_factory=dict)
    model: torch.nn.Module | None = None
    weights_report: Any = None
    loss: Any = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    scheduler_interval: str = "epoch"
    finetune: FineTune | None = None
    callbacks: list[Any] = field(default_factory=list)
    lr_find: Any = None  # the learning-rate range test, when optimizer.lr was auto

    @property
    def classes(self) -> list[str] | None:
        return self.info.get("classes")

    def loader(self, split: str, *, train: bool = False, generator: torch.Generator | None = None) -> Any:
        """A DataLoader over ``split``, through the train or eval transform."""
        transform = self.train_transform if train else self.eval_transform
        lengths = None
        if train and self.recipe["data"]["bucket_by_length"]:
            lengths = lengths_of(self.splits[split], transform)
        if _batched(transform):  # applied by its collate_fn to whole batches of raw inputs
            dataset, collate = TransformedDataset(self.splits[split], None), transform.collate_fn
        else:
            dataset = TransformedDataset(self.splits[split], transform)
            collate = collate_of(self.splits["train"]) or protocols.collate_of(transform)
        balanced = train and self.recipe["data"].get("sampler") == "balanced"
        return make_loader(dataset, self.recipe, train=train, device=self.device, generator=generator,
                           collate_fn=collate, lengths=lengths,
                           targets=targets_of(self.splits[split]) if balanced else None)


def build(recipe: Recipe, run_dir: str | Path | None = None, *, data: bool = True, pretrained: bool = True,
          generator: torch.Generator | None = None, weights: Source | None = None) -> Parts:
    """Build a recipe's parts: the one path behind ``train``, ``evaluate``, ``predict`` and the
    benchmarks.

    Args:
        recipe: a loaded recipe (:func:`torchrig.load_recipe`); sizes the data implies are
            written into it.
        run_dir: where fitted transforms keep their state (``fitted.json``; reloaded if there),
            and where the callbacks write. None: fitted in memory, no callbacks.
        data: False builds only the transforms (reloaded from ``run_dir``) and the model: what
            ``predict`` needs, without the datasets.
        pretrained: load ``model.weights`` / word vectors (False: the run's own weights come next).
        generator: the training loader's shuffling (default: seeded from ``recipe.seed``).
        weights: ``model.weights`` already resolved (:func:`prepare_weights`; resolved here if not).

    Example::

        parts = torchrig.build(torchrig.load_recipe("recipes/vision/digits.yaml"))
        torchrig.Trainer(max_epochs=1).fit(parts.model, parts.loaders["train"], parts.loss, parts.optimizer)
    """
    run_dir = Path(run_dir) if run_dir is not None else None
    share_model_settings(recipe)  # e.g. a Hugging Face tokenizer takes the model's checkpoint
    if pretrained and weights is None:  # the weights' own preprocessing goes into the transforms
        weights = prepare_weights(recipe)
    parts = Parts(recipe, device=resolve_device(recipe["trainer"]["device"]))
    with refused_settings(recipe, "data", "a transform"):
        parts.train_transform, parts.eval_transform = build_transforms(recipe)
    if data:
        parts.splits, parts.info = build_splits(recipe)
        train_raw = parts.splits["train"]
    else:
        parts.info, train_raw = {"classes": None, "model_kwargs": {}, "skipped": {}}, None
    parts.info["model_kwargs"].update(fit_transforms((parts.train_transform, parts.eval_transform), run_dir, train_raw))
    for transform in (parts.train_transform, parts.eval_transform):
        if protocols.is_fitted(transform):
            parts.context.update(protocols.model_context(transform))
    name, kwargs = component(recipe["model"])
    if not data:
        with refused_settings(recipe, "model"):
            _model(parts, name, kwargs, pretrained=pretrained, weights=weights)
        return parts
    _inject_sizes(recipe, parts.info, weights.model_kwargs if weights is not None else None)
    name, kwargs = component(recipe["model"])
    if generator is None:
        generator = torch.Generator().manual_seed(int(recipe["seed"]))
    with refused_settings(recipe, "data", "the DataLoader"):
        train_loader = parts.loader("train", train=True, generator=generator)
    if _dist.active():  # shard now, so the scheduler counts this rank's steps per epoch
        train_loader = _dist.distributed_loader(train_loader, train=True)
    parts.loaders["train"] = train_loader
    if "val" in parts.splits:
        with refused_settings(recipe, "data", "the DataLoader"):
            parts.loaders["val"] = parts.loader("val")
    with refused_settings(recipe, "model"):
        _model(parts, name, kwargs, pretrained=pretrained, weights=weights)
    cfg = recipe["trainer"]
    weighted = component(recipe["loss"])[1].get("class_weights") == "balanced"  # only then: reading targets costs
    with refused_settings(recipe, "loss"):
        parts.loss = build_loss(recipe, classes=parts.classes,
                                targets=targets_of(parts.splits["train"]) if weighted else None)
    parts.finetune = FineTune(**cfg["finetune"]) if cfg.get("finetune") is not None else None
    if component(recipe["optimizer"])[1].get("lr") == "auto":
        _auto_lr(parts)
    with refused_settings(recipe, "optimizer"):
        parts.optimizer = build_optimizer(recipe, parts.model, parts.finetune)
    with refused_settings(recipe, "scheduler"):
        parts.scheduler, parts.scheduler_interval = build_scheduler(recipe, parts.optimizer, len(train_loader))
    if run_dir is not None:
        parts.callbacks = _callbacks(recipe, run_dir, parts.finetune, has_val="val" in parts.loaders)
    return parts


def _auto_lr(parts: Parts) -> None:
    """``optimizer.lr: auto``: the learning-rate range test picks it, and the resolved recipe
    records the value; every state the sweep touched is put back first."""
    from ._lrfind import rounded, sweep_recipe

    result = sweep_recipe(parts)
    parts.lr_find = result
    if result.suggestion is None:
        raise TorchrigError("optimizer.lr: auto: the learning-rate range test found no rate at which the training "
                            "loss falls (it diverged or stayed flat). Give optimizer.lr by hand; "
                            "`torchrig lr-find RECIPE` plots the sweep.")
    name, kwargs = component(parts.recipe["optimizer"])
    parts.recipe.data["optimizer"] = {"name": name, **kwargs, "lr": rounded(result.suggestion)}


def _model(parts: Parts, name: str, kwargs: dict[str, Any], *, pretrained: bool, weights: Source | None) -> None:
    """The model, from its pretrained source (``weights``, word vectors) or bare for the run's own weights."""
    if pretrained:
        parts.model, parts.weights_report = build_model_with_weights(name, kwargs, source=weights,
                                                                     context=parts.context)
    else:
        parts.model = build_model_with_weights(name, own_weights_kwargs(kwargs), context=parts.context)[0]


def _callbacks(recipe: Recipe, run_dir: Path, finetune: FineTune | None, *, has_val: bool) -> list[Any]:
    cfg = recipe["trainer"]
    monitor = cfg.get("monitor", "val_loss" if has_val else "train_loss")
    mode = cfg.get("mode", "min" if monitor.endswith("loss") else "max")
    callbacks: list[Any] = [ModelCheckpoint(run_dir, monitor=monitor, mode=mode), CSVLogger(run_dir / METRICS)]
    if finetune is not None:
        callbacks.append(finetune)
    if cfg.get("ema") is not None or cfg.get("swa") is not None:
        from ._averaging import WeightAveraging

        mode = "ema" if cfg.get("ema") is not None else "swa"
        callbacks.append(WeightAveraging(mode, **cfg[mode]))
    if cfg.get("mlflow") is not None:
        from ._mlflow import MLflowLogger

        settings = dict(cfg["mlflow"])
        settings.setdefault("run_name", run_dir.name)
        callbacks.append(MLflowLogger(**{"experiment": str(recipe["name"]), **settings}, params=recipe.data))
    if cfg.get("early_stopping") is not None:
        es = cfg["early_stopping"]
        callbacks.append(EarlyStopping(monitor, mode=mode, patience=es.get("patience", 3),
                                       min_delta=es.get("min_delta", 0.0)))
    return callbacks



def _batched(transform: Any) -> bool:
    """A transform that says ``batched = True`` works on whole batches in its ``collate_fn``."""
    return protocols.is_batched(transform)
