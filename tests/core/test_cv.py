"""`torchrig cv RECIPE --folds K`: a run dir per fold (in 2 local processes), folds that partition
train+val while the test split stays put, mean ± std, finished folds skipped, grouped folds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from torchrig._cli import main

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
DIGITS = str(REPO / "recipes/vision/digits.yaml")
FAST = ["--set", "trainer.max_epochs=3", "--set", "data.dataset.size=8", "--set", "data.train_transform.size=8",
        "--set", "data.eval_transform.size=8"]


def _indices(run):
    """The fold's samples per split, recomputed from its run dir as evaluate does."""
    import torchrig
    from torchrig._data import build_splits

    splits, _ = build_splits(torchrig.load_recipe(run / "recipe.yaml"))
    return {name: set(part.indices) for name, part in splits.items()}


def test_folds_partition_train_and_val_and_summarise(tmp_path, capsys):
    out = tmp_path / "cv"
    assert main(["cv", DIGITS, "--folds", "3", "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "3-fold cross-validation (mean ± std over the folds):" in printed and "accuracy" in printed
    parts = [_indices(out / f"fold-{i}") for i in (1, 2, 3)]
    assert parts[0]["test"] == parts[1]["test"] == parts[2]["test"]  # the test split stays held out
    vals = [p["val"] for p in parts]
    assert not (vals[0] & vals[1]) and not (vals[1] & vals[2]) and not (vals[0] & vals[2])
    pool = parts[0]["train"] | parts[0]["val"]
    assert vals[0] | vals[1] | vals[2] == pool and not (pool & parts[0]["test"])
    assert all(p["train"] == pool - p["val"] for p in parts)
    summary = json.loads((out / "cv_summary.json").read_text())
    accuracies = [json.loads((out / f"fold-{i}" / "summary.json").read_text())["val"]["accuracy"] for i in (1, 2, 3)]
    assert summary["summary"]["val"]["accuracy"]["mean"] == pytest.approx(sum(accuracies) / 3)
    assert min(accuracies) > 0.8 and (out / "fold-1" / "train.log").read_text().count("run dir:") == 1

    # finished folds are skipped; a fold without its summary runs again
    kept = (out / "fold-1" / "weights.safetensors").stat().st_mtime_ns
    (out / "fold-2" / "summary.json").unlink()
    assert main(["cv", DIGITS, "--folds", "3", "--out", str(out), *FAST]) == 0
    assert (out / "fold-1" / "weights.safetensors").stat().st_mtime_ns == kept
    assert (out / "fold-2" / "summary.json").is_file()


def test_grouped_folds_keep_each_group_whole(tmp_path, capsys):
    speakers = ["ann", "bob", "cid", "dee", "eve", "fay"]
    for d in range(2):
        for s in speakers:
            for k in range(3):
                folder = tmp_path / "photos" / str(d)
                folder.mkdir(parents=True, exist_ok=True)
                Image.new("L", (8, 8), color=40 + 120 * d + k).save(folder / f"{d}_{s}_{k}.png")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data:\n  dataset: {{name: vision/image_folder, root: '{tmp_path / 'photos'}', channels: 1}}\n"
                      "  split: {val: 0.0, test: 0.0}\n  eval_transform: {name: vision/eval_preset, size: 8}\n"
                      "  train_transform: {name: vision/eval_preset, size: 8}\n  batch_size: 8\n"
                      "model: {name: vision/small_cnn, width: 4}\ntrainer: {max_epochs: 1}\n")
    out = tmp_path / "cv"
    assert main(["cv", str(recipe), "--folds", "3", "--group-by", "^[^_]+_([^_]+)_", "--out", str(out),
                 "--jobs", "1"]) == 0
    seen = []
    for i in (1, 2, 3):
        import torchrig

        splits, _ = __import__("torchrig._data", fromlist=["build_splits"]).build_splits(
            torchrig.load_recipe(out / f"fold-{i}" / "recipe.yaml"))
        base = splits["val"].dataset
        seen.append({Path(base.describe(j)).name.split("_")[1] for j in splits["val"].indices})
        train = {Path(base.describe(j)).name.split("_")[1] for j in splits["train"].indices}
        assert not (seen[-1] & train)
    assert sorted(s for group in seen for s in group) == sorted(speakers)


def test_bad_folds_fail_before_any_work(tmp_path, capsys):
    assert main(["cv", DIGITS, "--folds", "400", "--out", str(tmp_path / "cv"), *FAST]) == 2
    assert "--folds 400 is more than the" in capsys.readouterr().err
    assert main(["cv", DIGITS, "--folds", "1", "--out", str(tmp_path / "cv")]) == 2
    assert "--folds must be at least 2" in capsys.readouterr().err
    assert main(["cv", DIGITS, "--folds", "3", "--jobs", "0", "--out", str(tmp_path / "cv")]) == 2
    assert "--jobs (n_jobs) must not be 0" in capsys.readouterr().err
    assert not any((tmp_path / "cv").glob("fold-*"))


@pytest.mark.parametrize("jobs, spare", [(-1, 0), (-2, 1)])
def test_negative_jobs_count_back_from_the_cores_as_in_joblib(jobs, spare, tmp_path, monkeypatch):
    import os

    import torchrig._cv as cv

    class Started(Exception):
        pass

    def record(recipe, overrides, todo, folds, out, n_jobs, scheduler):
        raise Started(n_jobs)  # where the folds would start

    monkeypatch.setattr(cv, "_run_folds", record)
    with pytest.raises(Started) as started:
        cv.run_cv(DIGITS, folds=3, out=tmp_path / "cv", n_jobs=jobs, overrides=FAST[1::2])
    assert started.value.args == (max(1, (os.cpu_count() or 1) - spare),)


def test_folds_on_a_local_dask_cluster_score_as_local_workers_do(tmp_path):
    distributed = pytest.importorskip("distributed")
    import torchrig

    overrides = [item for item in FAST if item != "--set"] + ["trainer.max_epochs=1"]  # equality is the point
    local = torchrig.cross_validate(DIGITS, folds=2, overrides=overrides, out=tmp_path / "local", n_jobs=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        remote = torchrig.cross_validate(DIGITS, folds=2, overrides=overrides, out=tmp_path / "dask",
                                         scheduler=cluster.scheduler_address)
    assert remote["folds"] == local["folds"]  # one thread per fold on both: the same numbers, bit for bit
    assert all((tmp_path / "dask" / f"fold-{i}" / "summary.json").is_file() for i in (1, 2))
