"""Run a recipe: train into a run dir, and evaluate or predict from a run dir alone.

A run dir holds ``recipe.yaml`` (resolved: defaults filled, inferred sizes written in),
``meta.json`` (class names, task, versions), ``weights.safetensors``, ``state.pt``,
``metrics.csv``, ``summary.json`` and ``plots/``.
"""

from __future__ import annotations

import inspect
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import _dist, protocols
from ._callbacks import CSVLogger, EarlyStopping, ModelCheckpoint
from ._checkpoint import atomic_write, load_weights
from torch.utils.data import Dataset, default_collate

from ._data import TransformedDataset, build_splits, build_transform, collate_of, lengths_of, make_loader
from ._device import resolve_device
from ._errors import TorchrigError
from ._finetune import FineTune
from ._loop import Trainer
from ._recipe import Recipe, component, load_recipe, resolve_loss, resolve_optimizer, resolve_scheduler
from ._registry import REGISTRY, get_entry
from ._seed import seed_everything
from ._version import __version__
from ._weights import Source
from ._weights import build_model as build_model_with_weights

RECIPE, META, SUMMARY, FITTED = "recipe.yaml", "meta.json", "summary.json", "fitted.json"


# ---------------------------------------------------------------- building


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
    from ._weights import INIT_KEYS, split_weights_kwargs

    name, kwargs = component(recipe["model"])
    if not pretrained:  # the run's own weights come next: no weights or word vectors to read
        kwargs = {k: v for k, v in split_weights_kwargs(kwargs)[0].items() if k not in INIT_KEYS}
    return build_model_with_weights(name, kwargs)[0]


def build_loss(recipe: Recipe) -> Any:
    name, kwargs = component(recipe["loss"])
    return resolve_loss(name)(**kwargs)


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


def fit_transforms(transforms: tuple[Any, Any], run_dir: Path, train_data: Dataset | None) -> dict[str, Any]:
    """Fit transforms that learn from data (a tokenizer's vocabulary), or reload their state.

    A transform with ``fit(inputs)``, ``state_dict()`` and ``load_state_dict(state)`` is fitted on
    the training split's inputs once; its state goes into ``run_dir/fitted.json`` so that resume,
    evaluate and predict reproduce it exactly. Returns what the fitted transforms tell the model
    (their ``model_kwargs``, e.g. ``vocab_size``).
    """
    path = run_dir / FITTED
    saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
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
    if changed and _dist.rank() == 0:  # under DDP every rank fits the same state; rank 0 writes it
        atomic_write(path, json.dumps(saved).encode("utf-8"))
    return implied


def _inputs(dataset: Dataset) -> Any:
    for i in range(len(dataset)):
        yield dataset[i][0]


class _Built:
    """Everything a run needs, built from a recipe (shared by train and evaluate)."""

    def __init__(self, recipe: Recipe, run_dir: Path) -> None:
        self.recipe = recipe
        self.splits, self.info = build_splits(recipe)
        self.classes = self.info["classes"]
        self.train_transform, self.eval_transform = build_transforms(recipe)
        train_raw = self.splits["train"]
        self.info["model_kwargs"].update(
            fit_transforms((self.train_transform, self.eval_transform), run_dir, train_raw))
        self.context: dict[str, Any] = {}  # what fitted transforms tell the model off the record (a vocabulary)
        for transform in (self.train_transform, self.eval_transform):
            if protocols.is_fitted(transform):
                self.context.update(protocols.model_context(transform))
        self.collate = collate_of(train_raw)
        self.device = resolve_device(recipe["trainer"]["device"])

    def loader(self, split: str, *, train: bool = False, generator: torch.Generator | None = None) -> Any:
        transform = self.train_transform if train else self.eval_transform
        lengths = None
        if train and self.recipe["data"]["bucket_by_length"]:
            lengths = lengths_of(self.splits[split], transform)
        if _batched(transform):  # applied by its collate_fn to whole batches of raw inputs
            dataset, collate = TransformedDataset(self.splits[split], None), transform.collate_fn
        else:
            dataset = TransformedDataset(self.splits[split], transform)
            collate = self.collate or protocols.collate_of(transform)
        return make_loader(dataset, self.recipe, train=train, device=self.device, generator=generator,
                           collate_fn=collate, lengths=lengths)


def _batched(transform: Any) -> bool:
    """A transform that says ``batched = True`` works on whole batches in its ``collate_fn``."""
    return protocols.is_batched(transform)


# ---------------------------------------------------------------- train


def default_run_dir(recipe: Recipe, resume: bool) -> Path:
    base = Path("runs") / str(recipe["name"])
    if resume or not (base / "state.pt").exists():
        return base
    n = 2
    while (Path("runs") / f"{recipe['name']}-{n}" / "state.pt").exists():
        n += 1
    return Path("runs") / f"{recipe['name']}-{n}"


def train(recipe: Recipe, *, out: str | Path | None = None, resume: bool = False,
          progress_bar: bool = True) -> Path:
    """Train a recipe into a run dir and return its path (see the module docstring).

    Under torchrun every rank runs this; the process group spans the whole run (training and
    the final evaluation), and only rank 0 writes the run dir and prints.
    """
    _dist.local_device()
    owned = _dist.setup(resolve_device(recipe["trainer"]["device"]))
    try:
        run_dir = _train(recipe, out=out, resume=resume, progress_bar=progress_bar)
        _dist.barrier()  # on success only: a failed rank must not wait for the others
        return run_dir
    finally:
        _dist.teardown(owned)


def _train(recipe: Recipe, *, out: str | Path | None, resume: bool, progress_bar: bool) -> Path:
    started = time.time()
    run_dir = Path(out) if out is not None else default_run_dir(recipe, resume)
    if resume and not (run_dir / "state.pt").is_file():
        raise TorchrigError(f"--resume: no training state in {str(run_dir)!r} (no state.pt). "
                            "Pass the run dir of the interrupted run with --out DIR.")
    if not resume and (run_dir / "state.pt").exists():
        raise TorchrigError(f"{str(run_dir)!r} already holds a run. Add --resume to continue it, "
                            "or choose another --out.")
    _dist.barrier()  # every rank has checked the run dir before rank 0 writes to it
    zero = _dist.rank() == 0
    seed = int(recipe["seed"])
    generator = seed_everything(seed)
    share_model_settings(recipe)
    weights = prepare_weights(recipe)  # before any data is read: a missing file fails at once
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:  # set-up: a bad input here (data, weights that do not fit) leaves no half-made run dir
        built = _Built(recipe, run_dir)
        _inject_sizes(recipe, built.info, weights.model_kwargs if weights is not None else None)
        cfg = recipe["trainer"]
        train_loader = built.loader("train", train=True, generator=generator)
        val_loader = built.loader("val") if "val" in built.splits else None
        if _dist.active():  # shard now, so the scheduler counts this rank's steps per epoch
            train_loader = _dist.distributed_loader(train_loader, train=True)

        name, model_kwargs = component(recipe["model"])
        model, report = build_model_with_weights(name, model_kwargs, source=weights, context=built.context)
        init_report = protocols.init_report(model)  # e.g. word vectors' coverage
        if zero:
            for line in (report, init_report and init_report.get("message")):
                if line:
                    print(line, flush=True)
        loss_fn = build_loss(recipe)
        finetune = FineTune(**cfg["finetune"]) if cfg.get("finetune") is not None else None
        optimizer = build_optimizer(recipe, model, finetune)
        scheduler, interval = build_scheduler(recipe, optimizer, len(train_loader))
    except TorchrigError:
        if created and zero:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    monitor = cfg.get("monitor", "val_loss" if val_loader is not None else "train_loss")
    mode = cfg.get("mode", "min" if monitor.endswith("loss") else "max")
    callbacks: list[Any] = [ModelCheckpoint(run_dir, monitor=monitor, mode=mode), CSVLogger(run_dir / "metrics.csv")]
    if finetune is not None:
        callbacks.append(finetune)
    if cfg.get("early_stopping") is not None:
        es = cfg["early_stopping"]
        callbacks.append(EarlyStopping(monitor, mode=mode, patience=es.get("patience", 3),
                                       min_delta=es.get("min_delta", 0.0)))
    trainer = Trainer(
        max_epochs=cfg["max_epochs"], device=cfg["device"], precision=cfg["precision"],
        accumulate_grad_batches=cfg.get("accumulate_grad_batches", 1),
        gradient_clip_val=cfg.get("gradient_clip_val"),
        gradient_clip_algorithm=cfg.get("gradient_clip_algorithm", "norm"),
        scheduler_interval=interval, on_nan=cfg.get("on_nan", "raise"),
        callbacks=callbacks, progress_bar=progress_bar,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {"task": recipe["task"], "classes": built.classes, "dataset": component(recipe["data"]["dataset"])[0],
            "sizes": {s: len(d) for s, d in built.splits.items()}, "world_size": _dist.world_size()}
    if zero:
        atomic_write(run_dir / RECIPE, recipe.to_yaml().encode())
        atomic_write(run_dir / META, json.dumps(meta, indent=2).encode())

    history = trainer.fit(model, train_loader, loss_fn, optimizer, val_loader=val_loader, scheduler=scheduler,
                          metrics=recipe["metrics"], resume=resume)

    # Final numbers with the kept (best) weights, on every held-out split.
    model.load_state_dict(load_weights(run_dir / ModelCheckpoint.WEIGHTS, device="cpu"))
    scores = {}
    for split in ("val", "test"):
        if split in built.splits:
            scores[split] = trainer.evaluate(model, built.loader(split), loss_fn, metrics=recipe["metrics"])
    plots = run_dir / "plots"
    if not zero:
        return run_dir
    from ._plots import confusion_matrix, learning_curves

    learning_curves(list(history), plots / "learning_curves.png")
    if recipe["task"] == "classification" and built.classes:
        split = "test" if "test" in built.splits else ("val" if "val" in built.splits else "train")
        loader = built.loader(split)
        pred = trainer.predict(model, loader).argmax(1)
        target = torch.cat([torch.as_tensor(t) for _, t in loader])
        confusion_matrix(target, pred, built.classes, plots / "confusion_matrix.png", title=f"confusion matrix ({split})")
    summary = {
        **scores,
        "best_epoch": next((cb.best_epoch for cb in callbacks if isinstance(cb, ModelCheckpoint)), None),
        "epochs": len(history),
        "wall_time_s": round(time.time() - started, 2),
        "device": str(trainer.device),
        "precision": trainer.precision,
        "classes": built.classes,
        "skipped": built.info["skipped"],
        **({"weights": {"source": str(model_kwargs["weights"]), "kind": weights.kind, "file": str(weights.path),
                        "sha256": weights.sha256(), "report": str(report)}} if weights is not None else {}),
        **({"init": init_report} if init_report else {}),
        "versions": versions(),
    }
    atomic_write(run_dir / SUMMARY, json.dumps(summary, indent=2).encode())
    print(format_scores(scores))
    print(f"run dir: {run_dir}   (plots in {plots})")
    return run_dir


def versions() -> dict[str, str]:
    from ._plugins import plugin_statuses

    found = {"torchrig": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for status in plugin_statuses(load=False):  # the plugins this run used: no others are imported for it
        if status.state == "ok" and status.distribution and status.distribution != "torchrig":
            found[status.distribution] = status.version or "?"
    return found


def format_scores(scores: dict[str, dict[str, float]]) -> str:
    """A small table: one row per split, one column per metric."""
    if not scores:
        return "(no held-out split to score)"
    columns = list(dict.fromkeys(k for row in scores.values() for k in row))
    lines = ["split".ljust(7) + "".join(c.ljust(12) for c in columns)]
    for split, row in scores.items():
        lines.append(split.ljust(7) + "".join(_fmt(row.get(c)).ljust(12) for c in columns))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


# ---------------------------------------------------------------- from a run dir


def open_run(run_dir: str | Path) -> tuple[Recipe, dict[str, Any]]:
    """The resolved recipe and meta of a run dir, with a clear error if it is not one."""
    run_dir = Path(run_dir)
    missing = [f for f in (RECIPE, META, ModelCheckpoint.WEIGHTS) if not (run_dir / f).is_file()]
    if missing:
        raise TorchrigError(f"{str(run_dir)!r} is not a torchrig run dir: missing {', '.join(missing)}. "
                            "Pass the folder that `torchrig train` printed as 'run dir'.")
    recipe = load_recipe(run_dir / RECIPE)
    meta = json.loads((run_dir / META).read_text())
    return recipe, meta


def _load_model(recipe: Recipe, run_dir: Path, device: torch.device) -> torch.nn.Module:
    model = build_model(recipe, pretrained=False)
    model.load_state_dict(load_weights(run_dir / ModelCheckpoint.WEIGHTS))
    return model.to(device).eval()


def evaluate(run_dir: str | Path, *, split: str = "test") -> dict[str, float]:
    """Recompute a split's loss and metrics from the run dir alone."""
    run_dir = Path(run_dir)
    recipe, _ = open_run(run_dir)
    built = _Built(recipe, run_dir)
    if split not in built.splits:
        raise TorchrigError(f"Split {split!r} does not exist in this run; it has {', '.join(built.splits)}.")
    trainer = Trainer(device=recipe["trainer"]["device"], precision=recipe["trainer"]["precision"], progress_bar=False)
    model = _load_model(recipe, run_dir, trainer.device)
    return trainer.evaluate(model, built.loader(split), build_loss(recipe), metrics=recipe["metrics"])


def _read(reader: Any, item: str, dataset: dict[str, Any]) -> Any:
    """Call a plugin's reader; readers that take ``dataset`` get the run's dataset component."""
    if protocols.reader_takes_dataset(reader):
        return reader(item, dataset=dataset)
    return reader(item)


def _reader_for(plugin: str, item: str) -> Any:
    readers = [e for e in REGISTRY.view("reader").values() if e.plugin == plugin]
    suffix = "-" if item == "-" else Path(item).suffix.lower()
    for entry in readers:
        if suffix in protocols.reader_suffixes(entry.builder):
            return entry.builder
    known = sorted({s for e in readers for s in protocols.reader_suffixes(e.builder)})
    if not readers:
        raise TorchrigError(f"The plugin {plugin!r} registers no input reader, so `torchrig predict` "
                            "cannot read files for this run.")
    raise TorchrigError(f"Cannot read {item!r}: the {plugin!r} plugin reads {', '.join(known)}.")


def predict(run_dir: str | Path, inputs: Sequence[str], *, top_k: int = 3) -> list[dict[str, Any]]:
    """Predict each input (a file, or ``-`` for lines on stdin) with a run dir's model.

    Returns:
        One dict per input: ``{"input": ..., "top": [(label, probability), ...]}`` for
        classification, ``{"input": ..., "value": [...]}`` for regression.
    """
    from ._plugins import load_plugin, load_plugins

    run_dir = Path(run_dir)
    recipe, meta = open_run(run_dir)
    plugin = meta["dataset"].split("/", 1)[0]
    if not load_plugin(plugin):  # its readers; only that plugin is imported (a text run skips torchvision)
        load_plugins()
    transforms = build_transforms(recipe)
    fit_transforms(transforms, run_dir, None)
    transform = transforms[1]
    trainer = Trainer(device=recipe["trainer"]["device"], precision=recipe["trainer"]["precision"], progress_bar=False)
    model = _load_model(recipe, run_dir, trainer.device)
    classes = meta.get("classes")
    name, kwargs = component(recipe["data"]["dataset"])
    dataset = {"name": name, **kwargs}
    samples: list[tuple[str, Any, Any]] = []
    for item in inputs:
        reader = _reader_for(plugin, item)
        collate = protocols.collate_of(transform) or protocols.reader_collate(reader) or default_collate
        if item == "-":
            samples += [(line, _read(reader, line, dataset), collate)
                        for line in sys.stdin.read().splitlines() if line.strip()]
            continue
        if not Path(item).is_file():
            raise TorchrigError(f"No input file at {item!r}.")
        samples.append((item, _read(reader, item, dataset), collate))
    results = []
    for label, raw, collate in samples:
        x = transform(raw) if transform is not None and not _batched(transform) else raw
        # a batch of one, through the same collate as training: (inputs, dummy target)
        output = trainer.predict(model, [collate([(x, 0)])])[0]
        if recipe["task"] == "classification":
            probs = output.softmax(-1) if output.numel() > 1 else torch.sigmoid(output)
            k = min(top_k, probs.numel())
            p, idx = probs.topk(k)
            names = [classes[i] if classes else str(i) for i in idx.tolist()]
            results.append({"input": label, "top": [(n, float(v)) for n, v in zip(names, p)]})
        else:
            results.append({"input": label, "value": output.tolist()})
    return results
