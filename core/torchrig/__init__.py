"""torchrig: the PyTorch training loop, recipes, plugins and a scikit-learn adapter.

Public names are imported on first use (PEP 562), so ``import torchrig`` and ``torchrig --help``
do not pay for importing torch.

Example::

    import torchrig
    trainer = torchrig.Trainer(max_epochs=10)
    history = trainer.fit(model, train_loader, loss_fn, optimizer, val_loader=val_loader,
                          metrics=["accuracy"])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import InputError, TorchrigError, check_on_error, did_you_mean
from ._version import __version__

if TYPE_CHECKING:
    from ._build import Parts, build
    from ._averaging import WeightAveraging
    from ._callbacks import (
        Callback,
        CSVLogger,
        EarlyStopping,
        LRMonitor,
        ModelCheckpoint,
        ProgressBar,
        TensorBoardLogger,
    )
    from ._checkpoint import load_state, load_weights, save_state, save_weights
    from ._cv import cross_validate
    from ._data import BalancedSampler, BucketBatchSampler, class_folder_files
    from ._export import export, export_model
    from ._finetune import FineTune
    from ._interpret import show_generic, show_image, show_text
    from ._loop import History, Trainer
    from ._lrfind import LRFinderResult, lr_find
    from ._mlflow import MLflowLogger
    from ._metrics import METRIC_NAMES
    from ._plugins import plugin_statuses, register_plugin
    from ._recipe import Recipe, load_recipe
    from ._registry import (
        Plugin,
        build_component,
        get_dataset,
        get_model,
        get_transform,
        list_datasets,
        list_models,
        list_transforms,
        snake_case,
    )
    from ._seed import seed_everything, seed_worker

__all__ = [
    "__version__",
    "TorchrigError",
    "InputError",
    "did_you_mean",
    "check_on_error",
    "not_text",
    "Trainer",
    "History",
    "Callback",
    "ProgressBar",
    "EarlyStopping",
    "ModelCheckpoint",
    "LRMonitor",
    "CSVLogger",
    "TensorBoardLogger",
    "MLflowLogger",
    "WeightAveraging",
    "export",
    "export_model",
    "lr_find",
    "LRFinderResult",
    "FineTune",
    "METRIC_NAMES",
    "show_image",
    "show_text",
    "show_generic",
    "Plugin",
    "get_model",
    "get_dataset",
    "get_transform",
    "list_models",
    "list_datasets",
    "list_transforms",
    "build_component",
    "snake_case",
    "register_plugin",
    "plugin_statuses",
    "Recipe",
    "load_recipe",
    "build",
    "Parts",
    "seed_everything",
    "seed_worker",
    "save_weights",
    "load_weights",
    "save_state",
    "load_state",
    "class_folder_files",
    "BucketBatchSampler",
    "BalancedSampler",
    "cross_validate",
]

_LAZY = {
    "not_text": "._files",
    "Trainer": "._loop",
    "History": "._loop",
    "Callback": "._callbacks",
    "ProgressBar": "._callbacks",
    "EarlyStopping": "._callbacks",
    "ModelCheckpoint": "._callbacks",
    "LRMonitor": "._callbacks",
    "CSVLogger": "._callbacks",
    "TensorBoardLogger": "._callbacks",
    "MLflowLogger": "._mlflow",
    "WeightAveraging": "._averaging",
    "export": "._export",
    "lr_find": "._lrfind",
    "LRFinderResult": "._lrfind",
    "export_model": "._export",
    "FineTune": "._finetune",
    "show_image": "._interpret",
    "show_text": "._interpret",
    "show_generic": "._interpret",
    "METRIC_NAMES": "._metrics",
    "Plugin": "._registry",
    "get_model": "._registry",
    "get_dataset": "._registry",
    "get_transform": "._registry",
    "build": "._build",
    "Parts": "._build",
    "build_component": "._registry",
    "snake_case": "._registry",
    "list_models": "._registry",
    "list_datasets": "._registry",
    "list_transforms": "._registry",
    "register_plugin": "._plugins",
    "plugin_statuses": "._plugins",
    "Recipe": "._recipe",
    "load_recipe": "._recipe",
    "seed_everything": "._seed",
    "seed_worker": "._seed",
    "save_weights": "._checkpoint",
    "load_weights": "._checkpoint",
    "save_state": "._checkpoint",
    "load_state": "._checkpoint",
    "class_folder_files": "._data",
    "BucketBatchSampler": "._data",
    "BalancedSampler": "._data",
    "cross_validate": "._cv",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'torchrig' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
