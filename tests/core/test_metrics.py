"""Metrics by name: task inference, whole-epoch values that match scikit-learn."""

from __future__ import annotations

import pytest
import torch
from sklearn import metrics as skm

from torchrig import TorchrigError
from torchrig._metrics import METRIC_NAMES, MetricSet


def batches(output, target, size=7):
    for i in range(0, len(target), size):
        yield output[i:i + size], target[i:i + size]


def run(names, output, target):
    ms = MetricSet(names)
    for o, t in batches(output, target):
        ms.update(o, t)
    return ms.compute()


def test_multiclass_matches_sklearn():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(100, 4, generator=g)
    target = torch.randint(0, 4, (100,), generator=g)
    logits[target == 2, 2] += 2.0  # some signal
    got = run(["accuracy", "f1", "precision", "recall", "balanced_accuracy", "auroc"], logits, target)
    pred = logits.argmax(1).numpy()
    y = target.numpy()
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-6)
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro"), abs=1e-6)
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro"), abs=1e-6)
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-6)
    probs = torch.softmax(logits, 1).numpy()
    assert got["auroc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr"), abs=1e-4)


def test_binary_logits_single_column():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(60, 1, generator=g)
    target = (logits.squeeze(1) + 0.5 * torch.randn(60, generator=g) > 0).float()
    got = run(["accuracy", "auroc"], logits, target)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(target.numpy(), (logits.squeeze(1) > 0).numpy()))
    assert got["auroc"] == pytest.approx(skm.roc_auc_score(target.numpy(), logits.squeeze(1).numpy()), abs=1e-5)


def test_regression_matches_sklearn():
    g = torch.Generator().manual_seed(2)
    target = torch.randn(50, 1, generator=g)
    output = target + 0.3 * torch.randn(50, 1, generator=g)
    got = run(["mse", "rmse", "mae", "r2"], output, target)
    assert got["mse"] == pytest.approx(skm.mean_squared_error(target, output), rel=1e-5)
    assert got["rmse"] == pytest.approx(skm.mean_squared_error(target, output) ** 0.5, rel=1e-5)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(target, output), rel=1e-5)
    assert got["r2"] == pytest.approx(skm.r2_score(target, output), rel=1e-5)


def test_torchmetrics_objects_and_names_mix():
    import torchmetrics

    ms = MetricSet({"top2": torchmetrics.Accuracy(task="multiclass", num_classes=5, top_k=2, average="micro"), "acc": "accuracy"})
    logits = torch.eye(5)[torch.tensor([0, 1, 2, 3, 4, 0])]
    logits[5, 1] = 0.5  # the last sample's true class is the runner-up
    ms.update(logits, torch.tensor([0, 1, 2, 3, 4, 1]))
    assert ms.compute() == {"top2": pytest.approx(1.0), "acc": pytest.approx(5 / 6)}


def test_float_targets_for_multiclass_metric_are_explained():
    with pytest.raises(TorchrigError, match=r"needs integer class targets.*torch\.long"):
        MetricSet(["accuracy"]).update(torch.randn(4, 3), torch.randn(4))


def test_unknown_and_wrong_type():
    with pytest.raises(TorchrigError, match=r"Unknown metric 'rsme'.*Did you mean 'rmse'"):
        MetricSet(["rsme"])
    with pytest.raises(TorchrigError, match=r"Metric 'x' is a int; expected a metric name"):
        MetricSet({"x": 3})
    assert {"accuracy", "f1", "precision", "recall", "auroc", "mse", "mae", "r2"} <= set(METRIC_NAMES)
