"""Check a plugin against the plugin protocol (:mod:`torchrig.protocols`).

``torchrig check-plugin NAME`` prints the report; a plugin's own tests call::

    from torchrig.testing import check_plugin

    def test_follows_the_protocol():
        check_plugin("acme")        # raises AssertionError listing every problem

Every registered component is built with its defaults where it has no required argument. Each
dataset's first samples go through its ``collate_fn`` (or PyTorch's); each model gets the
plugin's first dataset's sizes and classes and runs one batch of it; fitted transforms are
fitted on that dataset's inputs and reloaded from their state; readers are checked for their
suffixes. Components that need arguments are listed as skipped, not failed.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any

from . import protocols
from ._errors import TorchrigError

__all__ = ["PluginReport", "check_plugin", "inspect_plugin"]


@dataclass
class PluginReport:
    """What :func:`inspect_plugin` found: one line per component (``ok``, ``skip`` or ``FAIL``)."""

    plugin: str
    lines: list[tuple[str, str, str]] = field(default_factory=list)  # (state, component, detail)

    @property
    def problems(self) -> list[str]:
        return [f"{name}: {detail}" for state, name, detail in self.lines if state == "FAIL"]

    def add(self, state: str, name: str, detail: str) -> None:
        self.lines.append((state, name, detail))

    def __str__(self) -> str:
        rows = [f"{state:<5} {name:<28} {detail}" for state, name, detail in self.lines]
        verdict = (f"{len(self.problems)} problem(s)" if self.problems else "follows the protocol")
        return "\n".join([f"plugin {self.plugin!r}: {verdict}", *rows])


def check_plugin(name: str) -> PluginReport:
    """Run :func:`inspect_plugin` and raise ``AssertionError`` (the report) on any problem."""
    report = inspect_plugin(name)
    if report.problems:
        raise AssertionError(str(report))
    return report


def inspect_plugin(name: str) -> PluginReport:
    """Build and exercise every component the plugin ``name`` registers; see the module docstring."""
    from ._plugins import load_plugin, load_plugins
    from ._registry import REGISTRY

    if not load_plugin(name):
        load_plugins()
    report = PluginReport(name)
    entries = {kind: [e for e in REGISTRY.view(kind).values() if e.plugin == name] for kind in REGISTRY.kinds()}
    if not any(entries.values()):
        from ._plugins import plugin_failure

        report.add("FAIL", name, plugin_failure(name) or "no plugin of that name registers any component")
        return report
    dataset = pipeline = None
    for entry in entries.get("dataset", []):
        built = _check_dataset(entry, report)
        dataset = dataset if dataset is not None else built
    for entry in entries.get("transform", []):
        fitted = _check_transform(entry, dataset, report)
        # models then see the data as a recipe gives it: through the first fitted batched transform
        if pipeline is None and fitted is not None and protocols.is_batched(fitted):
            pipeline = fitted
    for entry in entries.get("model", []):
        _check_model(entry, dataset, pipeline, report)
    for entry in entries.get("reader", []):
        _check_reader(entry, report)
    return report


def _required(builder: Any, supplied: tuple[str, ...] = ()) -> list[str]:
    params = inspect.signature(builder).parameters.values()
    return [p.name for p in params if p.default is p.empty and p.kind is p.KEYWORD_ONLY and p.name not in supplied]


def _check_dataset(entry: Any, report: PluginReport) -> Any:
    needs = _required(entry.builder)
    if needs:
        report.add("skip", entry.name, f"needs {', '.join(needs)} to build")
        return None
    kwargs = {"split": "train"} if "split" in inspect.signature(entry.builder).parameters else {}
    try:
        ds = entry.builder(**kwargs)
    except Exception as exc:  # noqa: BLE001  (the report names any failure)
        report.add("FAIL", entry.name, f"building it with its defaults raised {type(exc).__name__}: {exc}")
        return None
    if ds is None:
        report.add("FAIL", entry.name, "returned None for split 'train' (only other splits may be missing)")
        return None
    problems = []
    if not isinstance(ds, protocols.Dataset):
        report.add("FAIL", entry.name, f"returned a {type(ds).__name__}, which lacks __len__ / __getitem__")
        return None
    if len(ds) == 0:
        problems.append("it is empty")
    else:
        sample = ds[0]
        if not (isinstance(sample, tuple) and len(sample) == 2):
            problems.append(f"a sample is {type(sample).__name__}, not an (inputs, target) pair")
    classes = protocols.classes(ds)
    if classes is not None and len(set(classes)) != len(classes):
        problems.append("`classes` repeats a name")
    sizes = protocols.model_kwargs(ds)
    lengths = protocols.lengths(ds)
    if lengths is not None and len(lengths) != len(ds):
        problems.append(f"`lengths` has {len(lengths)} entries for {len(ds)} samples")
    if not problems and len(ds) > 0:
        try:
            batch = _batch(ds)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"two samples do not batch ({type(exc).__name__}: {exc}); give it a collate_fn")
        else:
            problems += _check_hooks(ds, batch)
    if problems:
        report.add("FAIL", entry.name, "; ".join(problems))
        return None
    extra = f", model_kwargs {sizes}" if sizes else ""
    report.add("ok", entry.name, f"{len(ds)} samples, {len(classes) if classes else 'no'} classes{extra}")
    return ds


def _check_hooks(ds: Any, batch: Any) -> list[str]:
    """The optional interpretation and export hooks, where a dataset has them: ``describe(i)``,
    ``show(inputs, ax)`` on a batched sample, ``preprocessing(inputs)`` as JSON."""
    from ._interpret import _take

    problems = []
    sample = _take(batch[0], 0)
    if callable(getattr(ds, "describe", None)):
        try:
            described = ds.describe(0)
            if not isinstance(described, str):
                problems.append(f"describe(0) returned a {type(described).__name__}, not a str (a path or a text)")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"describe(0) raised {type(exc).__name__}: {exc}")
    if callable(getattr(ds, "show", None)):
        from ._plots import _pyplot

        fig, ax = _pyplot().subplots()
        try:
            ds.show(sample, ax)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"show(inputs, ax) raised {type(exc).__name__}: {exc}")
        finally:
            _pyplot().close(fig)
    if getattr(ds, "preprocessing", None) is not None:
        try:
            json.dumps(protocols.preprocessing(ds, sample))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"preprocessing(inputs) is not JSON data ({type(exc).__name__}: {exc})")
    return problems


def _batch(ds: Any, pipeline: Any = None, n: int = 2) -> tuple[Any, Any]:
    from torch.utils.data import default_collate

    collate = protocols.collate_of(pipeline) or protocols.collate_of(ds) or default_collate
    return collate([ds[i] for i in range(min(n, len(ds)))])


def _check_transform(entry: Any, dataset: Any, report: PluginReport) -> Any:
    """Returns the transform when it was fitted on ``dataset`` (models are then fed through it)."""
    needs = _required(entry.builder)
    if needs:
        report.add("skip", entry.name, f"needs {', '.join(needs)} to build")
        return None
    try:
        transform = entry.builder()
    except TorchrigError as exc:  # the builder's own word that it needs an argument
        report.add("skip", entry.name, str(exc))
        return None
    except Exception as exc:  # noqa: BLE001
        report.add("FAIL", entry.name, f"building it with its defaults raised {type(exc).__name__}: {exc}")
        return None
    if not callable(transform) and not protocols.is_batched(transform):
        report.add("FAIL", entry.name, f"returned a {type(transform).__name__}, which is not callable")
        return None
    fitted = None
    if protocols.is_fitted(transform):
        missing = [m for m in ("state_dict", "load_state_dict") if not callable(getattr(transform, m, None))]
        if missing:
            report.add("FAIL", entry.name, f"has fit() but no {' / '.join(missing)}: a run dir could not reload it")
            return None
        if dataset is not None:
            try:
                transform.fit(dataset[i][0] for i in range(len(dataset)))
                state = json.loads(json.dumps(transform.state_dict()))  # saved as JSON in fitted.json
                transform.load_state_dict(state)
            except Exception as exc:  # noqa: BLE001
                report.add("FAIL", entry.name, f"fit / state_dict (as JSON) / load_state_dict failed: "
                           f"{type(exc).__name__}: {exc}")
                return None
            fitted = transform
    kind = "batched" if protocols.is_batched(transform) else ("fitted" if protocols.is_fitted(transform) else "")
    report.add("ok", entry.name, f"built{f' ({kind})' if kind else ''}")
    return fitted


def _check_model(entry: Any, dataset: Any, pipeline: Any, report: PluginReport) -> None:
    from ._weights import head_of

    params = inspect.signature(entry.builder).parameters
    kwargs: dict[str, Any] = {}
    classes = protocols.classes(dataset) if dataset is not None else None
    if dataset is not None:
        implied = {**protocols.model_kwargs(dataset)}
        if pipeline is not None:
            implied.update({**protocols.model_kwargs(pipeline), **protocols.model_context(pipeline)})
        kwargs.update({k: v for k, v in implied.items() if k in params})
    if "num_classes" in params and classes:
        kwargs["num_classes"] = len(classes)
    needs = _required(entry.builder, tuple(kwargs))
    if needs:
        report.add("skip", entry.name, f"needs {', '.join(needs)} to build")
        return
    try:
        model = entry.builder(**kwargs)
    except Exception as exc:  # noqa: BLE001
        report.add("FAIL", entry.name, f"building it raised {type(exc).__name__}: {exc}")
        return
    head = head_of(model) if hasattr(model, "named_modules") else []
    detail = f"head {', '.join(head) or '(none found)'}"
    if dataset is None:
        report.add("ok", entry.name, f"built; {detail} (no dataset of this plugin builds, so no batch was run)")
        return
    from ._loop import _forward

    try:
        inputs, _ = _batch(dataset, pipeline)
        model.eval()
        import torch

        with torch.no_grad():
            output = _forward(model, inputs)
    except Exception as exc:  # noqa: BLE001
        report.add("FAIL", entry.name, f"one batch of the plugin's first dataset raised {type(exc).__name__}: {exc}")
        return
    shape = tuple(getattr(output, "shape", ()))
    if classes and (len(shape) != 2 or shape[1] != len(classes)):
        report.add("FAIL", entry.name, f"returned shape {shape} for a batch; expected (batch, {len(classes)}) for "
                   f"{len(classes)} classes")
        return
    report.add("ok", entry.name, f"one batch -> {shape}; {detail}")


def _check_reader(entry: Any, report: PluginReport) -> None:
    suffixes = protocols.reader_suffixes(entry.builder)
    bad = [s for s in suffixes if s != "-" and not s.startswith(".")]
    if not suffixes or bad:
        report.add("FAIL", entry.name, "register it with @plugin.reader('.ext', ...): "
                   + (f"suffixes {bad} do not start with '.'" if bad else "it has no suffixes"))
        return
    report.add("ok", entry.name, f"reads {', '.join(suffixes)}")
