"""The plugin protocol: everything core reads from a plugin's objects, in one place.

A plugin registers builders (``@plugin.model``, ``.dataset``, ``.transform``, ``.reader``); what
they return is plain PyTorch (an ``nn.Module``, a ``Dataset``, a callable). Beyond that, core
reads a few optional attributes, all listed here as :class:`typing.Protocol` classes, and reads
them only through the functions below. Nothing else is looked up by name.

Check a plugin against it with ``torchrig check-plugin NAME``, or in its own tests::

    from torchrig.testing import check_plugin

    def test_protocol():
        check_plugin("acme")        # builds every component it can, runs a batch, lists what is wrong
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Dataset", "FittedTransform", "BatchedTransform", "Reader", "Model", "ModelBuilder", "TransformBuilder",
    "NamedWeights", "Shows", "classes", "collate_of", "base_dataset", "declared_head", "describe", "from_model", "init_report",
    "input_note", "is_batched", "is_fitted", "lengths", "model_context", "model_kwargs", "named_weights", "preprocessing",
    "reader_collate", "reader_suffixes", "reader_takes_dataset", "reader_takes_force", "shower", "skipped", "targets",
]


# ---------------------------------------------------------------- datasets


@runtime_checkable
class Dataset(Protocol):
    """What a dataset builder returns: a map-style dataset of ``(inputs, target)`` samples.

    Optional attributes core reads (leave out what does not apply):

    Attributes:
        classes: label names in target order (``["cat", "dog"]``); recipes size the head from
            them, and ``predict`` prints them.
        targets: every sample's target, for stratified splits without reading the inputs.
        model_kwargs: builder arguments the data settles (``{"in_channels": 1}``,
            ``{"sample_rate": 16000}``), filled in when the recipe leaves them out.
        lengths: one size per sample, for ``data.bucket_by_length``.
        collate_fn: how to batch samples (e.g. padding with lengths).
        skipped: samples left out with ``on_error: skip`` (counted in summary.json).
        describe: ``describe(index) -> str``: the sample's file path or text, written next to
            it in ``top_losses.json`` and the plots.
        show: ``show(inputs, ax)`` draws one sample's inputs on a matplotlib ``Axes`` (see
            :class:`Shows`) when the transform that made them has no ``show`` of its own.

    A builder that takes ``split`` is asked for ``train``, ``val`` and ``test``, and returns
    ``None`` for a split its data lacks (the recipe then carves it from ``train``).
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Any, Any]: ...


def classes(dataset: Any) -> list[str] | None:
    found = getattr(dataset, "classes", None)
    return list(map(str, found)) if found is not None else None


def targets(dataset: Any) -> Sequence[Any] | None:
    return getattr(dataset, "targets", None)


def model_kwargs(obj: Any) -> dict[str, Any]:
    """A dataset's or a fitted transform's ``model_kwargs`` (recorded in the resolved recipe)."""
    return dict(getattr(obj, "model_kwargs", None) or {})


def input_note(dataset: Any) -> str | None:
    """A dataset's ``input_note``: one sentence on what input its models expect (e.g. "light
    strokes on a dark background, filling the frame"), kept in the run's ``meta.json`` for
    ``torchrig info RUN`` and for predict's hint when predictions are unsure."""
    found = getattr(dataset, "input_note", None)
    return str(found) if found else None


def lengths(obj: Any) -> Any:
    """A dataset's ``lengths`` (a sequence), or a transform's ``lengths`` (a callable on inputs)."""
    return getattr(obj, "lengths", None)


def collate_of(obj: Any) -> Callable | None:
    """A dataset's, transform's or reader's ``collate_fn``."""
    found = getattr(obj, "collate_fn", None)
    return found if callable(found) else None


def skipped(dataset: Any) -> list[Any]:
    return list(getattr(dataset, "skipped", None) or [])


def _base(dataset: Any, index: int) -> tuple[Any, int]:
    """The innermost dataset under ``Subset`` / wrapper layers (``.dataset``), and ``index`` in it."""
    while hasattr(dataset, "dataset") and not callable(getattr(dataset, "describe", None)):
        if hasattr(dataset, "indices"):
            index = int(dataset.indices[index])
        dataset = dataset.dataset
    return dataset, index


def base_dataset(dataset: Any) -> Any:
    """The dataset a builder made, under any ``Subset`` or wrapper (``.dataset``) layers."""
    while hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    return dataset


def describe(dataset: Any, index: int) -> str | None:
    """Sample ``index``'s path or text, from the dataset's ``describe`` (through any ``Subset``)."""
    base, index = _base(dataset, index)
    found = getattr(base, "describe", None)
    return str(found(index)) if callable(found) else None


@runtime_checkable
class Shows(Protocol):
    """A transform (or a dataset) that draws a sample's inputs, as the model receives them
    (after the transform, one sample of the collated batch), for the run dir's plots of the
    first training batch and of the held-out samples with the highest loss: an image
    un-normalised, audio as its log-mel spectrogram, token ids as the text they stand for.
    Without one, core draws tensors generically (3-D: an image, 2-D: a heat map, 1-D: a curve).
    """

    def show(self, inputs: Any, ax: Any) -> None: ...


def shower(transform: Any, dataset: Any) -> Callable | None:
    """The ``show`` of the transform that made the inputs, else of the (innermost) dataset."""
    for obj in (transform, _base(dataset, 0)[0] if dataset is not None else None):
        found = getattr(obj, "show", None)
        if callable(found):
            return found
    return None


# ---------------------------------------------------------------- transforms


@runtime_checkable
class FittedTransform(Protocol):
    """A transform that learns from the training split (a vocabulary, a tokenizer).

    Recipes call ``fit(inputs)`` once on the training split's inputs, save ``state_dict()`` (JSON)
    in the run dir's ``fitted.json`` and ``load_state_dict`` it for resume, evaluate and predict.

    Optional attributes (of any transform, fitted or not):
        show: ``show(inputs, ax)``, see :class:`Shows`.
        preprocessing: ``preprocessing(inputs) -> dict``, see :func:`preprocessing`.
        model_kwargs: what the model must know, recorded in the resolved recipe
            (``{"vocab_size": 8000, "pad_id": 0}``).
        model_context: what a model may take but a recipe never records (``{"vocab": [...]}``),
            passed to builders that have a parameter of that name.
    """

    def fit(self, inputs: Iterable[Any]) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class BatchedTransform(Protocol):
    """A transform applied to whole batches of raw inputs in the loader's ``collate_fn``
    (``batched = True``), e.g. a tokenizer that pads each batch to its longest text.

    Attributes:
        batched: True.
        lengths: (optional) ``lengths(inputs) -> list[int]``, a size per raw input for bucketing.
    """

    batched: bool

    def collate_fn(self, batch: Sequence[tuple[Any, Any]]) -> tuple[Any, Any]: ...


def preprocessing(transform: Any, inputs: Any) -> dict[str, Any]:
    """What a caller of an exported model must do to raw inputs before it (``model.json``):
    a transform's ``preprocessing(inputs)``, given one sample it made, as JSON data (resize,
    crop and mean/std; a vocabulary and the tokenizer's rules; a sample rate), or empty."""
    found = getattr(transform, "preprocessing", None)
    return dict((found(inputs) if callable(found) else found) or {})


def is_fitted(transform: Any) -> bool:
    """Does the transform learn from data (:class:`FittedTransform`)?"""
    return transform is not None and callable(getattr(transform, "fit", None))


def is_batched(transform: Any) -> bool:
    """Is the transform applied per batch in its ``collate_fn`` (:class:`BatchedTransform`)?"""
    return bool(getattr(transform, "batched", False)) and collate_of(transform) is not None


def model_context(transform: Any) -> dict[str, Any]:
    return dict(getattr(transform, "model_context", None) or {})


@runtime_checkable
class TransformBuilder(Protocol):
    """A transform builder; ``from_model`` (optional) names arguments a recipe fills in from the
    model's arguments of the same name (a tokenizer's ``checkpoint``)."""

    def __call__(self, **kwargs: Any) -> Any: ...


def from_model(builder: Any) -> tuple[str, ...]:
    return tuple(getattr(builder, "from_model", ()) or ())


# ---------------------------------------------------------------- readers


@runtime_checkable
class Reader(Protocol):
    """``@plugin.reader(".png", ".jpg", collate_fn=None)``: how ``torchrig predict`` reads an input
    file (or, for the suffix ``"-"``, a line of stdin) into a sample's inputs, as the datasets
    give them. It may take ``dataset=`` (the run's dataset component) to read as that dataset
    does (its sample rate, say), and ``force=`` (``torchrig predict --force``) to read input it
    would otherwise refuse as the wrong kind (binary input to a text reader).

    For input it cannot use, a reader raises :class:`torchrig.InputError` naming the input and
    saying what is wrong; anything else it raises is wrapped into one by ``torchrig predict``."""

    suffixes: tuple[str, ...]

    def __call__(self, source: str) -> Any: ...


def reader_suffixes(reader: Any) -> tuple[str, ...]:
    return tuple(getattr(reader, "suffixes", ()) or ())


def reader_takes_force(reader: Any) -> bool:
    """Does the reader accept ``force`` (``torchrig predict --force``: read input it would refuse)?"""
    try:
        return "force" in inspect.signature(reader).parameters
    except (TypeError, ValueError):
        return False


def reader_collate(reader: Any) -> Callable | None:
    return collate_of(reader)


def reader_takes_dataset(reader: Any) -> bool:
    return "dataset" in inspect.signature(reader).parameters


# ---------------------------------------------------------------- models


@runtime_checkable
class Model(Protocol):
    """What a model builder returns: an ``nn.Module`` whose forward takes the batch's inputs
    (``model(x)``, ``model(*x)`` for a tuple, ``model(**x)`` for a dict) and returns the output
    tensor, or an object with ``logits``.

    Optional attributes:
        torchrig_head: the module names of the classifier head (``"fc"``, or several), which a
            new ``num_classes`` replaces and fine-tuning trains first. Without it, the last
            ``nn.Linear`` is the head.
        torchrig_init_report: a dict with a ``message`` on how it was initialised (word
            vectors' coverage), printed and kept in summary.json.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


@runtime_checkable
class ModelBuilder(Protocol):
    """A model builder: keyword-only arguments. Recipes fill in ``num_classes`` (from the
    classes), and any argument named in a dataset's or fitted transform's ``model_kwargs``, when
    the recipe leaves it out.

    Optional attributes:
        named_weights: ``named_weights(name, model_kwargs=...) -> NamedWeights`` for
            ``weights: DEFAULT`` and a library's other weight names.
        torchrig_head: a description of the head, for ``torchrig info``, when it depends on the
            arguments (a checkpoint's classifier).
    """

    def __call__(self, **kwargs: Any) -> Any: ...


class NamedWeights(Protocol):
    """What ``named_weights`` returns: see :class:`torchrig._weights.NamedWeights`."""

    label: str
    url: str
    transform_kwargs: Mapping[str, Mapping[str, Any]]

    def load(self) -> dict[str, Any]: ...


def declared_head(model: Any) -> Any:
    return getattr(model, "torchrig_head", None)


def init_report(model: Any) -> dict[str, Any] | None:
    return getattr(model, "torchrig_init_report", None)


def named_weights(builder: Any) -> Callable | None:
    return getattr(builder, "named_weights", None)
