"""scikit-learn estimators for any torchrig model (or any ``nn.Module`` class), built on skorch.

``RigClassifier`` / ``RigRegressor`` are skorch nets (every skorch parameter works) that also:
take a registry name as ``module``; fill in ``num_classes`` and input sizes from the data; accept
any label type and predict labels of that type; default to ``device="auto"``; keep torch's
threads within the CPU share joblib gives each worker; load a CUDA-fitted pickle on a CPU
machine; and read or write torchrig run dirs.

Example::

    from sklearn.model_selection import GridSearchCV
    from torchrig.sklearn import RigClassifier

    clf = RigClassifier(module="vision/small_cnn", max_epochs=5, lr=1e-3)
    GridSearchCV(clf, {"lr": [1e-3, 3e-3]}, cv=3, n_jobs=2).fit(X, y)   # X: (N, C, H, W) floats
    clf.predict(X[:3])                                                   # labels, as given in y
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
try:
    from skorch import NeuralNet, NeuralNetClassifier, NeuralNetRegressor
    from skorch.callbacks import EpochScoring
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(f"torchrig.sklearn needs skorch and scikit-learn ({exc}): "
                              "pip install 'torchrig[sklearn]'") from exc
from torch import nn

from ._checkpoint import atomic_write, load_weights, save_weights
from ._device import resolve_device
from ._errors import TorchrigError
from ._finetune import FineTune

__all__ = ["RigClassifier", "RigRegressor", "ModelInputs"]


class ModelInputs(np.ndarray):
    """An array that also carries what a model must know about it, as builder arguments.

    Preprocessors return it (a text encoder: ``vocab_size`` and ``pad_id``; an image
    preprocessor: ``in_channels``); :class:`RigClassifier` / :class:`RigRegressor` pass these to the
    model's builder unless the user set them, so nobody types a vocabulary size by hand. It
    behaves as a plain ``ndarray`` everywhere else; ``np.asarray`` gives the plain array.

    Example::

        X = ModelInputs(ids, vocab_size=5000, pad_id=0)
        X.model_kwargs            # {"vocab_size": 5000, "pad_id": 0}
    """

    model_kwargs: dict[str, Any]

    def __new__(cls, array: Any, **model_kwargs: Any) -> ModelInputs:
        obj = np.asarray(array).view(cls)
        obj.model_kwargs = dict(model_kwargs)
        return obj

    def __array_finalize__(self, obj: Any) -> None:  # slices and views keep the kwargs
        self.model_kwargs = dict(getattr(obj, "model_kwargs", None) or {})

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (joblib workers) with its kwargs
        return (_rebuild, (np.asarray(self), self.model_kwargs))


def _rebuild(array: np.ndarray, model_kwargs: dict[str, Any]) -> ModelInputs:
    return ModelInputs(array, **model_kwargs)


class _AutoDevice:
    """``device`` as a parameter keeps what the user gave ("auto"); skorch's internals, which
    read ``self.device`` to move modules and batches, get the resolved device."""

    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        value = obj.__dict__.get("device", "auto")
        return str(resolve_device("auto")) if isinstance(value, str) and value == "auto" else value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__["device"] = value


def _thread_budget() -> int | None:
    """The CPU threads this process may use: joblib's workers get ``OMP_NUM_THREADS`` (cores
    divided by ``n_jobs``); torch must not exceed it, or ``n_jobs=2`` oversubscribes the cores."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def _index_accuracy(net: Any, X: Any, y: Any) -> float:
    """Validation accuracy during fit, on the encoded labels skorch holds internally."""
    proba = net.predict_proba(X)
    return float(np.mean(proba.argmax(axis=1) == np.asarray(y)))


class _RigMixin:
    device = _AutoDevice()
    _output_names = ("num_classes", "num_outputs", "out_features", "output_size", "n_classes")

    def __init__(self, module: Any, *, criterion: Any, optimizer: Any = torch.optim.AdamW, lr: float = 1e-3,
                 max_epochs: int = 10, batch_size: int = 64, device: str = "auto", random_state: int | None = None,
                 finetune: dict[str, Any] | None = None, verbose: int = 0, **kwargs: Any) -> None:
        """The defaults both estimators share (see :class:`RigClassifier`)."""
        kwargs.setdefault("iterator_train__shuffle", True)  # skorch does not shuffle by default
        self.random_state = random_state
        self.finetune = finetune
        super().__init__(module, criterion=criterion, optimizer=optimizer, lr=lr, max_epochs=max_epochs,
                         batch_size=batch_size, device=device, verbose=verbose, **kwargs)

    # ------------------------------------------------------------ the module
    def _builder(self) -> Any:
        if isinstance(self.module, str):
            from ._registry import get_entry

            return get_entry("model", self.module).builder
        return self.module

    def _builder_params(self) -> tuple[dict[str, Any], bool] | None:
        """The builder's parameters and whether it takes ``**kwargs`` (None: unknown)."""
        builder = self._builder()
        if isinstance(builder, nn.Module):  # a ready instance: nothing to fill in
            return None
        try:
            params = inspect.signature(builder).parameters
        except (TypeError, ValueError):
            return None
        return dict(params), any(p.kind is p.VAR_KEYWORD for p in params.values())

    def _implied_kwargs(self, model_kwargs: dict[str, Any], shape: tuple[int, ...] | None,
                        n_outputs: int) -> dict[str, Any]:
        """Builder arguments the data settles: outputs from y, sizes from X's shape, and whatever a
        preprocessor put in ``X.model_kwargs``, for those the builder takes and the user left unset."""
        found = self._builder_params()
        if found is None:
            return {}
        params, _ = found
        implied = dict(model_kwargs)
        output = next((n for n in self._output_names if n in params), None)
        if output is not None:
            implied[output] = n_outputs
        if shape is not None and len(shape) == 2 and "in_features" in params:
            implied["in_features"] = int(shape[1])
        elif shape is not None and len(shape) >= 3 and "in_channels" in params:
            implied.setdefault("in_channels", int(shape[1]))
        return implied

    def initialize_module(self) -> Any:
        implied = getattr(self, "module_implied_", {})
        found = self._builder_params()
        if found is not None:  # only what this builder takes (``module`` may have changed since fit)
            params, takes_any = found
            implied = {k: v for k, v in implied.items() if k in params or takes_any}
        kwargs = {**implied, **self.get_params_for("module")}
        if isinstance(self.module, str):
            from ._registry import get_model

            self.module_ = get_model(self.module, **kwargs)
        else:
            self.module_ = self.initialized_instance(self.module, kwargs)
        return self

    # ------------------------------------------------------------ fine-tuning
    def _finetune(self) -> FineTune | None:
        """The ``finetune`` settings as a :class:`FineTune` (one per fit)."""
        if not self.finetune:
            return None
        if isinstance(self.finetune, FineTune):
            return self.finetune
        try:
            return FineTune(**self.finetune)
        except TypeError as exc:
            raise TorchrigError(f"finetune={self.finetune!r}: {exc}. It takes freeze_epochs, backbone_lr_scale "
                                "and head, e.g. finetune={'freeze_epochs': 2, 'backbone_lr_scale': 0.1}.") from None

    def initialize_optimizer(self, *args: Any, **kwargs: Any) -> Any:
        """As skorch's; with ``finetune``, the backbone and the head in two parameter groups."""
        self.finetune_ = self._finetune()
        if self.finetune_ is None:
            return super().initialize_optimizer(*args, **kwargs)
        _, optimizer_kwargs = self.get_params_for_optimizer("optimizer", self.get_all_learnable_params())
        lr = float(optimizer_kwargs.get("lr", self.lr))
        self.optimizer_ = self.optimizer(self.finetune_.param_groups(self.module_, lr=lr), **optimizer_kwargs)
        return self

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        super().on_epoch_begin(net, **kwargs)
        if getattr(self, "finetune_", None) is not None:  # history holds this epoch's row already
            self.finetune_.apply(self.module_, len(self.history))

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        super().on_train_end(net, **kwargs)
        if getattr(self, "finetune_", None) is not None:
            self.finetune_.release(self.module_)  # handed back as it came

    def _set_training(self, training: bool = True) -> None:
        super()._set_training(training)
        if training and getattr(self, "finetune_", None) is not None:  # skorch sets train mode every batch
            for module in self.finetune_.frozen_norms:
                module.eval()

    # ------------------------------------------------------------ data
    @staticmethod
    def _inputs(X: Any) -> Any:
        """Plain arrays for skorch: pandas objects and lists become arrays, float64 becomes
        float32 (the models' dtype), ids stay int64. Tensors, dicts and Datasets pass through."""
        if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # pandas DataFrame / Series
            X = X.to_numpy()
        elif isinstance(X, (list, tuple)):
            array = np.asarray(X)
            if array.dtype.kind not in "biuf":
                raise TorchrigError(f"X is a list of {type(X[0]).__name__ if len(X) else 'nothing'}, not of numbers; "
                                    "turn raw inputs into arrays first (a torchrig preprocessor in a Pipeline).")
            X = array
        if isinstance(X, np.ndarray):
            X = np.asarray(X)  # drops ModelInputs' subclass: collate wants plain arrays
            if X.ndim == 1 and X.dtype.kind in "biuf":  # as scikit-learn's estimators say it
                raise TorchrigError(f"X is 1-D (shape {X.shape}); a model takes one row per sample. Reshape it: "
                                    "X.reshape(-1, 1) for a single feature, X.reshape(1, -1) for a single sample.")
            if X.dtype.kind == "f" and not np.isfinite(X).all():
                bad = ~np.isfinite(X.reshape(len(X), -1)).all(axis=1)
                nan = bool(np.isnan(X).any())
                fix = ("Fill the gaps first (sklearn.impute.SimpleImputer in the Pipeline), or drop those rows."
                       if nan else "Clip or drop those values first.")
                raise TorchrigError(f"X contains {'NaN' if nan else 'infinity'} in {int(bad.sum())} of "
                                    f"its {len(X)} rows (the first: row {int(bad.argmax())}); a net would train to "
                                    f"NaN weights. {fix}")
            if X.dtype == np.float64:
                X = X.astype(np.float32)
        return X

    def _fit_threads(self) -> None:
        budget = _thread_budget()
        if budget is not None and torch.get_num_threads() > budget:
            torch.set_num_threads(budget)
        self.n_threads_ = torch.get_num_threads()

    def _targets(self, y: Any, fresh: bool, classes: Any = None) -> tuple[np.ndarray, int]:
        """``y`` as skorch trains on it, and the model's output size."""
        raise NotImplementedError

    def fit(self, X: Any, y: Any, **fit_params: Any) -> Any:
        """Fit on ``X`` and ``y`` (re-initialising the module unless ``warm_start``); as skorch's ``fit``."""
        fresh = not self.warm_start or not getattr(self, "initialized_", False)
        X, targets = self._prepare(X, y, fresh)
        with torch.random.fork_rng(devices=[], enabled=self.random_state is not None):
            if self.random_state is not None:  # the same fit in any process, on any machine
                torch.manual_seed(int(self.random_state))
            if fresh:
                self.initialize()
            NeuralNet.partial_fit(self, X, targets, _routing_method="fit", **fit_params)
        return self

    def partial_fit(self, X: Any, y: Any = None, classes: Any = None, **fit_params: Any) -> Any:
        """Train further from where the estimator is (one ``max_epochs`` round); as skorch's."""
        X, targets = self._prepare(X, y, not getattr(self, "initialized_", False), classes)
        NeuralNet.partial_fit(self, X, targets, **fit_params)
        return self

    def _prepare(self, X: Any, y: Any, fresh: bool, classes: Any = None) -> tuple[Any, np.ndarray]:
        if y is None:
            raise TorchrigError(f"{type(self).__name__}.fit needs targets y (one per sample).")
        model_kwargs = dict(getattr(X, "model_kwargs", None) or {})
        X = self._inputs(X)
        if len(y) != len(X):  # before y is read: its labels would be judged on the wrong rows
            raise TorchrigError(f"X has {len(X)} samples but y has {len(y)}; they must match.")
        targets, n_outputs = self._targets(y, fresh, classes)
        if fresh:
            self.module_implied_ = self._implied_kwargs(model_kwargs, getattr(X, "shape", None), n_outputs)
            self.fitted_on_preprocessed_ = bool(model_kwargs)
        self._fit_threads()
        return X, targets

    def predict_proba(self, X: Any) -> np.ndarray:
        """As skorch's (the model's outputs through its nonlinearity), on inputs cast like ``fit``'s."""
        self.check_is_fitted()
        return super().predict_proba(self._inputs(X))

    # ------------------------------------------------------------ pickling and params
    def set_params(self, **params: Any) -> Any:
        """As skorch's; a new ``module`` makes the estimator unfitted (``fit`` builds it, with the
        sizes its data implies) instead of rebuilding it at once with the old model's sizes."""
        if "module" in params and getattr(self, "initialized_", False):
            self.initialized_ = False
            for name in ("module_", "optimizer_", "criterion_"):
                self.__dict__.pop(name, None)
        return super().set_params(**params)

    def get_params(self, deep: bool = True, **kwargs: Any) -> dict[str, Any]:
        params = super().get_params(deep=deep, **kwargs)
        params["device"] = self.__dict__.get("device", "auto")
        return params

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle on this machine: "auto" resolves here (a CUDA-fitted net loads on a CPU-only
        machine); an explicit device that is missing falls back to the CPU with skorch's warning."""
        auto = state.get("device", "auto") == "auto"
        if auto:
            state = {**state, "device": str(resolve_device("auto"))}
        super().__setstate__(state)
        if auto:
            self.__dict__["device"] = "auto"

    # ------------------------------------------------------------ run dirs
    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, **kwargs: Any) -> Any:
        """A fitted estimator from a ``torchrig train`` run dir (its model and best weights).

        Args:
            run_dir: the run dir ``torchrig train`` printed.
            **kwargs: more estimator parameters (``device``, ``batch_size``, ...).

        Returns:
            The estimator, ready to ``predict`` on inputs shaped as the run's model takes them.
        """
        from ._build import WEIGHTS, own_weights_kwargs
        from ._recipe import component
        from ._run import open_run

        recipe, meta = open_run(run_dir)
        task = "classification" if issubclass(cls, RigClassifier) else "regression"
        if recipe["task"] != task:
            other = "RigRegressor" if task == "classification" else "RigClassifier"
            raise TorchrigError(f"{str(run_dir)!r} holds a {recipe['task']} run; load it with {other}.from_run.")
        name, model_kwargs = component(recipe["model"])
        model_kwargs = own_weights_kwargs(model_kwargs)  # the run's weights come next: no source file needed
        est = cls(module=name, **{f"module__{k}": v for k, v in model_kwargs.items()}, **kwargs)
        est.initialize()
        est.module_.load_state_dict(load_weights(Path(run_dir) / WEIGHTS, device="cpu"))
        est.module_.to(est.device)
        if task == "classification":
            classes = meta.get("classes")
            n = model_kwargs.get("num_classes")
            est.classes_inferred_ = np.asarray(classes) if classes else np.arange(n if n is not None else 0)
        return est

    def save_run(self, run_dir: str | os.PathLike, *, data: dict[str, Any], name: str | None = None) -> Path:
        """Write a run dir that ``torchrig evaluate`` and ``torchrig predict`` read.

        Args:
            run_dir: the folder (created; existing files of a run are replaced atomically).
            data: the recipe's ``data`` section that says where inputs come from, e.g.
                ``{"dataset": "vision/digits"}``: evaluate rebuilds its splits, predict uses its
                plugin's reader. The inputs it yields must be what this estimator was fitted on.
            name: the run's name (default: the folder's name).

        Returns:
            The run dir.
        """
        import tempfile

        import yaml

        from ._build import META, RECIPE, WEIGHTS
        from ._data import build_splits
        from ._recipe import component, load_recipe

        self.check_is_fitted()
        if not isinstance(self.module, str):
            raise TorchrigError("save_run needs a registry model (module='vision/small_cnn', ...), so that "
                                f"the CLI can rebuild it; this estimator's module is {self.module!r}.")
        if getattr(self, "fitted_on_preprocessed_", False):
            raise TorchrigError("This estimator was fitted on the output of a scikit-learn preprocessor (TextEncoder, "
                                "ImagePreprocessor, LogMel), which a run dir cannot reproduce. Save the whole "
                                "fitted Pipeline with joblib.dump instead.")
        run_dir = Path(run_dir)
        task = "classification" if isinstance(self, RigClassifier) else "regression"
        model = {"name": self.module, **getattr(self, "module_implied_", {}), **self.get_params_for("module")}
        recipe = {"name": name or run_dir.name, "task": task, "data": data, "model": model,
                  "trainer": {"device": "auto"}}
        text = yaml.safe_dump(recipe, sort_keys=False)
        with tempfile.TemporaryDirectory() as tmp:  # check what the CLI will read before writing anything
            (Path(tmp) / RECIPE).write_text(text)
            loaded = load_recipe(Path(tmp) / RECIPE)
        classes = None
        if task == "classification":
            classes = [c.item() if isinstance(c, np.generic) else c for c in self.classes_]
            dataset_classes = build_splits(loaded)[1]["classes"]
            if dataset_classes is not None and [str(c) for c in classes] != list(dataset_classes):
                raise TorchrigError(f"The estimator's classes_ {[str(c) for c in classes][:10]} are not "
                                    f"{component(loaded['data']['dataset'])[0]}'s classes in its order "
                                    f"{list(dataset_classes)[:10]}, so the CLI would score output i as the wrong "
                                    "class. Fit with RigClassifier(..., classes=<the dataset's classes>).")
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / RECIPE, text.encode())
        meta = {"task": task, "classes": classes, "dataset": component(loaded["data"]["dataset"])[0]}
        atomic_write(run_dir / META, json.dumps(meta, indent=2).encode())
        save_weights(run_dir / WEIGHTS, self.module_.state_dict())
        return run_dir


class RigClassifier(_RigMixin, NeuralNetClassifier):
    """A scikit-learn classifier around a torchrig model (by registry name) or an ``nn.Module`` class.

    Labels of any type (strings, ints, bools) are accepted; ``classes_`` holds them sorted (or
    in the order of ``classes``), ``predict`` returns them, ``predict_proba`` has one column per
    class in that order. ``num_classes`` and input sizes are filled in from the data unless
    given as ``module__num_classes`` etc.

    Args:
        module: a registry name ("text/bigru") or an ``nn.Module`` class (or builder callable).
        criterion: the loss; the model returns logits, so cross-entropy by default.
        optimizer, lr, max_epochs, batch_size: as in skorch (AdamW, 1e-3, 10, 64 here).
            Training batches are shuffled each epoch (``iterator_train__shuffle=True``), unlike
            skorch's default; validation is skorch's (a stratified 20% split, ``train_split``).
        device: "auto" (CUDA, then MPS, then CPU), or any torch device.
        random_state: seeds weight initialisation, shuffling and dropout for each ``fit`` (without
            touching torch's global RNG), so a fit gives the same model in any process: a search
            on joblib workers or a cluster finds what it finds locally. None: torch's global RNG.
        finetune: ``{"freeze_epochs": 2, "backbone_lr_scale": 0.1}`` trains the head alone for
            2 epochs, then everything with the backbone at a tenth of ``lr`` (see
            :class:`torchrig.FineTune`); pair it with ``module__weights``.
        verbose: 0 (default, quiet as scikit-learn estimators are) or 1 for skorch's table of
            losses per epoch.
        class_weight: as scikit-learn's classifiers: None, ``"balanced"`` (each class weighted
            ``n_samples / (n_classes * count)`` in ``fit``'s y) or a dict of label to weight
            (others 1); it becomes the criterion's ``weight``.
        **kwargs: any skorch ``NeuralNetClassifier`` parameter (``train_split``, ``callbacks``,
            ``verbose``, ``iterator_train__shuffle``, ...) and ``module__*`` builder arguments,
            ``module__weights`` too (a run dir, a weights file or a library's weights name:
            pretrained weights, loaded afresh by every clone; a pickle carries the fitted ones).

    Example::

        clf = RigClassifier("vision/small_cnn", max_epochs=5)
        clf.fit(X, ["cat", "dog", ...])          # X: (N, C, H, W) float array
        clf.predict(X[:2])                        # array(['dog', 'cat'], ...)
    """

    def __init__(self, module: Any, *, criterion: Any = nn.CrossEntropyLoss, class_weight: Any = None,
                 **kwargs: Any) -> None:
        self.class_weight = class_weight
        super().__init__(module, criterion=criterion, **kwargs)

    def _class_weights(self, encoded: np.ndarray) -> torch.Tensor | None:
        """``class_weight`` as one weight per class of ``classes_``, from ``fit``'s encoded y."""
        if self.class_weight is None:
            return None
        n = len(self.classes_)
        if isinstance(self.class_weight, str):
            if self.class_weight != "balanced":
                raise TorchrigError(f"class_weight must be None, 'balanced' or a dict of label to weight; "
                                    f"got {self.class_weight!r}.")
            counts = np.bincount(encoded, minlength=n)
            if (counts == 0).any():
                raise TorchrigError(f"class_weight='balanced': y has no sample of "
                                    f"{self.classes_[counts == 0].tolist()}.")
            return torch.tensor(len(encoded) / (n * counts), dtype=torch.float32)
        unknown = [k for k in self.class_weight if k not in set(self.classes_.tolist())]
        if unknown:
            raise TorchrigError(f"class_weight names {unknown[0]!r}, which is not a class; the classes are "
                                f"{self.classes_.tolist()[:10]}.")
        return torch.tensor([float(self.class_weight.get(c, 1.0)) for c in self.classes_.tolist()], dtype=torch.float32)

    def initialize_criterion(self, *args: Any, **kwargs: Any) -> Any:
        """As skorch's; ``class_weight`` set, the criterion gets the weights (its ``weight``)."""
        super().initialize_criterion(*args, **kwargs)
        weight = getattr(self, "class_weight_", None)
        if weight is not None:
            if not hasattr(self.criterion_, "weight"):
                raise TorchrigError(f"class_weight needs a criterion with a `weight` (such as CrossEntropyLoss); "
                                    f"{type(self.criterion_).__name__} has none.")
            self.criterion_.weight = weight.to(resolve_device(self.device))
        return self

    @property
    def _default_callbacks(self) -> list[tuple[str, Any]]:
        callbacks = list(super()._default_callbacks)
        return [(n, EpochScoring(_index_accuracy, name="valid_acc", lower_is_better=False) if n == "valid_acc" else cb)
                for n, cb in callbacks]

    def _targets(self, y: Any, fresh: bool, classes: Any = None) -> tuple[np.ndarray, int]:
        y = np.asarray(y)
        if y.ndim != 1:
            raise TorchrigError(f"RigClassifier: y must hold one label per sample (1-D), got shape {y.shape}.")
        if fresh:
            given = self.classes if self.classes is not None else classes  # partial_fit(..., classes=)
            classes = np.asarray(given) if given is not None else np.unique(y)
            if len(classes) < 2:
                raise TorchrigError(f"RigClassifier needs at least 2 classes in y; it has only {classes.tolist()}.")
            self.classes_inferred_ = classes
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        unknown = sorted({v for v in y.tolist() if v not in index}, key=str)
        if unknown:
            raise TorchrigError(f"y has labels the classifier does not know: {unknown[:5]}; its classes are "
                                f"{self.classes_.tolist()[:10]}. Pass every label in `classes`, or fit afresh.")
        encoded = np.fromiter((index[v] for v in y.tolist()), dtype=np.int64, count=len(y))
        if fresh:
            self.class_weight_ = self._class_weights(encoded)
        return encoded, len(self.classes_)

    def predict(self, X: Any) -> np.ndarray:
        """Labels, of the type ``y`` had in ``fit``."""
        proba = self.predict_proba(X)  # checks that the estimator is fitted first
        return self.classes_[proba.argmax(axis=1)]

    def check_data(self, X: Any, y: Any) -> None:  # skorch's: keep our classes, not the encoded ones
        pass


class RigRegressor(_RigMixin, NeuralNetRegressor):
    """A scikit-learn regressor around a torchrig model (by registry name) or an ``nn.Module`` class.

    ``y`` may be 1-D (one target) or 2-D (several); the model's output size is filled in from it
    and ``predict`` returns the same shape. Float64 inputs are cast to float32.

    Args:
        module: a registry name or an ``nn.Module`` class.
        criterion: the loss (MSE by default).
        optimizer, lr, max_epochs, batch_size, device, random_state, **kwargs: as for
            :class:`RigClassifier`.

    Example::

        reg = RigRegressor(MyMLP, module__in_features=8, max_epochs=20).fit(X, y)
        reg.predict(X[:2])
    """

    def __init__(self, module: Any, *, criterion: Any = nn.MSELoss, **kwargs: Any) -> None:
        super().__init__(module, criterion=criterion, **kwargs)

    def _targets(self, y: Any, fresh: bool, classes: Any = None) -> tuple[np.ndarray, int]:
        y = np.asarray(y, dtype=np.float32)
        if y.ndim not in (1, 2):
            raise TorchrigError(f"RigRegressor: y must be 1-D or 2-D, got shape {y.shape}.")
        if fresh:
            self.target_ndim_ = y.ndim
        targets = y.reshape(len(y), -1)
        return targets, targets.shape[1]

    def predict(self, X: Any) -> np.ndarray:
        """Predictions shaped like ``y`` in ``fit`` (1-D for one target)."""
        self.check_is_fitted()
        out = super().predict(self._inputs(X))
        return out.reshape(-1) if getattr(self, "target_ndim_", 2) == 1 and out.ndim == 2 and out.shape[1] == 1 else out
