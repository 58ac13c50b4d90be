"""The registry of named components: one dict per kind, filled by plugins, read-only outside.

Names are ``plugin/name`` (``vision/resnet18``). A :class:`Plugin` collects builders with
decorators; nothing is registered globally until the plugin is loaded (see ``_plugins``), so
importing a plugin module has no side effect.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from . import protocols
from ._errors import TorchrigError, did_you_mean

__all__ = [
    "Plugin",
    "get_model",
    "get_dataset",
    "get_transform",
    "get_component",
    "list_models",
    "list_datasets",
    "list_transforms",
    "list_components",
    "component_info",
    "KINDS",
]

F = TypeVar("F", bound=Callable[..., Any])
KINDS = ("model", "dataset", "transform")
_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$")


@dataclass(frozen=True)
class Entry:
    """One registered builder and where it came from."""

    name: str  # "plugin/name"
    kind: str
    builder: Callable[..., Any]
    plugin: str
    source: str  # the distribution (or module) that registered it, for conflict messages


class Plugin:
    """A named group of builders, exposed by a plugin module as ``plugin = Plugin("acme")``.

    Args:
        name: the prefix of every component name (``acme`` -> ``acme/wide_mlp``): lowercase
            letters, digits, ``_``, ``-`` and ``.``.

    Example::

        plugin = torchrig.Plugin("acme")

        @plugin.model
        def wide_mlp(*, num_classes: int = 10, width: int = 512) -> nn.Module:
            "A two-layer MLP."
            return nn.Sequential(nn.LazyLinear(width), nn.ReLU(), nn.Linear(width, num_classes))
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise TorchrigError(
                f"Plugin name {name!r} is not valid: use lowercase letters, digits, '_', '-' or '.', "
                "starting with a letter (e.g. Plugin('acme'))."
            )
        self.name = name
        self.entries: dict[tuple[str, str], Callable[..., Any]] = {}

    def __repr__(self) -> str:
        return f"Plugin({self.name!r}, {len(self.entries)} components)"

    def register(self, kind: str, fn: F | None = None, *, name: str | None = None) -> Any:
        """Register ``fn`` as a builder of ``kind`` under ``plugin/name`` (default: its own name).

        Usable as ``@plugin.register("collate")`` or ``plugin.register("model", fn, name="x")``.
        Registering one name twice in a plugin raises.
        """

        def decorator(fn: F) -> F:
            key = name or fn.__name__
            if not _NAME.match(key):
                raise TorchrigError(f"Component name {key!r} in plugin {self.name!r} is not valid; "
                                    "use lowercase letters, digits, '_', '-' or '.'.")
            if (kind, key) in self.entries:
                raise TorchrigError(f"Plugin {self.name!r} registers the {kind} {key!r} twice.")
            self.entries[(kind, key)] = fn
            return fn

        return decorator(fn) if fn is not None else decorator

    def model(self, fn: F | None = None, *, name: str | None = None) -> Any:
        """Register a model builder: keyword sizes (``num_classes``, ...) -> ``nn.Module``."""
        return self.register("model", fn, name=name)

    def dataset(self, fn: F | None = None, *, name: str | None = None) -> Any:
        """Register a dataset builder -> ``Dataset`` of ``(inputs, target)``; may take ``split``."""
        return self.register("dataset", fn, name=name)

    def transform(self, fn: F | None = None, *, name: str | None = None) -> Any:
        """Register a transform builder -> a callable applied to a sample's inputs."""
        return self.register("transform", fn, name=name)

    def reader(self, *suffixes: str, collate_fn: Callable | None = None, name: str | None = None
               ) -> Callable[[F], F]:
        """Register how ``torchrig predict`` reads an input file of these suffixes.

        The function takes a path (or, for the suffix ``"-"``, one line of stdin) and returns a
        sample's inputs as the plugin's datasets do, before the eval transform (see
        :class:`torchrig.protocols.Reader`). ``collate_fn`` batches what it reads when the run's
        transform has none (e.g. padding clips with their lengths).

        Example::

            @plugin.reader(".png", ".jpg")
            def image(path: str) -> PIL.Image.Image: ...
        """

        def decorator(fn: F) -> F:
            fn.suffixes = tuple(s.lower() for s in suffixes)  # type: ignore[attr-defined]
            if collate_fn is not None:
                fn.collate_fn = collate_fn  # type: ignore[attr-defined]
            return self.register("reader", fn, name=name)

        return decorator


class Registry:
    """All loaded components, by kind. Filled by ``_plugins``; read through ``get_*``/``list_*``."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {}
        self.conflicts: dict[str, str] = {}  # name -> the error that names both sources

    def add(self, plugin: Plugin, source: str) -> None:
        """Add every builder of ``plugin``, or none: a name another source took raises."""
        new, errors = [], []
        for (kind, key), fn in plugin.entries.items():
            full = f"{plugin.name}/{key}"
            old = self._entries.get(kind, {}).get(full)
            if old is not None and old.builder is not fn:
                message = (f"The {kind} {full!r} is registered by both {old.source!r} and {source!r}. "
                           "Uninstall one of them, or exclude a plugin with TORCHRIG_DISABLE_PLUGINS.")
                self.conflicts[full] = message
                errors.append(message)
            new.append(Entry(full, kind, fn, plugin.name, source))
        if errors:
            raise TorchrigError(errors[0] + (f" ({len(errors) - 1} more names clash.)" if len(errors) > 1 else ""))
        for entry in new:
            self._entries.setdefault(entry.kind, {})[entry.name] = entry

    def clear(self) -> None:
        self._entries.clear()
        self.conflicts.clear()

    def view(self, kind: str) -> MappingProxyType:
        return MappingProxyType(self._entries.get(kind, {}))

    def kinds(self) -> list[str]:
        return sorted(set(KINDS) | set(self._entries))


REGISTRY = Registry()


def _table(kind: str) -> MappingProxyType:
    from ._plugins import load_plugins

    load_plugins()
    return REGISTRY.view(kind)


def get_entry(kind: str, name: str) -> Entry:
    """The registered :class:`Entry` for ``name``, or an error listing close matches.

    Only the plugin named by ``name``'s prefix is loaded for it; if that does not register the
    name, every plugin is (a plugin may register under another prefix than its entry point's).
    """
    from ._plugins import load_plugin

    if "/" in name and load_plugin(name.split("/", 1)[0]):
        entry = REGISTRY.view(kind).get(name)
        if entry is not None and name not in REGISTRY.conflicts:
            return entry
    table = _table(kind)
    if name in REGISTRY.conflicts:
        raise TorchrigError(REGISTRY.conflicts[name])
    entry = table.get(name)
    if entry is not None:
        return entry
    from ._plugins import plugin_failure

    prefix = name.split("/", 1)[0] if "/" in name else None
    failure = plugin_failure(prefix) if prefix else None
    if failure is not None:
        raise TorchrigError(f"Unknown {kind} {name!r}: {failure}")
    names = sorted(table)
    suggestion = _suggest(name, names)
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
    raise TorchrigError(
        f"Unknown {kind} {name!r}.{suggestion} Available: {shown or 'none (no plugin registers any)'}. "
        f"Run `torchrig list {kind}s` to see them all."
    )


def _check_kwargs(entry: Entry, kwargs: dict[str, Any]) -> None:
    params = inspect.signature(entry.builder).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    for key in kwargs:
        if key not in params or params[key].kind is inspect.Parameter.POSITIONAL_ONLY:
            valid = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
            raise TorchrigError(
                f"{entry.kind} {entry.name!r} got an unexpected argument {key!r}.{did_you_mean(key, valid)} "
                f"It takes: {', '.join(valid) or 'no arguments'}. See `torchrig info {entry.name}`."
            )


def get_component(kind: str, name: str, /, **kwargs: Any) -> Any:
    """Build the component ``name`` of ``kind`` with ``kwargs`` (checked against its signature)."""
    entry = get_entry(kind, name)
    _check_kwargs(entry, kwargs)
    return entry.builder(**kwargs)


def build_component(spec: Any, kind: str, *, prefix: str | None = None, owner: str = "") -> Any:
    """Build a component written as recipes write them: a name (``"vision/resize"``), a mapping
    ``{name: ..., **kwargs}``, or an object already built (any other callable), returned as is.

    Args:
        spec: the component.
        kind: ``"model"``, ``"dataset"``, ``"transform"`` or ``"reader"``.
        prefix: the plugin for names without one (``"text"``: ``"bpe"`` means ``"text/bpe"``).
        owner: who asks, for error messages (``"audio/compose"``).

    Example::

        steps = [torchrig.build_component(s, "transform", owner="acme/compose") for s in transforms]

    Raises:
        TorchrigError: a spec of another form, an unknown name (with close matches), or an
            argument the builder does not take.
    """
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        name = spec["name"]
    elif callable(spec) and not isinstance(spec, Mapping):
        return spec
    else:
        who = f"{owner}: " if owner else ""
        raise TorchrigError(f"{who}a {kind} is a name ('plugin/name'), a mapping {{name: ..., key: value}} or a "
                            f"ready object; got {spec!r:.80}.")
    if prefix and "/" not in name:
        name = f"{prefix}/{name}"
    return get_model(name, **kwargs) if kind == "model" else get_component(kind, name, **kwargs)


_MIXED_CASE_ACRONYMS = ("IoU",)


def snake_case(name: str) -> str:
    """``"RandomResizedCrop"`` -> ``"random_resized_crop"``, ``"MulticlassAUROC"`` ->
    ``"multiclass_auroc"``, ``"RandomIoUCrop"`` -> ``"random_iou_crop"``: the key a class is
    registered under. Mixed-case acronyms (``IoU``) stay one word."""
    for acronym in _MIXED_CASE_ACRONYMS:
        name = name.replace(acronym, acronym.capitalize())
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def get_model(name: str, /, **kwargs: Any) -> Any:
    """Build a registered model, e.g. ``get_model("vision/resnet18", num_classes=10)``.

    ``weights=`` starts it from pretrained weights: a torchrig run dir (its best weights, and its
    model settings unless given here), a ``.safetensors`` / ``.pt`` file, or the model library's
    named weights (``"DEFAULT"``, ``"IMAGENET1K_V1"``), which that library fetches into its own
    cache. The head is made anew for another ``num_classes``; a first convolution with other
    ``in_channels`` is adapted from the pretrained filters. ``strict=False`` loads what fits.

    Example::

        model = torchrig.get_model("vision/resnet18", num_classes=2, weights="DEFAULT")

    Raises:
        TorchrigError: unknown name (with close matches), an argument the builder does not take,
            or weights that cannot be read or do not fit (the first mismatched keys and shapes).
    """
    from ._weights import build_model

    return build_model(name, kwargs)[0]


def get_dataset(name: str, /, **kwargs: Any) -> Any:
    """Build a registered dataset, e.g. ``get_dataset("vision/digits", split="train")``."""
    return get_component("dataset", name, **kwargs)


def get_transform(name: str, /, **kwargs: Any) -> Any:
    """Build a registered transform, e.g. ``get_transform("vision/eval_preset", size=32)``."""
    return get_component("transform", name, **kwargs)


def list_components(kind: str, pattern: str | None = None, *, plugin: str | None = None) -> list[str]:
    """Sorted names of ``kind``, optionally filtered by a ``pattern`` (a glob, or without ``*?[``
    a part of the name) and a ``plugin``."""
    names = sorted(_table(kind))
    if plugin is not None:
        names = [n for n in names if n.split("/", 1)[0] == plugin]
    if pattern is not None and not any(c in pattern for c in "*?["):
        return [n for n in names if pattern.lower() in n.lower()]
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(n.split("/", 1)[1], pattern)]
    return names


def list_models(pattern: str | None = None, *, plugin: str | None = None) -> list[str]:
    """Sorted registered model names, e.g. ``list_models("*resnet*", plugin="vision")``."""
    return list_components("model", pattern, plugin=plugin)


def list_datasets(pattern: str | None = None, *, plugin: str | None = None) -> list[str]:
    """Sorted registered dataset names."""
    return list_components("dataset", pattern, plugin=plugin)


def list_transforms(pattern: str | None = None, *, plugin: str | None = None) -> list[str]:
    """Sorted registered transform names."""
    return list_components("transform", pattern, plugin=plugin)


def component_info(name: str) -> tuple[Entry, str]:
    """The entry registered under ``name`` (any kind) and a text: signature and docstring."""
    from ._plugins import load_plugins

    load_plugins()
    matches = [REGISTRY.view(k)[name] for k in REGISTRY.kinds() if name in REGISTRY.view(k)]
    if not matches:
        _unknown_component(name)
    entry = matches[0]
    lines = [f"{entry.name}  ({entry.kind}, from {entry.source})", ""]
    params = inspect.signature(entry.builder).parameters.values()
    if params:
        lines.append("Parameters:")
        for p in params:
            ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
            ann = "" if p.annotation is p.empty else f": {ann}"
            default = "" if p.default is p.empty else f" = {p.default!r}"
            lines.append(f"  {p.name}{ann}{default}")
        lines.append("")
    lines.append(inspect.getdoc(entry.builder) or "(no docstring)")
    if entry.kind == "model":
        # a builder may describe its head itself (when it depends on a checkpoint); else build and look
        head = protocols.declared_head(entry.builder) or _model_head(entry)
        if head:
            head = [head] if isinstance(head, str) else head
            lines += ["", f"Head: {', '.join(head)}  (re-made for another num_classes; trained alone first by "
                      "trainer.finetune)"]
    return entry, "\n".join(lines)


def _suggest(name: str, names: list[str]) -> str:
    """``did_you_mean`` over registered names; a bare name (``folder``) also finds itself under any
    plugin's prefix (``text/folder``)."""
    suggestion = did_you_mean(name, names)
    if not suggestion and "/" not in name:
        suffixed = [n for n in names if n.split("/", 1)[-1] == name]
        suggestion = did_you_mean(suffixed[0], suffixed) if suffixed else ""
    return suggestion


def _unknown_component(name: str) -> None:
    """Raise for a name no kind registers (``torchrig info``), with the close names of every kind
    (``audio/audio_folder``: did you mean the dataset ``audio/folder``?), not only the models'."""
    from ._plugins import plugin_failure

    prefix = name.split("/", 1)[0] if "/" in name else None
    failure = plugin_failure(prefix) if prefix else None
    if failure is not None:
        raise TorchrigError(f"Unknown component {name!r}: {failure}")
    hint = _suggest(name, sorted({n for k in REGISTRY.kinds() for n in REGISTRY.view(k)}))
    raise TorchrigError(f"No model, dataset, transform or other component is registered as {name!r}.{hint} "
                        "Run `torchrig list` to see them all, or `torchrig list WORD` for those whose name has WORD.")


def _model_head(entry: Entry) -> list[str]:
    """The head of the model a builder makes with its defaults, built on the meta device (no
    memory, no time); empty if the builder needs arguments."""
    import torch

    from ._weights import head_of

    params = inspect.signature(entry.builder).parameters.values()
    # required sizes (vocab_size, ...) get a small stand-in: the head's name does not depend on them
    sizes = {p.name: 8 for p in params if p.default is p.empty and p.kind is p.KEYWORD_ONLY}
    for device in ("meta", "cpu"):  # meta first: no memory, no time; some builders compute on it
        try:
            with torch.device(device):
                return head_of(entry.builder(**sizes))
        except Exception:  # noqa: BLE001, S112  (a builder we cannot call this way: no head shown)
            continue
    return []
