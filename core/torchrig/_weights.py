"""Pretrained weights for any registered model: one loader, three sources.

``weights`` is a torchrig run dir, a local file (``.safetensors``, or ``.pt/.pth/.bin`` read
with ``torch.load(weights_only=True)``), or a name the model's library knows (a plugin's builder
answers those through ``builder.named_weights(name)``; see :class:`NamedWeights`). The tensors are
matched to the model by key and shape:

- the classifier head is made anew when its shape differs (another ``num_classes``);
- a first convolution whose input channels differ is adapted from the pretrained filters
  (summed for one channel, repeated and rescaled otherwise, as timm's ``adapt_input_conv``);
- anything else missing, unexpected or mis-shaped is an error that lists the first few, unless
  ``strict=False``, which loads what fits and reports the rest.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from . import protocols
from ._errors import TorchrigError

__all__ = ["NamedWeights", "WeightsReport", "head_of", "load_pretrained", "resolve_weights", "offline"]

FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
_NESTED = ("state_dict", "model_state_dict", "model")  # where checkpoints keep the state_dict
_PREFIXES = ("module.", "model.", "_orig_mod.")  # DDP, wrappers, torch.compile


class NamedWeights(Protocol):
    """What a plugin's ``builder.named_weights(name)`` returns for a library's own weights.

    Attributes:
        label: the full name, e.g. ``"ResNet18_Weights.IMAGENET1K_V1"``.
        url: where the library downloads the file from.
        path: where the library caches it (``$TORCH_HOME/hub/checkpoints/<file>``).
        transform_kwargs: preprocessing the weights were trained with, per recipe transform:
            ``{"train": {...}, "eval": {...}}``, keyword arguments of the plugin's presets.
        model_kwargs: (optional) builder settings the weights imply, e.g. ``{"bundle": ...}``;
            used where the recipe leaves them out.

    ``named_weights(name, model_kwargs=...)`` may take the model's settings as given, to
    resolve ``DEFAULT`` for the chosen architecture or refuse weights of another one.
    """

    label: str
    url: str
    path: Path
    transform_kwargs: Mapping[str, Mapping[str, Any]]

    def load(self) -> dict[str, torch.Tensor]:
        """The state_dict, fetched by the library's own code into its own cache if need be."""


def offline() -> bool:
    """``TORCHRIG_OFFLINE=1``: never download; a missing file is an error at once (tests, CI)."""
    return os.environ.get("TORCHRIG_OFFLINE", "") not in ("", "0")


@dataclass
class Source:
    """A resolved ``weights`` value: what it is, where it lives, and how to read it."""

    kind: str  # "run", "file" or "named"
    label: str  # what the report line calls it
    path: Path | None
    read: Callable[[], dict[str, torch.Tensor]]
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # a run dir's model settings
    named: Any = None
    _sha256: str | None = field(default=None, repr=False)

    def ensure(self) -> None:
        """Make the file available now: a library's named weights not yet cached are fetched by
        the library (or fail with the file, the folder and the URL)."""
        if self.path is not None and not self.path.is_file():
            self.read()

    def sha256(self) -> str | None:
        """The file's sha256 (read once per source; weights files can be gigabytes)."""
        if self._sha256 is None and self.path is not None and self.path.is_file():
            digest = hashlib.sha256()
            with open(self.path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            self._sha256 = digest.hexdigest()
        return self._sha256

    def verify(self, expected: str | None, model_name: str) -> None:
        """Raise if the file is not the one a resolved recipe recorded (``weights_sha256``)."""
        actual = self.sha256() if expected else None
        if actual is not None and actual != expected:
            raise TorchrigError(f"{model_name}: the weights at {str(self.path)!r} changed since this recipe was "
                                f"resolved (sha256 {actual[:12]}..., the recipe says {str(expected)[:12]}...). "
                                "Restore that file, or remove weights_sha256 to accept the new one.")


@dataclass
class WeightsReport:
    """What :func:`load_pretrained` did; ``str()`` is the one-line report."""

    source: str
    loaded: int
    total: int
    new_head: list[str] = field(default_factory=list)
    num_classes: int | None = None
    adapted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # strict=False: mismatched or missing
    unexpected: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"weights: loaded {self.loaded}/{self.total} tensors from {self.source}"]
        if self.new_head:
            classes = f" ({self.num_classes} classes)" if self.num_classes is not None else ""
            parts.append(f"new head {', '.join(self.new_head)}{classes}")
        if self.adapted:
            parts.append(f"input conv {', '.join(self.adapted)} adapted from the pretrained filters")
        if self.skipped:
            parts.append(f"not loaded (strict: false): {_few(self.skipped)}")
        if self.unexpected:
            parts.append(f"unused from the file: {_few(self.unexpected)}")
        return "; ".join(parts)


def _few(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f" (+{len(names) - n} more)" if len(names) > n else "")


# ---------------------------------------------------------------- sources


def resolve_weights(weights: Any, model_name: str, builder: Any, model_kwargs: Mapping[str, Any] | None = None
                    ) -> Source:
    """Turn a ``weights`` value into a :class:`Source`, or raise a clear error.

    A path that exists is a run dir or a file; anything else is offered to the builder's
    ``named_weights`` (with the model's settings, ``model_kwargs``, when it takes them: e.g.
    ``DEFAULT`` means the chosen bundle's weights); a model without them says what it accepts.
    """
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str) or not weights.strip():
        raise TorchrigError(f"{model_name}: weights must be a run dir, a weights file or a library's weights "
                            f"name (a string), got {weights!r}.")
    path = Path(os.path.expanduser(weights))
    if path.is_dir():
        return _run_source(path, model_name)
    if path.is_file():
        return Source("file", path.name, path, lambda: read_state_dict(path))
    named = protocols.named_weights(builder)
    looks_like_path = os.sep in weights or "/" in weights or weights.lower().endswith(FILE_SUFFIXES)
    if looks_like_path or named is None:
        if looks_like_path:
            raise TorchrigError(f"{model_name}: no weights file or run dir at {weights!r}. Give an existing "
                                f"{'/'.join(FILE_SUFFIXES)} file or a torchrig run dir.")
        raise TorchrigError(f"{model_name}: weights={weights!r} is neither a file nor a run dir, and this model's "
                            "library has no named weights. Give a .safetensors/.pt file or a torchrig run dir.")
    # raises TorchrigError with close matches on an unknown name
    found = named(weights, model_kwargs=dict(model_kwargs or {})) if _takes(named, "model_kwargs") else named(weights)
    # the settings the weights imply (e.g. the architecture they belong to), unless the recipe sets them
    implied = dict(getattr(found, "model_kwargs", None) or {})
    return Source("named", found.path.name, found.path, lambda: _load_named(found), model_kwargs=implied, named=found)


def _load_named(found: NamedWeights) -> dict[str, torch.Tensor]:
    """The library's own load, which downloads into its cache; offline, or when the download
    fails, one message: the file, the folder it goes in, and its URL."""
    import pickle
    import socket
    import sys
    from urllib.error import URLError

    def missing(why: str) -> TorchrigError:
        return TorchrigError(
            f"{found.label}: {found.path.name} is not in {found.path.parent}{os.sep} and cannot be downloaded "
            f"({why}). On a machine with internet, fetch {found.url} and put it in that folder, then run again.")

    cached = found.path.is_file()
    if not cached:
        if offline():
            raise missing("TORCHRIG_OFFLINE is set")
        print(f"torchrig: downloading {found.label} from {found.url} into {found.path.parent}", file=sys.stderr,
              flush=True)
    try:
        return dict(found.load())
    except (URLError, socket.timeout, ConnectionError) as exc:
        raise missing(str(getattr(exc, "reason", exc))) from None
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError) as exc:
        if not found.path.is_file():
            raise missing(str(exc)) from None
        raise TorchrigError(f"Cannot read the weights file {str(found.path)!r} ({type(exc).__name__}: {exc}). It "
                            "is truncated or corrupt: delete it and run again to fetch it anew.") from None


def _run_source(run_dir: Path, model_name: str) -> Source:
    import yaml

    weights = run_dir / "weights.safetensors"
    recipe = run_dir / "recipe.yaml"
    if not weights.is_file():
        hint = (" It has a recipe.yaml, so the run did not finish its first epoch." if recipe.is_file()
                else " Give a torchrig run dir (the folder `torchrig train` printed) or a weights file.")
        raise TorchrigError(f"{model_name}: weights={str(run_dir)!r} is a folder without weights.safetensors.{hint}")
    kwargs: dict[str, Any] = {}
    if recipe.is_file():
        try:
            model = (yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}).get("model")
        except yaml.YAMLError as exc:
            raise TorchrigError(f"Cannot read {str(recipe)!r}: invalid YAML ({exc}).") from exc
        if isinstance(model, dict) and model.get("name") == model_name:  # its settings fit this model
            kwargs = {k: v for k, v in model.items() if k not in ("name", *RESERVED)}
    from ._checkpoint import load_weights

    return Source("run", f"run {run_dir}", weights, lambda: load_weights(weights), model_kwargs=kwargs)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a ``.safetensors`` file, or a ``.pt/.pth/.bin`` pickle read with
    ``weights_only=True``: bare, or nested under ``state_dict`` / ``model_state_dict`` / ``model``."""
    from ._checkpoint import load_state, load_weights

    if path.suffix == ".safetensors":
        return load_weights(path)
    state = load_state(path)
    for _ in range(2):  # {"state_dict": {...}} or {"model": {"state_dict": ...}} at most
        if isinstance(state, Mapping) and not _is_state_dict(state):
            inner = next((state[k] for k in _NESTED if isinstance(state.get(k), Mapping)), None)
            if inner is None:
                break
            state = inner
    if not isinstance(state, Mapping) or not _is_state_dict(state):
        what = type(state).__name__ if not isinstance(state, Mapping) else f"a dict of {', '.join(map(str, list(state)[:5]))}"
        raise TorchrigError(f"{str(path)!r} holds {what}, not a state_dict (names -> tensors), nor one under "
                            f"{' / '.join(_NESTED)}. Save weights with torch.save(model.state_dict(), path).")
    return dict(state)


def _is_state_dict(state: Mapping) -> bool:
    return bool(state) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())


# ---------------------------------------------------------------- the head


def head_of(model: nn.Module) -> list[str]:
    """The module names that make the model's classifier head.

    A model (or the module a plugin wraps) may name them in ``torchrig_head`` (a string or a tuple
    of strings); otherwise the head is the last ``nn.Linear`` of the model.
    """
    declared = _declared_head(model)
    if declared:
        return declared
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    return [last] if last is not None else []


def _declared_head(model: nn.Module) -> list[str]:
    for name, module in model.named_modules():
        head = protocols.declared_head(module)
        if head:
            heads = (head,) if isinstance(head, str) else tuple(head)
            return [f"{name}.{h}" if name else h for h in heads]
    return []


def _in_head(key: str, head: list[str]) -> bool:
    return any(key == h or key.startswith(h + ".") for h in head)


# ---------------------------------------------------------------- matching


def _strip_prefixes(state: dict[str, torch.Tensor], target: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Remove (or add) the wrapper prefixes that keep keys from matching, when that matches more."""
    def score(keys: Any) -> int:
        return sum(k in target for k in keys)

    best, best_score = state, score(state)
    candidates = []
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            candidates.append({k[len(prefix):]: v for k, v in state.items()})
        candidates.append({prefix + k: v for k, v in state.items()})
    for candidate in candidates:
        s = score(candidate)
        if s > best_score:
            best, best_score = candidate, s
    return best


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Pretrained filters ``(out, c, ...)`` for ``in_channels`` inputs: summed over the pretrained
    channels for one channel (a grey image seen as R=G=B gives the same response), else repeated
    over the new channels and scaled by ``c / in_channels`` to keep the activation scale."""
    old = weight.shape[1]
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeat = math.ceil(in_channels / old)
    return weight.repeat(1, repeat, *([1] * (weight.dim() - 2)))[:, :in_channels] * (old / in_channels)


def load_pretrained(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str, strict: bool = True,
                    model_name: str = "model") -> WeightsReport:
    """Copy ``state`` into ``model`` by key and shape (see the module docstring); return the report.

    Raises:
        TorchrigError: keys that do not fit outside the head and input conv, with ``strict=True``
            (the first few, with both shapes); no tensor is copied then.
    """
    target = model.state_dict()
    state = _strip_prefixes(dict(state), target)
    head = head_of(model)
    first_conv = next((k for k, v in target.items() if k.endswith("weight") and v.dim() >= 3), None)
    chosen: dict[str, torch.Tensor] = {}
    report = WeightsReport(source, 0, len(target))
    mismatched, missing = [], []
    for key, want in target.items():
        got = state.get(key)
        if got is None:
            if key.endswith("num_batches_tracked"):  # older BatchNorm checkpoints lack it
                continue
            (report.new_head if _in_head(key, head) else missing).append(key)
            continue
        if tuple(got.shape) == tuple(want.shape):
            chosen[key] = got
        elif (key == first_conv and got.dim() == want.dim() and got.shape[0] == want.shape[0]
              and got.shape[2:] == want.shape[2:]):
            chosen[key] = adapt_input_conv(got.to(want.dtype), want.shape[1])
            report.adapted.append(key.rsplit(".", 1)[0])
        elif _in_head(key, head):
            report.new_head.append(key)
        else:
            mismatched.append(f"{key} (file {tuple(got.shape)}, model {tuple(want.shape)})")
    unexpected = [k for k in state if k not in target and not _in_head(k, head)]
    if strict and (mismatched or missing or unexpected):
        problems = []
        if mismatched:
            problems.append(f"{len(mismatched)} mis-shaped: {_few(mismatched, 3)}")
        if missing:
            problems.append(f"{len(missing)} missing from the file: {_few(missing, 3)}")
        if unexpected:
            problems.append(f"{len(unexpected)} not in the model: {_few(unexpected, 3)}")
        raise TorchrigError(f"{model_name}: the weights in {source} do not fit this model ({'; '.join(problems)}). "
                            "Are they for another architecture or other sizes? Set strict: false to load the "
                            "tensors that fit and keep the rest as initialised.")
    report.skipped = [m.split(" ", 1)[0] for m in mismatched] + missing
    report.unexpected = unexpected
    with torch.no_grad():
        for key, value in chosen.items():
            target[key].copy_(value.to(dtype=target[key].dtype))
    report.loaded = len(chosen)
    made = [k for k in report.new_head if k.endswith("weight")]
    if made:  # the output layer is the last new weight: its rows are the classes
        report.num_classes = int(target[made[-1]].shape[0])
    report.new_head = list(dict.fromkeys(k.rsplit(".", 1)[0] for k in report.new_head))
    return report


RESERVED = ("weights", "strict", "weights_sha256")  # model keys core handles, never the builder
# builder keys that only initialise weights (pretrained word vectors): not read when the weights
# come from elsewhere (``weights:``, or a run dir's own weights for evaluate / predict)
INIT_KEYS = ("vectors",)


def split_weights_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(builder kwargs, weights kwargs)``: ``weights``, ``strict``, ``weights_sha256`` are core's."""
    return ({k: v for k, v in kwargs.items() if k not in RESERVED},
            {k: v for k, v in kwargs.items() if k in RESERVED})


def build_model(name: str, kwargs: dict[str, Any], *, source: Source | None = None,
                context: Mapping[str, Any] | None = None) -> tuple[nn.Module, WeightsReport | None]:
    """Build the registered model ``name``; with ``weights`` in ``kwargs``, load them (the one
    loader behind ``get_model``, recipes and the scikit-learn adapter). ``source``: those weights,
    already resolved and verified (a recipe run resolves them before reading data). ``context``:
    what fitted transforms give the model but a recipe never records (a vocabulary's tokens),
    passed when the builder takes it."""
    from ._registry import _check_kwargs, get_entry

    entry = get_entry("model", name)
    builder_kwargs, extra = split_weights_kwargs(kwargs)
    given = {k: v for k, v in (context or {}).items() if k not in builder_kwargs and _takes(entry.builder, k)}
    builder_kwargs.update(given)
    weights = extra.get("weights")
    if weights is None:
        _check_kwargs(entry, builder_kwargs)
        return entry.builder(**builder_kwargs), None
    if source is None:
        source = resolve_weights(weights, name, entry.builder, builder_kwargs)
        source.verify(extra.get("weights_sha256"), name)
    inherited = {k: v for k, v in source.model_kwargs.items() if _takes(entry.builder, k) and k not in INIT_KEYS}
    builder_kwargs = {k: v for k, v in {**inherited, **builder_kwargs}.items() if k not in INIT_KEYS}
    _check_kwargs(entry, builder_kwargs)
    model = entry.builder(**builder_kwargs)
    report = load_pretrained(model, source.read(), source=source.label, strict=bool(extra.get("strict", True)),
                             model_name=name)
    return model, report


def _takes(builder: Any, key: str) -> bool:
    import inspect

    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return False
    return key in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
