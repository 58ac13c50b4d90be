"""Run a recipe: train into a run dir, and evaluate or predict from a run dir alone.

A run dir holds ``recipe.yaml`` (resolved: defaults filled, inferred sizes written in),
``meta.json`` (class names, task, versions), ``weights.safetensors``, ``state.pt``,
``metrics.csv``, ``summary.json`` and ``plots/``.
"""

from __future__ import annotations

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

from torch.utils.data import default_collate

from . import _dist, protocols
from ._build import META, RECIPE, SUMMARY, WEIGHTS, Parts, build, class_counts, prepare_weights, share_model_settings
from ._callbacks import ModelCheckpoint
from ._checkpoint import atomic_write, load_weights
from ._files import RunLock, check_run, not_a_file, read_json
from ._device import resolve_device
from ._errors import InputError, TorchrigError
from ._loop import Trainer
from ._recipe import Recipe, component, load_recipe
from ._registry import REGISTRY
from ._seed import seed_everything
from ._version import __version__


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
    created = not run_dir.exists()
    # One writer per run dir: rank 0 holds RUN/.lock for the whole run, taken before any check
    # (a second `train` into the same dir stops here, naming the process that has it).
    lock = RunLock(run_dir).acquire() if _dist.rank() == 0 else None
    base = Path("runs") / str(recipe["name"])
    if out is None and run_dir != base and _dist.rank() == 0:  # said first, and again in the last line
        print(f"{base} holds an earlier run: this one goes to {run_dir} (--out DIR chooses the folder; "
              f"--resume continues {base})", flush=True)
    try:
        return _train_locked(recipe, run_dir, created=created, started=started, resume=resume,
                             progress_bar=progress_bar)
    except BaseException:
        if lock is not None and created and not (run_dir / "state.pt").exists():
            # it failed before its first finished epoch: nothing to resume, nothing worth keeping
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            lock.release()


def _train_locked(recipe: Recipe, run_dir: Path, *, created: bool, started: float, resume: bool,
                  progress_bar: bool) -> Path:
    if resume and not (run_dir / "state.pt").is_file():
        raise TorchrigError(f"--resume: no training state in {str(run_dir)!r} (no state.pt). "
                            "Pass the run dir of the interrupted run with --out DIR.")
    if not resume and (run_dir / "state.pt").exists():
        raise TorchrigError(f"{str(run_dir)!r} already holds a run. Add --resume to continue it, "
                            "or choose another --out.")
    _dist.barrier()  # every rank has checked the run dir before rank 0 writes to it
    zero = _dist.rank() == 0
    name, optimizer_kwargs = component(recipe["optimizer"])
    if resume and optimizer_kwargs.get("lr") == "auto" and (run_dir / RECIPE).is_file():
        # the learning rate the interrupted run found, not a new sweep
        found = component(load_recipe(run_dir / RECIPE)["optimizer"])[1].get("lr")
        recipe.data["optimizer"] = {"name": name, **optimizer_kwargs, "lr": found}
    seed = int(recipe["seed"])
    generator = seed_everything(seed)
    share_model_settings(recipe)
    weights = prepare_weights(recipe)  # before any data is read: a missing file fails at once
    run_dir.mkdir(parents=True, exist_ok=True)
    # set-up: a bad input here (data, weights that do not fit) leaves no half-made run dir (_train
    # removes a run dir this run created, when it fails before its first finished epoch)
    parts = build(recipe, run_dir, generator=generator, weights=weights)
    model, report = parts.model, parts.weights_report
    init_report = protocols.init_report(model)  # e.g. word vectors' coverage
    if zero and parts.lr_find is not None:
        parts.lr_find.plot(run_dir / "plots" / "lr_find.png")
        print(f"optimizer.lr: auto -> {component(recipe['optimizer'])[1]['lr']} (the learning-rate range test: "
              f"{run_dir / 'plots' / 'lr_find.png'})", flush=True)
    if zero:
        for line in (report, init_report and init_report.get("message")):
            if line:
                print(line, flush=True)
    cfg = recipe["trainer"]
    trainer = Trainer(
        max_epochs=cfg["max_epochs"], device=cfg["device"], precision=cfg["precision"],
        accumulate_grad_batches=cfg.get("accumulate_grad_batches", 1),
        gradient_clip_val=cfg.get("gradient_clip_val"),
        gradient_clip_algorithm=cfg.get("gradient_clip_algorithm", "norm"),
        scheduler_interval=parts.scheduler_interval, on_nan=cfg.get("on_nan", "raise"),
        callbacks=parts.callbacks, progress_bar=progress_bar,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {"task": recipe["task"], "classes": parts.classes, "dataset": component(recipe["data"]["dataset"])[0],
            "sizes": {s: len(d) for s, d in parts.splits.items()}, "world_size": _dist.world_size()}
    note = protocols.input_note(protocols.base_dataset(parts.splits["train"]))
    if note:  # what input the model expects: `torchrig info RUN`, and predict's low-confidence hint
        meta["input_note"] = note
    if zero:
        atomic_write(run_dir / RECIPE, recipe.to_yaml().encode())
        atomic_write(run_dir / META, json.dumps(meta, indent=2).encode())

    loss_fn = parts.loss
    interpreting = 0.0  # seconds on plots of samples and the held-out interpretation (summary.json)
    if zero and not resume:  # before training: a run whose augmentation is wrong can be stopped now
        from ._interpret import draw_train_batch
        from ._plots import _pyplot

        _pyplot()  # matplotlib's import: the learning curves need it anyway, so it is not counted
        tick = time.perf_counter()
        draw_train_batch(parts, generator, run_dir / "plots" / "train_batch.png")
        interpreting += time.perf_counter() - tick
    history = trainer.fit(model, parts.loaders["train"], loss_fn, parts.optimizer, val_loader=parts.loaders.get("val"),
                          scheduler=parts.scheduler, metrics=recipe["metrics"], resume=resume)

    # Final numbers with the kept (best) weights, on every held-out split.
    model.load_state_dict(load_weights(run_dir / WEIGHTS, device="cpu"))
    scores = {}
    for split in ("val", "test"):
        if split in parts.splits:
            scores[split] = trainer.evaluate(model, parts.loader(split), loss_fn, metrics=recipe["metrics"])
    plots = run_dir / "plots"
    if not zero:
        return run_dir
    from ._interpret import format_per_class, interpret
    from ._plots import learning_curves

    learning_curves(list(history), plots / "learning_curves.png")
    split = held_out(parts)
    tick = time.perf_counter()
    found = interpret(trainer, model, parts, split, loss_fn, run_dir)
    interpreting += time.perf_counter() - tick
    summary = {
        **scores,
        "best_epoch": next((cb.best_epoch for cb in parts.callbacks if isinstance(cb, ModelCheckpoint)), None),
        "epochs": len(history),
        "wall_time_s": round(time.time() - started, 2),
        "interpretation_s": round(interpreting, 3),
        "device": str(trainer.device),
        "precision": trainer.precision,
        "classes": parts.classes,
        "skipped": parts.info["skipped"],
        **({"groups": parts.info["groups"]} if "groups" in parts.info else {}),
        **({"class_counts": counts} if (counts := class_counts(parts)) else {}),
        **({"class_weights": dict(zip(parts.classes, map(float, weight)))}
           if (weight := getattr(loss_fn, "weight", None)) is not None and parts.classes else {}),
        **({"weights": {"source": str(component(recipe["model"])[1]["weights"]), "kind": weights.kind, "file": str(weights.path),
                        "sha256": weights.sha256(), "report": str(report)}} if weights is not None else {}),
        **({"init": init_report} if init_report else {}),
        **({"per_class": {split: found["per_class"]}} if "per_class" in found else {}),
        "versions": versions(),
    }
    atomic_write(run_dir / SUMMARY, json.dumps(summary, indent=2).encode())
    from ._report import REPORT, write_report

    write_report(run_dir)
    for callback in parts.callbacks:
        if hasattr(callback, "log_run_dir"):  # MLflow: final scores, plots and report as artifacts
            callback.log_run_dir(run_dir, scores)
    print(format_scores(scores))
    if "per_class" in found:
        print(format_per_class(found["per_class"], split))
    print(f"run dir: {run_dir}   (plots in {plots}, report in {run_dir / REPORT})")
    return run_dir


def held_out(parts: Parts) -> str:
    """The split a run is judged on: test, else val, else (no held-out data) train."""
    return next(s for s in ("test", "val", "train") if s in parts.splits)


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
    missing = [f for f in (RECIPE, META, WEIGHTS) if not (run_dir / f).is_file()]
    if missing == [WEIGHTS]:
        raise TorchrigError(f"The run in {str(run_dir)!r} never finished an epoch (no {WEIGHTS} yet). Resume it "
                            f"(torchrig train RECIPE --out {run_dir} --resume) or train again.")
    if missing:
        raise TorchrigError(f"{str(run_dir)!r} is not a torchrig run dir: missing {', '.join(missing)}. "
                            "Pass the folder that `torchrig train` printed as 'run dir'.")
    check_run(run_dir)
    recipe = load_recipe(run_dir / RECIPE)
    meta = read_json(run_dir / META, "the run's metadata")
    return recipe, meta


def _own_weights(parts: Parts, run_dir: Path, device: torch.device) -> torch.nn.Module:
    """The parts' model with the run's own (best) weights, ready to predict."""
    parts.model.load_state_dict(load_weights(run_dir / WEIGHTS))
    return parts.model.to(device).eval()


def evaluate(run_dir: str | Path, *, split: str = "test") -> dict[str, float]:
    """Recompute a split's loss and metrics from the run dir alone, and write its
    interpretation (confusion matrix, per-class scores, top losses) into the run dir."""
    return evaluate_run(run_dir, split=split)[0]


def evaluate_run(run_dir: str | Path, *, split: str = "test") -> tuple[dict[str, float], dict[str, Any] | None]:
    """:func:`evaluate`, and the split's per-class scores (None unless single-label classification)."""
    from ._interpret import interpret

    run_dir = Path(run_dir)
    recipe, _ = open_run(run_dir)
    parts = build(recipe, run_dir, pretrained=False)
    if split not in parts.splits:
        raise TorchrigError(f"Split {split!r} does not exist in this run; it has {', '.join(parts.splits)}.")
    trainer = Trainer(device=recipe["trainer"]["device"], precision=recipe["trainer"]["precision"], progress_bar=False)
    model = _own_weights(parts, run_dir, trainer.device)
    scores = trainer.evaluate(model, parts.loader(split), parts.loss, metrics=recipe["metrics"])
    found = interpret(trainer, model, parts, split, parts.loss, run_dir)
    summary_path = run_dir / SUMMARY
    summary = read_json(summary_path, "the run's summary") if summary_path.is_file() else {}
    summary[split] = scores
    if "per_class" in found:
        summary.setdefault("per_class", {})[split] = found["per_class"]
    atomic_write(summary_path, json.dumps(summary, indent=2).encode())
    return scores, found.get("per_class")


def _read(reader: Any, item: str, dataset: dict[str, Any], force: bool = False) -> Any:
    """Call a plugin's reader; readers that take ``dataset`` get the run's dataset component, and
    those that take ``force`` get ``--force``. Whatever a reader raises about the input becomes an
    InputError that names it: a raw PIL or soundfile exception never reaches the user."""
    kwargs: dict[str, Any] = {"dataset": dataset} if protocols.reader_takes_dataset(reader) else {}
    if force and protocols.reader_takes_force(reader):
        kwargs["force"] = True
    try:
        return reader(item, **kwargs)
    except TorchrigError:
        raise
    except MemoryError:
        raise InputError(f"Cannot read {item!r}: it does not fit in memory.") from None
    except Exception as exc:  # a reader's library error about this input
        raise InputError(f"Cannot read {item!r}: {type(exc).__name__}: {exc}. Is it the kind of file this run "
                         "was trained on?") from exc


def _check_input(item: str, plugin: str, run_dir: Path) -> None:
    """An input that is no readable file, named, with what to pass instead."""
    import shlex

    readers = [e.builder for e in REGISTRY.view("reader").values() if e.plugin == plugin]
    suffixes = [s for r in readers for s in protocols.reader_suffixes(r) if s != "-"]
    problem = not_a_file(item)
    if problem is None:
        if Path(item).stat().st_size == 0:
            raise InputError(f"Cannot predict {item!r}: the file is empty (0 bytes).")
        return
    if Path(item).is_dir():
        example = f"{item.rstrip('/')}/*{suffixes[0]}" if suffixes else f"{item.rstrip('/')}/*"
        raise InputError(f"Cannot predict {item!r}: it is a folder. Pass its files, e.g. {example}")
    if any(c in item for c in "*?[") and not Path(item).exists() and not Path(item).is_symlink():
        folder = str(Path(item).parent)
        raise InputError(f"Cannot predict {item!r}: no file matches this pattern (the shell found none, "
                         f"so it passed the pattern itself). Check it against the files: ls {shlex.quote(folder)}")
    takes_text = any("-" in protocols.reader_suffixes(r) for r in readers)
    if takes_text and not Path(item).exists() and not Path(item).is_symlink():
        raise InputError(f"{item!r} is not a file. To classify text, pipe it in: echo {shlex.quote(item)} | "
                         f"torchrig predict {shlex.quote(str(run_dir))} -")
    raise InputError(f"Cannot predict {item!r}: {problem}. Pass files (a shell glob such as folder/*.png names "
                     "them), or - for lines on standard input.")


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


def predict(run_dir: str | Path, inputs: Sequence[str], *, top_k: int = 3, engine: str = "torch",
            force: bool = False) -> list[dict[str, Any]]:
    """Predict each input (a file, or ``-`` for lines on stdin) with a run dir's model.

    ``engine="onnxruntime"`` runs the run's ONNX export (``torchrig export RUN``) instead of
    torch; inputs are read and preprocessed the same way. ``force`` passes input a reader
    would refuse as the wrong kind (binary input to a text run) to the model anyway.

    Raises:
        InputError: an input is missing, a folder, a dangling link, empty, or unreadable by the
            run's plugin; the message names it. Nothing is predicted then.

    Returns:
        One dict per input: ``{"input": ..., "top": [(label, probability), ...]}`` for
        classification, ``{"input": ..., "value": [...]}`` for regression.
    """
    from ._plugins import load_plugin, load_plugins

    if top_k < 1:
        raise TorchrigError(f"top_k must be at least 1 (the labels to show for each input), got {top_k}.")
    run_dir = Path(run_dir)
    recipe, meta = open_run(run_dir)
    plugin = meta["dataset"].split("/", 1)[0]
    if not load_plugin(plugin):  # its readers; only that plugin is imported (a text run skips torchvision)
        load_plugins()
    parts = build(recipe, run_dir, data=False, pretrained=False)  # transforms and model; no datasets needed
    transform = parts.eval_transform
    if engine not in ("torch", "onnxruntime"):
        raise TorchrigError(f"Unknown engine {engine!r}; choose torch or onnxruntime.")
    trainer = Trainer(device=recipe["trainer"]["device"], precision=recipe["trainer"]["precision"], progress_bar=False)
    if engine == "onnxruntime":
        from ._export import OnnxEngine

        onnx = OnnxEngine(run_dir)
    else:
        model = _own_weights(parts, run_dir, trainer.device)
    classes = meta.get("classes")
    name, kwargs = component(recipe["data"]["dataset"])
    dataset = {"name": name, **kwargs}
    samples: list[tuple[str, Any, Any]] = []
    for item in inputs:
        if item != "-":
            _check_input(item, plugin, run_dir)
        reader = _reader_for(plugin, item)
        collate = protocols.collate_of(transform) or protocols.reader_collate(reader) or default_collate
        if item == "-":
            stdin = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
            lines = stdin.decode("utf-8", errors="surrogateescape").splitlines()  # the reader judges the bytes
            samples += [(line, _read(reader, line, dataset, force), collate) for line in lines if line.strip()]
            continue
        samples.append((item, _read(reader, item, dataset, force), collate))
    results = []
    for label, raw, collate in samples:
        try:
            x = transform(raw) if transform is not None and not protocols.is_batched(transform) else raw
            # a batch of one, through the same collate as training: (inputs, dummy target)
            batch = collate([(x, 0)])
        except TorchrigError:
            raise
        except Exception as exc:
            raise InputError(f"Cannot prepare {label!r} for the model: {type(exc).__name__}: {exc}. Is it the kind "
                             "of input this run was trained on?") from exc
        output = onnx(batch[0])[0] if engine == "onnxruntime" else trainer.predict(model, [batch])[0]
        if recipe["task"] == "classification":
            probs = output.softmax(-1) if output.numel() > 1 else torch.sigmoid(output)
            k = min(top_k, probs.numel())
            p, idx = probs.topk(k)
            names = [classes[i] if classes else str(i) for i in idx.tolist()]
            results.append({"input": label, "top": [(n, float(v)) for n, v in zip(names, p)]})
        else:
            results.append({"input": label, "value": output.tolist()})
    return results
