"""DDP through torchrun, on CPU with gloo and 2 processes: the same recipe as one process reaches
the same quality with the same global batch; resume; one failing rank brings every rank down."""

from __future__ import annotations

import importlib.util

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch.distributed as dist

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")]

# GroupNorm, not BatchNorm: its statistics are per sample, so 2 ranks x 32 compute what 1 process
# x 64 does, up to float rounding. 1797 digits with these fractions leave 1256 for training, a
# multiple of 2: DistributedSampler pads nothing, and each global batch holds the same samples.
# SGD rather than AdamW: Adam's step divides by sqrt(v), which turns rounding noise in near-zero
# gradients into full-size steps; measured, AdamW at lr 0.01 drifted apart within epoch 1 (weights
# 2.5e-3 apart on seed 2), while SGD's epoch-1 losses agree to 1e-6 on every seed.
RECIPE = """\
name: ddp-digits
seed: 0
data:
  dataset: {name: vision/digits}
  split: {val: 0.1, test: 0.201}
  batch_size: 64
model: {name: vision/small_cnn, width: 8, dropout: 0.0, norm: group}
optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
scheduler: {name: cosine, T_max: 6}   # explicit: a run stopped at 3 epochs has the same schedule
metrics: [accuracy]
trainer: {max_epochs: 6, device: cpu, precision: "32"}
"""


def torchrig(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the CLI in its own process group; on timeout kill the whole group (torchrun's workers too)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    command = [sys.executable, "-m", "torchrig", *args]
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def rows(run: Path) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in r.items() if k != "time"} for r in csv.DictReader((run / "metrics.csv").open())]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process with batch 64, and two processes with batch 32 each (global batch 64)."""
    root = tmp_path_factory.mktemp("ddp")
    (root / "r.yaml").write_text(RECIPE)
    single = torchrig("train", "r.yaml", "--out", "single", "--quiet", cwd=root)
    assert single.returncode == 0, single.stderr
    tracked = ["--set", "trainer.mlflow={experiment: ddp}"] if importlib.util.find_spec("mlflow") else []
    ddp = torchrig("train", "r.yaml", "--out", "ddp", "--quiet", "--nproc", "2", "--set", "data.batch_size=32",
                   *tracked, cwd=root)
    assert ddp.returncode == 0, ddp.stderr
    return root, ddp


def test_ddp_logs_to_mlflow_from_rank_zero_alone(runs):
    mlflow = pytest.importorskip("mlflow")
    root, _ = runs
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])  # one run, not one per rank
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2, 3, 4, 5, 6]
    assert run.info.status == "FINISHED"


# From `python benchmarks/spread.py --cases ddp` (this recipe, seeds 0-4, OMP_NUM_THREADS 1 and 2;
# the numbers are in the issue-19 note): in epoch 1 the two runs' train losses agree to <= 6e-8
# relative and their val losses to <= 2e-6; later, rounding differences grow (training is chaotic:
# one seed on 2 threads was 7e-3 apart in epoch 2) and the final test accuracies differ by up to
# 0.0055 (2 of 362 images); the lowest test accuracy was 0.9696. The bounds sit above those.
TRAIN_LOSS_REL, VAL_LOSS_REL = 1e-6, 1e-5
ACCURACY_GAP, ACCURACY_FLOOR = 2 * 0.0055, 0.95


def test_ddp_matches_one_process_with_the_same_global_batch(runs):
    """The k-th batches of the two ranks hold exactly one process's k-th batch (the same seeded
    permutation), DDP averages the two half-batch gradients, and GroupNorm makes each sample's
    forward pass independent of its batch: the same training up to float rounding. (With
    BatchNorm the runs legitimately differ, statistics over 32 vs 64 samples, which made the old
    0.005 tolerance a coin toss.)"""
    root, ddp = runs
    assert ddp.stdout.count("run dir:") == 1  # rank 0 alone prints and writes
    one, two = (json.loads((root / d / "summary.json").read_text()) for d in ("single", "ddp"))
    meta = json.loads((root / "ddp/meta.json").read_text())
    assert meta["world_size"] == 2 and meta["sizes"]["train"] % 2 == 0
    single, ddp_rows = rows(root / "single"), rows(root / "ddp")
    assert len(single) == len(ddp_rows) == 6
    a, b = single[0], ddp_rows[0]  # epoch 1: the same computation, up to rounding
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=TRAIN_LOSS_REL), (a, b)
    assert b["val_loss"] == pytest.approx(a["val_loss"], rel=VAL_LOSS_REL), (a, b)
    # statistical: the same quality, within twice the measured spread
    assert min(one["test"]["accuracy"], two["test"]["accuracy"]) > ACCURACY_FLOOR, (one["test"], two["test"])
    assert abs(one["test"]["accuracy"] - two["test"]["accuracy"]) <= ACCURACY_GAP, (one["test"], two["test"])
    # every test sample counted once over both ranks: DDP's evaluate equals one process's
    evaluated = torchrig("evaluate", "ddp", "--json", cwd=root)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(two["test"]["accuracy"], abs=1e-6)


def test_ddp_resume_continues_exactly(runs):
    root, _ = runs
    first = torchrig("train", "r.yaml", "--out", "resumed", "--quiet", "--nproc", "2", "--set", "data.batch_size=32",
                     "--set", "trainer.max_epochs=3", cwd=root)
    assert first.returncode == 0, first.stderr
    again = torchrig("train", "r.yaml", "--out", "resumed", "--quiet", "--nproc", "2", "--set", "data.batch_size=32",
                     "--resume", cwd=root)
    assert again.returncode == 0, again.stderr
    got, want = rows(root / "resumed"), rows(root / "ddp")
    assert len(got) == len(want) == 6
    for a, b in zip(got, want):
        assert a == pytest.approx(b, rel=1e-5), (a, b)


def test_ddp_fine_tunes_from_a_run_dir(runs):
    """FineTune under DDP: unfreezing changes which parameters train, and the Trainer re-wraps
    the model so DDP's reducer expects the right gradients."""
    root, _ = runs
    result = torchrig("train", "r.yaml", "--out", "ft", "--nproc", "2", "--set", "data.batch_size=32",
                      "--set", f"model.weights={root / 'single'}", "--set", "trainer.max_epochs=2",
                      "--set", "trainer.finetune={freeze_epochs: 1, backbone_lr_scale: 0.1}", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "weights: loaded 17/17 tensors" in result.stdout
    assert "backbone unfrozen at epoch 2" in result.stdout + result.stderr
    assert len(rows(root / "ft")) == 2


def test_balanced_sampler_under_ddp_draws_one_processs_batches(runs, tmp_path):
    """`data.sampler: balanced` under torchrun: each rank takes every other index of the same
    seeded draw, so the two ranks' k-th batches are one process's k-th batch, and epoch 1 trains
    as one process with the global batch does (the same bounds as the plain-sampler test)."""
    (tmp_path / "r.yaml").write_text(RECIPE.replace("  batch_size: 64\n", "  batch_size: 64\n  sampler: balanced\n"))
    short = ["--quiet", "--set", "trainer.max_epochs=2"]
    single = torchrig("train", "r.yaml", "--out", "single", *short, cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    ddp = torchrig("train", "r.yaml", "--out", "ddp", *short, "--nproc", "2", "--set", "data.batch_size=32", cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr
    a, b = rows(tmp_path / "single")[0], rows(tmp_path / "ddp")[0]
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=TRAIN_LOSS_REL), (a, b)
    assert b["val_loss"] == pytest.approx(a["val_loss"], rel=VAL_LOSS_REL), (a, b)
    root, _ = runs  # the same recipe with the plain shuffled sampler (same epoch-1 schedule: T_max is set)
    assert rows(root / "single")[0]["train_loss"] != pytest.approx(a["train_loss"], rel=1e-4)  # the draw is in play


def test_one_failing_rank_brings_every_rank_down(tmp_path):
    """A plugin whose dataset breaks on rank 1 in the middle of training: every process exits,
    non-zero, instead of waiting out the process group's timeout, and the error names its rank."""
    site = tmp_path / "site"
    (site / "brokenrank").mkdir(parents=True)
    (site / "brokenrank" / "__init__.py").write_text(textwrap.dedent('''
        import os
        import torch
        import torchrig

        plugin = torchrig.Plugin("broken")

        class Digits(torch.utils.data.Dataset):
            def __init__(self):
                self.base = torchrig.get_dataset("vision/digits")
                self.classes, self.targets, self.calls = self.base.classes, self.base.targets, 0
                self.model_kwargs = self.base.model_kwargs

            def __len__(self):
                return len(self.base)

            def __getitem__(self, i):
                self.calls += 1
                if os.environ.get("RANK") == "1" and self.calls > 900:  # in the second epoch
                    raise RuntimeError("this sample is broken on rank 1")
                return self.base[i]

        @plugin.dataset
        def digits():
            """Digits that break on rank 1."""
            return Digits()
    '''))
    dist_info = site / "brokenrank-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenrank\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[torchrig.plugins]\nbroken = brokenrank:plugin\n")
    (tmp_path / "r.yaml").write_text(RECIPE.replace("vision/digits", "broken/digits"))
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    # A hang would last TORCHRIG_DIST_TIMEOUT (30 min): the timeout tells the two apart without
    # timing anything.
    result = torchrig("train", "r.yaml", "--out", "run", "--quiet", "--nproc", "2", "--set", "data.batch_size=32",
                      cwd=tmp_path, env=env, timeout=600)
    assert result.returncode != 0
    assert result.stderr.count("RuntimeError: this sample is broken on rank 1") == 1  # reported once
    assert "rank 0 stopped: another rank failed" in result.stderr or "SIGTERM" in result.stderr
    assert "epoch 1/6" in result.stdout + result.stderr or (tmp_path / "run" / "metrics.csv").is_file()
