"""YAML recipes: safe parsing with line numbers, ``--set`` overrides, validation before work.

Every error names the file, the line, the key path and the closest valid choices, e.g.::

    recipes/vision/digits.yaml:12: model.num_class: 'vision/small_cnn' takes no argument
    'num_class'. Did you mean 'num_classes'?
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from ._errors import TorchrigError, did_you_mean

__all__ = ["Recipe", "load_recipe", "resolve_loss", "resolve_optimizer", "resolve_scheduler"]

TASKS = ("classification", "regression")
Path_ = tuple[str, ...]


class _Component:
    """Schema leaf for a component: a name, or ``{name: ..., **kwargs}``."""

    def __init__(self, kind: str, optional: bool = False) -> None:
        self.kind, self.optional = kind, optional


class _Choice:
    def __init__(self, *choices: str) -> None:
        self.choices = choices


class _AtLeast:
    """A number (or null, with ``none``) of at least ``low`` (above it, with ``above``)."""

    def __init__(self, kind: Any, low: float, *, above: bool = False, none: bool = False) -> None:
        self.kind, self.low, self.above, self.none = kind, low, above, none


_NUMBER = (int, float)
SCHEMA: dict[str, Any] = {
    "name": str,
    "seed": int,
    "task": _Choice(*TASKS),
    "data": {
        "dataset": _Component("dataset"),
        "split": {"val": _NUMBER, "test": _NUMBER, "group_by": str, "folds": int, "fold": int},
        "train_transform": _Component("transform", optional=True),
        "eval_transform": _Component("transform", optional=True),
        "batch_size": _AtLeast(int, 1),
        "eval_batch_size": _AtLeast(int, 1),
        "num_workers": _AtLeast(int, 0),
        "bucket_by_length": bool,
        "sampler": _Choice("balanced"),
    },
    "model": _Component("model"),
    "loss": _Component("loss"),
    "optimizer": _Component("optimizer"),
    "scheduler": _Component("scheduler", optional=True),
    "metrics": [str],
    "trainer": {
        "max_epochs": _AtLeast(int, 1),
        "device": str,
        "precision": (str, int),
        "accumulate_grad_batches": _AtLeast(int, 1),
        "gradient_clip_val": _AtLeast(_NUMBER, 0, above=True, none=True),
        "gradient_clip_algorithm": _Choice("norm", "value"),
        "scheduler_interval": _Choice("epoch", "step"),
        "on_nan": _Choice("raise", "skip"),
        "monitor": str,
        "mode": _Choice("min", "max"),
        "early_stopping": {"patience": _AtLeast(int, 0), "min_delta": _AtLeast(_NUMBER, 0)},
        "finetune": {"freeze_epochs": _AtLeast(int, 0), "backbone_lr_scale": _AtLeast(_NUMBER, 0, above=True)},
        "mlflow": {"tracking_uri": str, "experiment": str, "run_name": str},
        "ema": {"decay": _NUMBER},
        "swa": {"start_epoch": int, "lr": _NUMBER, "anneal_epochs": int},  # bounds: WeightAveraging's
    },
}

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "task": "classification",
    "data": {"split": {"val": 0.1, "test": 0.2}, "batch_size": 64, "num_workers": 0, "bucket_by_length": False,
             "train_transform": None, "eval_transform": None},
    "optimizer": {"name": "adamw", "lr": 1e-3},
    "scheduler": None,
    "trainer": {"max_epochs": 10, "device": "auto", "precision": "auto"},
}
TASK_DEFAULTS = {
    "classification": {"loss": "cross_entropy", "metrics": ["accuracy", "f1"]},
    "regression": {"loss": "mse", "metrics": ["mse", "mae", "r2"]},
}


class Recipe:
    """A parsed, validated recipe: ``recipe["data"]["batch_size"]``, plus where each key was.

    Use :func:`load_recipe` to make one.
    """

    def __init__(self, data: dict[str, Any], source: str, lines: dict[Path_, int]) -> None:
        self.data, self.source, self.lines = data, source, lines

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def error(self, path: Path_, message: str) -> TorchrigError:
        """An error located at ``path`` (the nearest key with a known line)."""
        where = self.source
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.lines:
                line = self.lines[path[:cut]]
                where = f"{self.source}:{line}" if line > 0 else f"{self.source} (--set)"
                break
        key = ".".join(map(str, path)) or "(top level)"
        return TorchrigError(f"{where}: {key}: {message}")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.data, sort_keys=False, default_flow_style=None)


# ---------------------------------------------------------------- parsing


def load_recipe(path: str | Path, overrides: Sequence[str] = (), *, check_components: bool = True) -> Recipe:
    """Read a recipe file, apply ``key.path=value`` overrides, fill defaults and validate.

    Raises:
        TorchrigError: a missing file, bad YAML, an unknown key, a wrong type, an unknown
            component name or an argument a builder does not take; each names file and line.
    """
    from ._files import read_text

    path = Path(path)
    if not path.exists() and not path.is_symlink():
        hint = ""
        if path.parent.is_dir():
            near = did_you_mean(path.name, [p.name for p in path.parent.glob("*.y*ml")])
            hint = near
        raise TorchrigError(f"No recipe file at {str(path)!r}.{hint}")
    text = read_text(path, "recipe")
    data, lines = _parse(text, str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TorchrigError(f"{path}:1: a recipe is a mapping of keys (name, data, model, ...), "
                            f"not a {type(data).__name__}.")
    for item in overrides:
        _apply_override(data, lines, item, str(path))
    recipe = Recipe(data, str(path), lines)
    _validate(recipe, data, SCHEMA, ())
    _fill_defaults(recipe)
    if check_components:
        check_recipe_components(recipe)
    return recipe


def _parse(text: str, source: str) -> tuple[Any, dict[Path_, int]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = f"{exc.context + '; ' if exc.context else ''}{exc.problem}"
        if "python/" in str(exc):
            problem += " (recipes are plain YAML: Python tags are never loaded)"
        raise TorchrigError(f"{source}{line}: invalid YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise TorchrigError(f"{source}: invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    lines: dict[Path_, int] = {(): 1}
    if node is not None:
        _collect_lines(node, (), lines)
    return data, lines


def _collect_lines(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*path, str(key_node.value))
            lines[key] = key_node.start_mark.line + 1
            _collect_lines(value_node, key, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, str(i))] = item.start_mark.line + 1
            _collect_lines(item, (*path, str(i)), lines)


def _apply_override(data: dict[str, Any], lines: dict[Path_, int], item: str, source: str) -> None:
    if "=" not in item:
        raise TorchrigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set trainer.max_epochs=3")
    key, raw = item.split("=", 1)
    parts = tuple(p for p in key.strip().split(".") if p)
    if not parts:
        raise TorchrigError(f"--set {item!r}: the key is empty.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise TorchrigError(f"--set {item!r}: the value is not valid YAML: {exc}") from exc
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if isinstance(child, str) and _is_component_path(parts[: i + 1]):
            child = {"name": child}  # `model: x` then --set model.num_classes=3
            node[part] = child
        elif child is None:
            child = {}
            node[part] = child
        elif not isinstance(child, dict):
            raise TorchrigError(f"--set {item!r}: {'.'.join(parts[: i + 1])} is a {type(child).__name__}, "
                                "not a mapping, so it has no sub-keys.")
        node = child
    node[parts[-1]] = value
    for cut in range(1, len(parts) + 1):
        lines.setdefault(parts[:cut], 0)  # 0: from the command line
    lines[parts] = 0


def _is_component_path(path: Path_) -> bool:
    node: Any = SCHEMA
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return False
        node = node[p]
    return isinstance(node, _Component)


# ---------------------------------------------------------------- validation


def _type_name(spec: Any) -> str:
    if isinstance(spec, tuple):
        return " or ".join(_type_name(s) for s in spec)
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false",
            type(None): "null"}.get(spec, getattr(spec, "__name__", str(spec)))


def _validate(recipe: Recipe, value: Any, spec: Any, path: Path_) -> None:
    if isinstance(spec, dict):
        if value is None and path:
            return
        if not isinstance(value, dict):
            raise recipe.error(path, f"expected a mapping with keys {', '.join(spec)}, got {value!r}.")
        for key, sub in value.items():
            if key not in spec:
                raise recipe.error((*path, key), f"unknown key.{did_you_mean(str(key), spec)} "
                                   f"Valid keys here: {', '.join(spec)}.")
            _validate(recipe, sub, spec[key], (*path, key))
    elif isinstance(spec, list):
        if isinstance(value, str):
            value = [value]
            _set(recipe.data, path, value)
        if not isinstance(value, list):
            raise recipe.error(path, f"expected a list, got {value!r}.")
        for i, item in enumerate(value):
            _validate(recipe, item, spec[0], (*path, str(i)))
    elif isinstance(spec, _Component):
        if value is None and spec.optional:
            return
        if isinstance(value, dict):
            if not isinstance(value.get("name"), str):
                raise recipe.error(path, "a component mapping needs a 'name' key, e.g. {name: adamw, lr: 0.001}.")
        elif not isinstance(value, str):
            raise recipe.error(path, f"expected a component name or {{name: ..., args...}}, got {value!r}.")
    elif isinstance(spec, _AtLeast):
        if value is None and spec.none:
            return
        _validate(recipe, value, spec.kind, path)
        if value < spec.low or (spec.above and value == spec.low):
            bound = f"above {spec.low}" if spec.above else f"at least {spec.low}"
            raise recipe.error(path, f"must be {bound}, got {value!r}.")
    elif isinstance(spec, _Choice):
        if value not in spec.choices:
            raise recipe.error(path, f"{value!r} is not one of {', '.join(map(repr, spec.choices))}."
                               f"{did_you_mean(str(value), spec.choices)}")
    else:
        types = spec if isinstance(spec, tuple) else (spec,)
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            raise recipe.error(path, f"expected {_type_name(spec)}, got {value!r} ({type(value).__name__}).")


def _set(data: dict[str, Any], path: Path_, value: Any) -> None:
    for p in path[:-1]:
        data = data[p]
    data[path[-1]] = value


def _fill_defaults(recipe: Recipe) -> None:
    data = recipe.data

    def merge(target: dict[str, Any], defaults: dict[str, Any]) -> None:
        for key, value in defaults.items():
            if key not in target:
                target[key] = copy.deepcopy(value)
            elif isinstance(value, dict) and isinstance(target[key], dict) and key not in ("optimizer",):
                merge(target[key], value)

    merge(data, DEFAULTS)
    for key, value in TASK_DEFAULTS[data["task"]].items():
        data.setdefault(key, copy.deepcopy(value))
    data.setdefault("name", Path(recipe.source).stem)
    for key in ("data", "model"):
        if key not in data:
            raise recipe.error((), f"missing the {key!r} section.")
    if "dataset" not in data["data"]:
        raise recipe.error(("data",), "missing data.dataset, e.g. dataset: {name: vision/digits}.")
    if data["trainer"].get("ema") is not None and data["trainer"].get("swa") is not None:
        raise recipe.error(("trainer", "swa"), "trainer.ema and trainer.swa both average the weights; choose one.")
    finetune = data["trainer"].get("finetune")
    if finetune is not None and finetune.get("freeze_epochs", 1) >= data["trainer"]["max_epochs"]:
        raise recipe.error(("trainer", "finetune", "freeze_epochs"),
                           f"freeze_epochs ({finetune.get('freeze_epochs', 1)}) must be below trainer.max_epochs "
                           f"({data['trainer']['max_epochs']}), or the backbone is never trained.")
    split = data["data"]["split"] or {}
    if not 0 <= split.get("val", 0) < 1 or not 0 <= split.get("test", 0) < 1 or split.get("val", 0) + split.get("test", 0) >= 1:
        raise recipe.error(("data", "split"), f"val and test are fractions in [0, 1) that sum to less than 1; got {split}.")


def component(value: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split a component into ``(name, kwargs)``."""
    if isinstance(value, str):
        return value, {}
    kwargs = dict(value)
    return kwargs.pop("name"), kwargs


# ---------------------------------------------------------------- torch components by name


def _snake(name: str) -> str:
    from ._registry import snake_case

    return snake_case(name)


def _losses() -> dict[str, type]:
    import torch.nn as nn

    table = {}
    for cls_name in dir(nn):
        cls = getattr(nn, cls_name)
        if isinstance(cls, type) and issubclass(cls, nn.Module) and cls_name.endswith("Loss") and not cls_name.endswith("WithLoss") and cls_name != "_Loss":
            table[_snake(cls_name[: -len("Loss")])] = cls
    return table


def _optimizers() -> dict[str, type]:
    import torch.optim as optim

    return {n.lower(): getattr(optim, n) for n in dir(optim)
            if isinstance(getattr(optim, n), type) and issubclass(getattr(optim, n), optim.Optimizer)
            and n != "Optimizer"}


_SCHEDULER_ALIASES = {"cosine": "cosine_annealing", "onecycle": "one_cycle", "plateau": "reduce_lr_on_plateau",
                      "warm_restarts": "cosine_annealing_warm_restarts"}
_SCHEDULER_EXCLUDED = {"LRScheduler", "LambdaLR", "MultiplicativeLR", "SequentialLR", "ChainedScheduler"}


def _schedulers() -> dict[str, type]:
    import torch.optim.lr_scheduler as sched

    table = {}
    for n in dir(sched):
        cls = getattr(sched, n)
        if (isinstance(cls, type) and n not in _SCHEDULER_EXCLUDED and not n.startswith("_")
                and (issubclass(cls, sched.LRScheduler) or n == "ReduceLROnPlateau")):
            table[_snake(n[:-2] if n.endswith("LR") else n).replace("reduce_l_r", "reduce_lr")] = cls
    for alias, target in _SCHEDULER_ALIASES.items():
        if target in table:
            table[alias] = table[target]
    return table


def _lookup(kind: str, name: str, table: dict[str, type], where: str) -> type:
    key = name
    if key not in table:
        key = _snake(name)
        for suffix in ("_loss", "_lr"):
            if key.endswith(suffix) and key[: -len(suffix)] in table:
                key = key[: -len(suffix)]
    if key not in table:
        raise TorchrigError(f"Unknown {kind} {name!r}.{did_you_mean(name, table)} "
                            f"Available ({where}): {', '.join(sorted(table))}.")
    return table[key]


def resolve_loss(name: str) -> type:
    """``cross_entropy`` -> ``torch.nn.CrossEntropyLoss`` (also accepts the class name)."""
    return _lookup("loss", name, _losses(), "torch.nn, snake_case without 'Loss'")


def resolve_optimizer(name: str) -> type:
    """``adamw`` -> ``torch.optim.AdamW``."""
    return _lookup("optimizer", name, _optimizers(), "torch.optim, lower case")


def resolve_scheduler(name: str) -> type:
    """``cosine`` -> ``CosineAnnealingLR``, ``step`` -> ``StepLR``, ``plateau`` -> ``ReduceLROnPlateau``."""
    return _lookup("scheduler", name, _schedulers(), "torch.optim.lr_scheduler, snake_case without 'LR'")


# Arguments the runner passes itself; a recipe may not set them.
SUPPLIED = {"optimizer": {"params"}, "scheduler": {"optimizer"}, "dataset": {"split"}}


def _check_signature(recipe: Recipe, path: Path_, label: str, fn: Callable, kwargs: dict[str, Any],
                     supplied: set[str]) -> None:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items()
             if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self" and n not in supplied]
    for key in kwargs:
        if key not in valid:
            raise recipe.error((*path, key), f"{label} takes no argument {key!r}.{did_you_mean(key, valid)} "
                               f"It takes: {', '.join(valid) or 'nothing'}.")


def _check_weights_keys(recipe: Recipe, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``model.weights`` / ``strict`` / ``weights_sha256`` belong to core's loader, not the
    builder: check their types and return the builder's kwargs."""
    from ._weights import split_weights_kwargs

    builder_kwargs, extra = split_weights_kwargs(kwargs)
    types = {"weights": (str, type(None)), "strict": (bool,), "weights_sha256": (str, type(None))}
    for key, value in extra.items():
        if not isinstance(value, types[key]):
            hint = " (a run dir, a weights file, or a library's weights name such as DEFAULT)" if key == "weights" else ""
            raise recipe.error(("model", key), f"expected {_type_name(types[key][0])}{hint}, got {value!r}.")
    return builder_kwargs


def _check_class_weights(recipe: Recipe, name: str, cls: type, value: Any) -> None:
    """``loss.class_weights``: ``balanced``, a list of numbers (one per class) or a mapping of
    class name to number, for a loss that takes ``weight`` (or, binary, ``pos_weight``)."""
    params = inspect.signature(cls).parameters
    if "weight" not in params and "pos_weight" not in params:
        raise recipe.error(("loss", "class_weights"), f"loss {name!r} ({cls.__name__}) takes no class weights; "
                           "cross_entropy, nll_loss and bce_with_logits do.")
    numbers = (int, float)
    ok = (value == "balanced" or (isinstance(value, list) and value and all(isinstance(v, numbers) for v in value))
          or (isinstance(value, dict) and value and all(isinstance(v, numbers) for v in value.values())))
    if not ok or (isinstance(value, bool)):
        raise recipe.error(("loss", "class_weights"), f"expected 'balanced', a list of numbers (one per class) or a "
                           f"mapping of class name to number, got {value!r}.")
    if recipe["task"] != "classification":
        raise recipe.error(("loss", "class_weights"), "class weights need task: classification.")


def check_recipe_components(recipe: Recipe) -> None:
    """Check every component name and its arguments (loads plugins; imports torch)."""
    from ._metrics import METRIC_NAMES
    from ._registry import get_entry

    data = recipe.data
    checks: list[tuple[Path_, str]] = [(("data", "dataset"), "dataset"), (("model",), "model"),
                                       (("data", "train_transform"), "transform"),
                                       (("data", "eval_transform"), "transform")]
    for path, kind in checks:
        value = data[path[0]] if len(path) == 1 else data[path[0]].get(path[1])
        if value is None:
            continue
        name, kwargs = component(value)
        try:
            entry = get_entry(kind, name)
        except TorchrigError as exc:
            raise recipe.error((*path, "name") if isinstance(value, dict) else path, str(exc)) from None
        if kind == "model":
            kwargs = _check_weights_keys(recipe, kwargs)
        _check_signature(recipe, path, repr(name), entry.builder, kwargs, SUPPLIED.get(kind, set()))
    resolvers = {"loss": resolve_loss, "optimizer": resolve_optimizer, "scheduler": resolve_scheduler}
    for key, resolve in resolvers.items():
        if data.get(key) is None:
            continue
        name, kwargs = component(data[key])
        try:
            cls = resolve(name)
        except TorchrigError as exc:
            raise recipe.error((key, "name") if isinstance(data[key], dict) else (key,), str(exc)) from None
        if key == "loss" and "class_weights" in kwargs:
            _check_class_weights(recipe, name, cls, kwargs.pop("class_weights"))
        _check_signature(recipe, (key,), f"{key} {name!r} ({cls.__name__})", cls, kwargs, SUPPLIED.get(key, set()))
    for i, metric in enumerate(data["metrics"]):
        if metric not in METRIC_NAMES:
            raise recipe.error(("metrics", str(i)), f"unknown metric {metric!r}.{did_you_mean(metric, METRIC_NAMES)} "
                               f"Available: {', '.join(METRIC_NAMES)}.")
