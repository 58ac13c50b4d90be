"""MLflow tracking from a recipe (`trainer.mlflow`): params, per-epoch metrics and the run dir's
files, read back with MLflow's own client from a local store; a resumed run continues its
MLflow run."""

from __future__ import annotations

import csv
import json

import pytest

import torchrig
from torchrig._cli import main

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("sqlalchemy")

RECIPE = """\
name: digits-mlp
data:
  dataset: {{name: t/digits, limit: 600}}
  split: {{val: 0.15, test: 0.2}}
  batch_size: 32
model: {{name: t/mlp, hidden: 32}}
optimizer: {{name: adamw, lr: 0.005}}
metrics: [accuracy]
trainer: {{max_epochs: 3, mlflow: {mlflow}}}
"""


@pytest.mark.slow
def test_recipe_logs_params_epochs_and_artifacts(rig_plugin, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    (tmp_path / "r.yaml").write_text(RECIPE.format(mlflow=f"{{tracking_uri: '{uri}', experiment: digits}}"))
    assert main(["train", "r.yaml", "--out", "run", "--quiet"]) == 0

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("digits")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    params = run.data.params
    assert params["data.batch_size"] == "32" and params["model.name"] == "t/mlp"
    assert params["model.num_classes"] == "10"  # the resolved recipe: sizes the data implied
    assert params["optimizer.lr"] == "0.005" and params["metrics"] == "['accuracy']"

    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in history] == pytest.approx([float(r["val_loss"]) for r in rows], rel=1e-6)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert run.data.metrics["final_test_accuracy"] == pytest.approx(summary["test"]["accuracy"])

    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "summary.json", "recipe.yaml", "top_losses.json", "plots"} <= files
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/learning_curves.png", "plots/top_losses.png", "plots/train_batch.png"} <= plots


@pytest.mark.slow
def test_default_store_is_local_and_named_after_the_recipe(rig_plugin, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "r.yaml").write_text(RECIPE.format(mlflow="{}"))
    assert main(["train", "r.yaml", "--out", "run", "--quiet"]) == 0
    store = sorted(p.name for p in tmp_path.iterdir())
    assert "mlflow.db" in store and "mlruns" in store  # MLflow's own local default: works offline
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("digits-mlp").experiment_id])
    assert run.data.metrics["val_accuracy"] > 0.5


def test_a_resumed_logger_continues_its_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    first = torchrig.MLflowLogger(tracking_uri=uri, experiment="e", params={"lr": 0.1})
    first.on_fit_start(None)
    first.on_epoch_end(None, 1, {"epoch": 1, "train_loss": 2.0})
    first.on_exception(None, KeyboardInterrupt())
    state = first.state_dict()

    second = torchrig.MLflowLogger(tracking_uri=uri, experiment="e", params={"lr": 0.1})
    second.load_state_dict(state)
    second.on_fit_start(None)
    second.on_epoch_end(None, 2, {"epoch": 2, "train_loss": 1.0})
    second.log_run_dir(tmp_path, {"test": {"accuracy": 0.9}})
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    assert run.info.run_id == state["run_id"] and run.info.status == "FINISHED"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train_loss")] == [(1, 2.0), (2, 1.0)]
    assert run.data.metrics["final_test_accuracy"] == 0.9


def test_without_mlflow_installed_the_error_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(torchrig.TorchrigError, match=r"pip install 'torchrig\[mlflow\]'"):
        torchrig.MLflowLogger().on_fit_start(None)
