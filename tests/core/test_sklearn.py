"""torchrig.sklearn: the scikit-learn contract (clone, check_is_fitted, params, pickling, labels,
searches with n_jobs=2) on real small data, and run-dir round trips with the CLI."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("skorch")
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_diabetes, load_digits  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import cross_validate  # noqa: E402
from sklearn.utils.validation import check_is_fitted  # noqa: E402

import torchrig  # noqa: E402
from torchrig.sklearn import ModelInputs, RigClassifier, RigRegressor  # noqa: E402

NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])


class MLP(nn.Module):
    """A module class whose sizes the estimator fills in from the data."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture(scope="module")
def digits_xy():
    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    return X[order] / 16.0, y[order]  # float64, as sklearn users have it


def test_any_label_type_in_and_out(digits_xy):
    X, y = digits_xy
    for labels in (NAMES[y], y + 100, y % 2 == 0):
        clf = RigClassifier(MLP, max_epochs=8, lr=5e-3, verbose=0, train_split=None).fit(X[:1200], labels[:1200])
        assert clf.classes_.tolist() == sorted(set(labels.tolist()))
        pred = clf.predict(X[1200:])
        assert pred.dtype == labels.dtype and set(pred.tolist()) <= set(labels.tolist())
        assert clf.score(X[1200:], labels[1200:]) > 0.85
        proba = clf.predict_proba(X[1200:1210])
        assert proba.shape == (10, len(clf.classes_)) and np.allclose(proba.sum(1), 1, atol=1e-5)
        assert (clf.classes_[proba.argmax(1)] == pred[:10]).all()
    assert clf.module_implied_ == {"in_features": 64, "num_classes": 2}


def test_the_sklearn_contract(digits_xy):
    X, y = digits_xy
    clf = RigClassifier("vision/small_cnn", max_epochs=2, verbose=0, module__width=8)
    assert clf.get_params()["device"] == "auto" and clf.get_params()["module"] == "vision/small_cnn"
    with pytest.raises(NotFittedError):
        check_is_fitted(clf)
    images = X.reshape(-1, 1, 8, 8)
    clf.fit(images[:1000], NAMES[y[:1000]])
    check_is_fitted(clf)
    assert clf.module_implied_ == {"num_classes": 10, "in_channels": 1}
    fresh = clone(clf)
    with pytest.raises(NotFittedError):
        check_is_fitted(fresh)
    assert fresh.get_params()["module__width"] == 8 and fresh.get_params()["device"] == "auto"
    fresh.set_params(module=MLP, module__width=None)  # the module itself is a parameter
    assert fresh.module is MLP
    again = pickle.loads(pickle.dumps(clf))
    assert again.get_params()["device"] == "auto"
    np.testing.assert_array_equal(again.predict(images[1000:]), clf.predict(images[1000:]))
    np.testing.assert_allclose(again.predict_proba(images[1000:]), clf.predict_proba(images[1000:]), atol=1e-6)


def test_regressor_fills_in_sizes_and_keeps_the_target_shape():
    X, y = load_diabetes(return_X_y=True)
    y = (y - y.mean()) / y.std()
    reg = RigRegressor(MLP, module__hidden=32, max_epochs=60, lr=3e-3, batch_size=32, verbose=0, train_split=None)
    reg.fit(X[:350], y[:350])
    pred = reg.predict(X[350:])
    assert pred.shape == (92,) and reg.module_implied_ == {"in_features": 10, "num_classes": 1}
    assert reg.score(X[350:], y[350:]) > 0.3  # R^2; linear regression gets ~0.5 here
    two = RigRegressor(MLP, max_epochs=2, verbose=0, train_split=None).fit(X[:100], np.stack([y[:100], -y[:100]], 1))
    assert two.predict(X[:5]).shape == (5, 2)


@pytest.mark.slow
def test_searches_with_two_jobs_stay_within_the_cores(digits_xy):
    X, y = digits_xy
    cv = cross_validate(RigClassifier(MLP, max_epochs=10, lr=5e-3, verbose=0), X[:600], NAMES[y[:600]], cv=2, n_jobs=2,
                        return_estimator=True)
    assert (cv["test_score"] > 0.8).all()
    cores = os.cpu_count() or 1
    assert all(est.n_threads_ * 2 <= max(cores, 2) for est in cv["estimator"])


def test_inputs_carry_builder_kwargs():
    X = ModelInputs(np.random.default_rng(0).integers(1, 20, (40, 6)), vocab_size=20, pad_id=0)
    y = np.array(["a", "b"] * 20)
    clf = RigClassifier("text/embedding_bag", max_epochs=1, verbose=0, train_split=None).fit(X, y)
    assert clf.module_implied_ == {"vocab_size": 20, "pad_id": 0, "num_classes": 2}
    given = RigClassifier("text/embedding_bag", module__vocab_size=30, max_epochs=1, verbose=0, train_split=None)
    assert given.fit(X, y).module_.embedding.num_embeddings == 30  # what the user sets wins


def test_errors_name_the_problem(digits_xy):
    X, y = digits_xy
    with pytest.raises(torchrig.TorchrigError, match=r"Unknown model 'vision/smal_cnn'.*vision/small_cnn"):
        RigClassifier("vision/smal_cnn", max_epochs=1, verbose=0).fit(X[:50].reshape(-1, 1, 8, 8), y[:50])
    with pytest.raises(torchrig.TorchrigError, match=r"y must hold one label per sample \(1-D\)"):
        RigClassifier(MLP, verbose=0).fit(X[:50], np.zeros((50, 2)))
    clf = RigClassifier(MLP, max_epochs=1, verbose=0, train_split=None).fit(X[:100], NAMES[y[:100]])
    with pytest.raises(torchrig.TorchrigError, match=r"labels the classifier does not know: \['eleven'\]"):
        clf.partial_fit(X[:2], ["one", "eleven"])


@pytest.mark.parametrize("estimator", [RigClassifier, RigRegressor])
def test_bad_arrays_are_refused_as_scikit_learn_refuses_them(digits_xy, estimator):
    """A 1-D X (it reached the model as 1 x N and failed in matmul), X and y of different lengths
    (a classifier judged y's classes first and blamed them), and NaN or infinity in X (a fit
    trained to NaN weights without a word)."""
    X, y = digits_xy
    X, y = X[:60].astype(np.float64), y[:60]
    net = estimator(MLP, max_epochs=1, verbose=0, train_split=None)
    with pytest.raises(torchrig.TorchrigError, match=r"X is 1-D \(shape \(60,\)\).*X\.reshape\(-1, 1\)"):
        net.fit(X[:, 0], y)
    with pytest.raises(torchrig.TorchrigError, match=r"X has 60 samples but y has 10; they must match"):
        net.fit(X, y[:10])
    gaps = X.copy()
    gaps[[3, 7], 5] = np.nan
    with pytest.raises(torchrig.TorchrigError, match=r"X contains NaN in 2 of its 60 rows \(the first: row 3\).*"
                                                      r"SimpleImputer"):
        net.fit(gaps, y)
    gaps[[3, 7], 5] = 0.0
    gaps[9, 0] = -np.inf
    with pytest.raises(torchrig.TorchrigError, match=r"X contains infinity in 1 of its 60 rows \(the first: row 9\)"):
        net.fit(gaps, y)
    fitted = net.fit(X, y)
    with pytest.raises(torchrig.TorchrigError, match=r"X\.reshape\(1, -1\) for a single sample"):
        fitted.predict(X[0])


def test_from_run_and_save_run_round_trip_with_the_cli(rig_plugin, tmp_path, monkeypatch, capsys):
    from torchrig._cli import main

    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: d\ndata: {dataset: t/digits, split: {val: 0.1, test: 0.2}}\n"
                      "model: {name: t/mlp, hidden: 32}\noptimizer: {name: adamw, lr: 0.005}\ntrainer: {max_epochs: 8}\n")
    assert main(["train", str(recipe), "--out", "run", "--quiet"]) == 0
    clf = RigClassifier.from_run(tmp_path / "run", verbose=0)
    check_is_fitted(clf)
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    cli_test = json.loads((tmp_path / "run/summary.json").read_text())["test"]["accuracy"]
    assert clf.classes_.tolist() == [str(i) for i in range(10)]
    assert clf.score(X, y.astype(str)) > max(0.85, cli_test - 0.03)  # all data: mostly what it trained on
    with pytest.raises(torchrig.TorchrigError, match=r"holds a classification run; load it with RigClassifier"):
        RigRegressor.from_run(tmp_path / "run")

    fitted = RigClassifier("t/mlp", max_epochs=5, verbose=0).fit(X[:1400], y[:1400].astype(str))
    fitted.save_run(tmp_path / "sk", data={"dataset": "t/digits"})
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "sk"), "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out
    reloaded = RigClassifier.from_run(tmp_path / "sk", verbose=0)
    np.testing.assert_array_equal(reloaded.predict(X[1400:]), fitted.predict(X[1400:]))
    with pytest.raises(torchrig.TorchrigError, match=r"save_run needs a registry model"):
        RigClassifier(MLP, max_epochs=1, verbose=0, train_split=None).fit(X[:50], y[:50]).save_run(tmp_path / "x", data={"dataset": "t/digits"})


@pytest.mark.gpu
def test_fitted_on_cuda_loads_on_a_cpu_only_machine(digits_xy, tmp_path):
    X, y = digits_xy
    clf = RigClassifier(MLP, max_epochs=2, verbose=0, device="auto").fit(X[:500], NAMES[y[:500]])
    assert next(clf.module_.parameters()).is_cuda
    path = tmp_path / "clf.pkl"
    path.write_bytes(pickle.dumps(clf))
    np.save(tmp_path / "x.npy", X[500:600])
    code = ("import pickle, numpy as np, torch; assert not torch.cuda.is_available(); "
            f"clf = pickle.loads(open({str(path)!r}, 'rb').read()); "
            f"print(list(clf.predict(np.load({str(tmp_path / 'x.npy')!r}))[:5]))")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(__file__))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(list(clf.predict(X[500:600])[:5]))


def test_random_state_makes_fits_repeatable_without_touching_the_global_rng(digits_xy):
    X, y = digits_xy
    make = lambda: RigClassifier(MLP, max_epochs=2, verbose=0, random_state=7)  # noqa: E731
    torch.manual_seed(1)
    before = torch.rand(1)
    torch.manual_seed(1)
    a = make().fit(X[:300], y[:300])
    assert torch.equal(torch.rand(1), before)  # the global RNG is where it was
    b = make().fit(X[:300], y[:300])
    np.testing.assert_array_equal(a.predict_proba(X[300:400]), b.predict_proba(X[300:400]))
    assert clone(a).get_params()["random_state"] == 7


def test_predict_before_fit_and_one_class_are_refused(digits_xy):
    X, y = digits_xy
    with pytest.raises(NotFittedError):
        RigClassifier(MLP).predict(X[:2])
    with pytest.raises(torchrig.TorchrigError, match=r"at least 2 classes in y; it has only \[0\]"):
        RigClassifier(MLP, max_epochs=1).fit(X[:20], np.zeros(20, dtype=int))


def test_a_new_module_gets_only_the_sizes_it_takes(digits_xy):
    """set_params(module=...) after a fit: what the data implied is filtered to the new builder."""
    X, y = digits_xy
    clf = RigClassifier("vision/small_cnn", max_epochs=1, train_split=None)
    clf.fit(X[:100].reshape(-1, 1, 8, 8), y[:100])
    clf.set_params(module=MLP)
    assert clf.fit(X[:100].tolist(), y[:100]).module_implied_ == {"in_features": 64, "num_classes": 10}  # a list X


def test_partial_fit_sizes_the_model_for_labels_still_to_come(digits_xy):
    X, y = digits_xy
    inc = RigClassifier(MLP, max_epochs=1, train_split=None)
    inc.partial_fit(X[y < 3], y[y < 3], classes=np.arange(10))
    inc.partial_fit(X[y >= 3], y[y >= 3])
    assert inc.classes_.tolist() == list(range(10)) and inc.predict_proba(X[:3]).shape == (3, 10)


def test_regressor_predicts_lists_as_float32(digits_xy):
    X, y = digits_xy
    reg = RigRegressor(MLP, max_epochs=1, train_split=None).fit(X[:50], y[:50].astype(float))
    assert reg.predict(X[:5].tolist()).shape == (5,) and reg.predict_proba(X[:5]).dtype == np.float32


def test_save_run_refuses_what_the_cli_would_get_wrong(rig_plugin, tmp_path, digits_xy):
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    names = NAMES[y]  # sorted alphabetically, "eight" first: not the dataset's order "0".."9"
    clf = RigClassifier("t/mlp", max_epochs=1, train_split=None).fit(X[:300], names[:300])
    with pytest.raises(torchrig.TorchrigError, match=r"not t/digits's classes in its order"):
        clf.save_run(tmp_path / "run", data={"dataset": "t/digits"})
    with pytest.raises(torchrig.TorchrigError, match=r"Unknown dataset 't/digts'"):
        clf.save_run(tmp_path / "run", data={"dataset": "t/digts"})
    assert not (tmp_path / "run").exists()  # nothing written when it refuses
    ordered = RigClassifier("t/mlp", classes=list(NAMES), max_epochs=1, train_split=None).fit(X[:300], names[:300])
    with pytest.raises(torchrig.TorchrigError, match=r"not t/digits's classes"):  # still names, not "0".."9"
        ordered.save_run(tmp_path / "run", data={"dataset": "t/digits"})
    ints = RigClassifier("t/mlp", max_epochs=1, train_split=None).fit(X[:300], y[:300])
    ints.save_run(tmp_path / "ints", data={"dataset": "t/digits"})
    back = RigClassifier.from_run(tmp_path / "ints")
    assert back.classes_.tolist() == list(range(10)) and back.predict(X[:3]).dtype.kind == "i"
    pre = RigClassifier("t/mlp", max_epochs=1, train_split=None).fit(ModelInputs(X[:300], hidden=16), y[:300])
    with pytest.raises(torchrig.TorchrigError, match=r"Save the whole fitted Pipeline with joblib.dump"):
        pre.save_run(tmp_path / "pre", data={"dataset": "t/digits"})
