"""A torchrig GridSearchCV on a Dask cluster through joblib (the `cluster` extra): a LocalCluster
of two worker processes on loopback runs the fits and finds what the local search finds."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skorch")
distributed = pytest.importorskip("distributed")

from joblib import parallel_config  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from torchrig.sklearn import RigClassifier  # noqa: E402


@pytest.mark.slow
def test_grid_search_on_a_local_dask_cluster():
    X, y = load_digits(return_X_y=True)
    X = (X[:600] / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    y = y[:600]

    def search() -> GridSearchCV:
        est = RigClassifier("vision/small_cnn", module__width=8, max_epochs=4, verbose=0, train_split=None,
                            random_state=0)  # each fit the same wherever it runs
        return GridSearchCV(est, {"lr": [1e-4, 1e-2]}, cv=2, n_jobs=-1)

    local = search()
    with parallel_config(backend="sequential"):
        local.fit(X, y)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        remote = search()
        with distributed.get_task_stream(client) as tasks, parallel_config(backend="dask"):
            remote.fit(X, y)
        workers = {t["worker"] for t in tasks.data}
    assert remote.best_params_ == local.best_params_ == {"lr": 1e-2}
    assert len(tasks.data) >= 4 and len(workers) >= 1  # the fits ran on the cluster's workers
    np.testing.assert_allclose(remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"], atol=1e-6)
