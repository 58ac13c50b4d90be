"""TextEncoder: the scikit-learn contract on strings, and a Pipeline + GridSearchCV (n_jobs=2)
with RigClassifier on real quotations, predicting the original string labels."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("skorch")
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.utils import estimator_checks as checks  # noqa: E402

import torchrig  # noqa: E402
from torchrig.sklearn import RigClassifier  # noqa: E402
from torchrig_text.sklearn import TextEncoder  # noqa: E402

TEXTS = ["The cat sat on the mat.", "A dog? No: a CAT!", "Dogs and cats, cats and dogs.", "An unrelated line"]


@pytest.mark.parametrize("check", [
    checks.check_estimator_cloneable, checks.check_estimator_tags_renamed, checks.check_valid_tag_types,
    checks.check_estimator_repr, checks.check_no_attributes_set_in_init, checks.check_mixin_order,
    checks.check_do_not_raise_errors_in_init_or_set_params, checks.check_parameters_default_constructible,
    checks.check_get_params_invariance, checks.check_set_params,
])
def test_sklearn_api_checks(check):
    """The input-independent checks of ``check_estimator``. The others feed 2-D float arrays, and
    TextEncoder takes strings (its tags say so, so ``check_estimator`` itself runs none): their
    string equivalents are in test_fit_transform_contract_on_strings below."""
    check("TextEncoder", TextEncoder())


def test_fit_transform_contract_on_strings():
    enc = TextEncoder("basic_english", max_len=6)
    with pytest.raises(NotFittedError):
        enc.transform(TEXTS)
    params = enc.get_params()
    assert enc.fit(TEXTS) is enc and enc.get_params() == params  # returns self, leaves params alone
    X = enc.transform(TEXTS + ["cat"])
    assert X.shape == (5, 6) and X.dtype == np.int64
    assert X.model_kwargs == {"vocab_size": enc.vocab_size_, "pad_id": 0, "vocab": enc.encoder_.vocab.get_itos()}
    assert (X[4, 1:] == enc.pad_id_).all() and X[4, 0] == enc.encoder_.vocab["cat"]
    np.testing.assert_array_equal(enc.fit(TEXTS).transform(TEXTS), X[:4])  # refit: the same
    np.testing.assert_array_equal(enc.fit_transform(np.array(TEXTS, dtype=object)[:, None]), X[:4])  # (n, 1) column
    again = pickle.loads(pickle.dumps(enc))
    np.testing.assert_array_equal(again.transform(TEXTS), X[:4])
    with pytest.raises(NotFittedError):
        clone(enc).transform(TEXTS)
    bpe = TextEncoder("bpe", vocab_size=80, max_len=12).fit(TEXTS * 5)
    assert bpe.transform(TEXTS).shape == (4, 12) and bpe.vocab_size_ <= 80
    with pytest.raises(torchrig.TorchrigError, match=r"sample 1 is float nan, not a string"):
        enc.transform(["fine", float("nan")])
    with pytest.raises(torchrig.TorchrigError, match=r"got a single string; wrap it: \[text\]"):
        enc.transform("just one")


@pytest.mark.slow
def test_pipeline_grid_search_on_real_quotations():
    if not Path("/usr/share/games/fortunes/food").is_file():
        pytest.skip("Debian's fortunes package is not installed (.ci/run installs it)")
    ds = torchrig.get_dataset("text/fortunes", categories=["education", "food", "law"])
    texts = [ds[i][0] for i in range(len(ds))]
    labels = np.asarray(ds.classes)[[ds[i][1] for i in range(len(ds))]]  # the category names
    order = np.random.default_rng(0).permutation(len(texts))
    texts, labels = [texts[i] for i in order], labels[order]
    cut = int(0.75 * len(texts))
    search = GridSearchCV(
        Pipeline([("enc", TextEncoder("basic_english", max_len=64)),
                  ("net", RigClassifier("text/embedding_bag", max_epochs=12, lr=1e-2, verbose=0, train_split=None))]),
        {"net__module": ["text/embedding_bag", "text/cnn"], "enc__max_len": [32, 64]},
        cv=2, n_jobs=2)
    search.fit(texts[:cut], labels[:cut])
    accuracy = search.score(texts[cut:], labels[cut:])
    assert accuracy > 0.55, accuracy  # three balanced classes: chance is 1/3
    assert search.predict(["the judge ruled for the defendant"]).dtype == labels.dtype
    assert set(search.predict(texts[cut:cut + 20])) <= {"education", "food", "law"}
