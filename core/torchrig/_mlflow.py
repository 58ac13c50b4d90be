"""MLflow tracking: the resolved recipe as params, each epoch's metrics, and at the end the final
scores and the run dir's plots and report as artifacts (``pip install 'torchrig[mlflow]'``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._callbacks import Callback
from ._errors import TorchrigError

ARTIFACTS = ("report.html", "summary.json", "recipe.yaml", "top_losses.json", "metrics.csv")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"data": {"batch_size": 64}}`` -> ``{"data.batch_size": "64"}`` (lists as their text)."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = str(value)[:6000]  # MLflow's limit on a param's value
    return flat


class MLflowLogger(Callback):
    """Log a training run to MLflow: ``params`` once, each epoch's numbers (``train_loss``,
    ``val_accuracy``, ...) at step = epoch, and, when :meth:`log_run_dir` is called, the final
    scores (``final_test_accuracy``, ...) and the run dir's files. A resumed run continues the same MLflow run (its id is in
    the resume state). Under DDP only rank 0 logs.

    Args:
        tracking_uri: where runs go; default MLflow's own (``MLFLOW_TRACKING_URI``, else
            ``sqlite:///mlflow.db`` in the working folder, artifacts in ``./mlruns``): local,
            so it works offline.
        experiment: the experiment's name (made if it does not exist).
        run_name: the run's name in the MLflow UI.
        params: what to log as params (recipes pass the flattened resolved recipe).

    Example::

        logger = MLflowLogger(experiment="digits", params={"lr": 1e-3})
        Trainer(max_epochs=5, callbacks=[logger]).fit(model, loader, loss_fn, optimizer)
        logger.log_run_dir("runs/digits")       # optional: plots, report, summary as artifacts
    """

    rank_zero_only = True
    order = 60  # with the other loggers: after those that add values to logs, before checkpointing saves our state

    def __init__(self, *, tracking_uri: str | None = None, experiment: str = "torchrig", run_name: str | None = None,
                 params: Mapping[str, Any] | None = None) -> None:
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.params = dict(params or {})
        self.run_id: str | None = None
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                from mlflow.tracking import MlflowClient
            except ImportError:
                raise TorchrigError("trainer.mlflow needs MLflow: pip install 'torchrig[mlflow]' "
                                    "(mlflow-skinny with its local sqlite store).") from None
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def on_fit_start(self, trainer: Any, **kwargs: Any) -> None:
        if self.run_id is not None:  # resumed: the run the interrupted training started
            self.client.update_run(self.run_id, status="RUNNING")
            return
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found is not None else self.client.create_experiment(self.experiment)
        run = self.client.create_run(experiment_id, run_name=self.run_name, tags={"mlflow.source.name": "torchrig"})
        self.run_id = run.info.run_id
        self._log(params={k: str(v) for k, v in flatten(self.params).items()})

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any], **kwargs: Any) -> None:
        self._log(metrics={k: v for k, v in logs.items() if k != "epoch" and isinstance(v, (int, float))}, step=epoch)

    def on_exception(self, trainer: Any, exception: BaseException, **kwargs: Any) -> None:
        if self.run_id is not None:
            status = "KILLED" if isinstance(exception, KeyboardInterrupt) else "FAILED"
            self.client.set_terminated(self.run_id, status=status)

    def log_run_dir(self, run_dir: str | Path, scores: Mapping[str, Mapping[str, float]] | None = None) -> None:
        """Log the final ``scores`` (the kept weights' numbers, as ``final_test_accuracy``, ...:
        apart from the per-epoch ``val_*``), the run dir's plots and files, and end the MLflow run."""
        if self.run_id is None:
            return
        run_dir = Path(run_dir)
        final = {f"final_{split}_{k}": v for split, row in (scores or {}).items() for k, v in row.items()
                 if isinstance(v, (int, float))}
        self._log(metrics=final)
        plots = run_dir / "plots"
        if plots.is_dir():
            self.client.log_artifacts(self.run_id, str(plots), "plots")
        for name in ARTIFACTS:
            if (run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run_dir / name))
        self.client.set_terminated(self.run_id, status="FINISHED")

    def _log(self, *, params: Mapping[str, str] | None = None, metrics: Mapping[str, float] | None = None,
             step: int = 0) -> None:
        from mlflow.entities import Metric, Param

        stamp = int(time.time() * 1000)
        items = [Param(k, v) for k, v in (params or {}).items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start:start + 100])
        if metrics:
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), stamp, step) for k, v in metrics.items()])

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run_id = state.get("run_id")
