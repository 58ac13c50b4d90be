"""Plugin discovery through the ``torchrig.plugins`` entry-point group.

Built-in plugins (vision, audio, text) are found exactly like third-party ones. Loading happens
on the first registry lookup (never at import), and each plugin in isolation: one that fails to
import is recorded with its distribution and error, and the others keep working. A lookup of
``text/encode`` imports only the plugin whose entry point is named ``text``; listing, and a name
whose prefix no entry point has, load them all.

Environment:
    TORCHRIG_PLUGINS: comma-separated plugin names; only these are loaded.
    TORCHRIG_DISABLE_PLUGINS: comma-separated plugin names that are not loaded.
"""

from __future__ import annotations

import logging
import os
import traceback
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from ._errors import TorchrigError
from ._registry import REGISTRY, Plugin

__all__ = ["GROUP", "PluginStatus", "load_plugin", "load_plugins", "plugin_statuses", "register_plugin"]

GROUP = "torchrig.plugins"
log = logging.getLogger("torchrig")


@dataclass
class PluginStatus:
    """What happened to one plugin: where it comes from and whether it loaded."""

    name: str
    target: str  # "module:attribute"
    distribution: str | None = None
    version: str | None = None
    state: str = "not loaded"  # "ok", "failed", "disabled"
    error: str | None = None
    hint: str | None = None
    components: int = 0
    note: str | None = None  # e.g. a component prefix other than the entry point's name

    @property
    def source(self) -> str:
        if self.distribution:
            return f"{self.distribution} {self.version}" if self.version else self.distribution
        return self.target


_statuses: list[PluginStatus] = []
_entries: list[tuple[Any, PluginStatus]] = []  # every entry point found, with its status
_discovered = False
_loaded = False  # every plugin loaded (``list``, ``plugins``, or a name no plugin's prefix matched)


def _entry_points() -> list[Any]:
    """Entry points of our group (a function of its own so tests can fake it)."""
    return list(metadata.entry_points(group=GROUP))


def _names(var: str) -> set[str] | None:
    value = os.environ.get(var, "").strip()
    return {n.strip() for n in value.split(",") if n.strip()} if value else None


def _discover() -> None:
    """Find the entry points once (cheap: no plugin is imported) and give each a status."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    only, disabled = _names("TORCHRIG_PLUGINS"), _names("TORCHRIG_DISABLE_PLUGINS") or set()
    seen: set[tuple[str, str]] = set()
    for ep in sorted(_entry_points(), key=lambda e: (e.name, e.value)):
        if (ep.name, ep.value) in seen:  # one distribution seen twice on sys.path
            continue
        seen.add((ep.name, ep.value))
        dist = getattr(ep, "dist", None)
        status = PluginStatus(
            name=ep.name, target=ep.value,
            distribution=dist.metadata["Name"] if dist is not None else None,
            version=dist.version if dist is not None else None,
        )
        if (only is not None and ep.name not in only) or ep.name in disabled:
            status.state = "disabled"
        _statuses.append(status)
        _entries.append((ep, status))


def load_plugins(*, reload: bool = False) -> list[PluginStatus]:
    """Load every plugin once (idempotent); ``reload=True`` forgets and loads them again."""
    global _loaded
    if reload:
        reset()
    if _loaded:
        return _statuses
    _loaded = True  # set first: a plugin that looks things up while loading must not recurse
    _discover()
    for ep, status in _entries:
        if status.state == "not loaded":
            _load_one(ep, status)
    return _statuses


def load_plugin(prefix: str) -> bool:
    """Load only the plugin whose entry point is named ``prefix`` (a lookup of ``text/encode``
    imports the text plugin alone). Returns False when no entry point has that name, and the
    caller falls back to :func:`load_plugins`."""
    _discover()
    found = [(ep, status) for ep, status in _entries if status.name == prefix]
    for ep, status in found:
        if status.state == "not loaded":
            _load_one(ep, status)
    return bool(found)


def _load_one(ep: Any, status: PluginStatus) -> None:
    try:
        plugin = ep.load()
        if not isinstance(plugin, Plugin):
            raise TorchrigError(
                f"entry point {ep.name} = {ep.value} is a {type(plugin).__name__}, not a torchrig.Plugin; "
                "point it at the module's `plugin = torchrig.Plugin(...)` object."
            )
        REGISTRY.add(plugin, source=status.source)
    except Exception as exc:  # isolation: any failure is recorded, never raised here
        status.state = "failed"
        status.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        status.hint = _hint(exc, status)
        log.warning("torchrig plugin %r (%s) failed to load: %s", status.name, status.source, status.error)
        return
    status.state = "ok"
    status.components = len(plugin.entries)
    if plugin.name != ep.name:
        status.note = (f"registers {plugin.name}/... under the entry point name {ep.name!r}: a lookup of "
                       f"{plugin.name}/NAME loads every plugin (name the entry point {plugin.name!r} to load it alone)")
    log.debug("torchrig plugin %r loaded from %s", status.name, status.source)


def _hint(exc: BaseException, status: PluginStatus) -> str:
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        missing = exc.name.split(".")[0]
        if status.distribution == "torchrig":
            return f'pip install "torchrig[{status.name}]"  (installs {missing} and the rest of its extra)'
        return f"pip install {missing}  (a dependency of {status.source} that is not installed)"
    if isinstance(exc, TorchrigError) and "registered by both" in str(exc):
        return "uninstall one of the two distributions, or set TORCHRIG_DISABLE_PLUGINS=" + status.name
    return (f"reinstall {status.source}, or set TORCHRIG_DISABLE_PLUGINS={status.name} to skip it; "
            f"`python -c 'import {status.target.split(':')[0]}'` shows the full traceback")


def plugin_statuses(*, load: bool = True) -> list[PluginStatus]:
    """Every known plugin's status, after loading them all (``torchrig plugins`` prints this);
    ``load=False``: as they are now (plugins not needed yet stay ``not loaded``)."""
    if load:
        load_plugins()
    else:
        _discover()
    return sorted(_statuses, key=lambda s: s.name)


def plugin_failure(name: str) -> str | None:
    """A sentence on why plugin ``name`` is unavailable, or ``None`` if it is loaded or unknown."""
    failed = [s for s in _statuses if s.name == name and s.state != "ok"]
    if not failed or any(s.name == name and s.state == "ok" for s in _statuses):
        return None
    status = failed[0]
    if status.state == "disabled":
        return (f"the plugin {name!r} ({status.source}) is disabled by TORCHRIG_PLUGINS / "
                "TORCHRIG_DISABLE_PLUGINS.")
    return f"the plugin {name!r} ({status.source}) failed to load: {status.error}. Fix: {status.hint}."


def register_plugin(plugin: Plugin, *, source: str = "__main__") -> None:
    """Register a plugin object directly (a notebook, a script, a test): no entry point needed."""
    load_plugins()
    if not isinstance(plugin, Plugin):
        raise TorchrigError(f"register_plugin takes a torchrig.Plugin, got {type(plugin).__name__}.")
    REGISTRY.add(plugin, source=source)
    _statuses.append(PluginStatus(plugin.name, source, state="ok", components=len(plugin.entries)))


def reset() -> None:
    """Forget every loaded plugin and component (for tests)."""
    global _loaded, _discovered
    _loaded = _discovered = False
    _statuses.clear()
    _entries.clear()
    REGISTRY.clear()
