"""``torchrig cv RECIPE --folds K``: K-fold cross-validation, one run dir per fold, the folds run in
parallel through joblib (local processes, or a Dask cluster), finished folds skipped."""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path
from typing import Any

from ._errors import TorchrigError
from ._files import SUMMARY, atomic_write

CV_SUMMARY = "cv_summary.json"


def _fold_run(recipe_path: str, overrides: list[str], fold: int, folds: int, out: str, threads: int) -> str:
    """One fold, in a worker: the recipe with ``data.split.fold``, trained into ``out``."""
    import contextlib

    import torch

    from ._recipe import load_recipe
    from ._run import train

    torch.set_num_threads(threads)  # each fold keeps to its share of the cores
    recipe = load_recipe(recipe_path, [*overrides, f"data.split.folds={folds}", f"data.split.fold={fold}"])
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out) / "train.log", "w", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        train(recipe, out=out, progress_bar=False)  # its tables go to the fold's train.log
    return out


def cross_validate(recipe_path: str | Path, *, folds: int, overrides: list[str] | None = None,
                   group_by: str | None = None, out: str | Path | None = None, n_jobs: int = 2,
                   scheduler: str | None = None) -> dict[str, Any]:
    """Train a recipe once per fold and summarise the folds' scores.

    The test split (if the recipe has one) is held out as in ``train``; the rest (train and val)
    is cut into ``folds`` folds, stratified by class (grouped with ``group_by``), and fold ``i``'s
    run validates on fold ``i`` and trains on the others. Fold runs go to ``out/fold-i``; a fold
    whose run dir has its ``summary.json`` is not run again.

    Args:
        recipe_path: the recipe file.
        folds: K (at least 2).
        overrides: ``--set`` items for every fold.
        group_by: as ``data.split.group_by`` (a dataset field, or a regex on file names).
        out: the folder (default ``runs/<recipe name>-cv``).
        n_jobs: folds at once, in local processes (joblib); each uses its share of the cores.
            Negative as in joblib: -1 is one per core, -2 all cores but one.
        scheduler: a Dask scheduler's address: the folds run on that cluster instead.

    Returns:
        What ``cv_summary.json`` holds: per fold its scores, and per split and metric the mean
        and standard deviation.
    """
    return run_cv(recipe_path, folds=folds, overrides=overrides, group_by=group_by, out=out, n_jobs=n_jobs,
                  scheduler=scheduler)[1]


def run_cv(recipe_path: str | Path, *, folds: int, overrides: list[str] | None = None, group_by: str | None = None,
           out: str | Path | None = None, n_jobs: int = 2, scheduler: str | None = None) -> tuple[Path, dict[str, Any]]:
    """:func:`cross_validate`, and the folder it used (``torchrig cv`` prints it)."""
    from ._recipe import load_recipe

    overrides = list(overrides or [])
    if group_by:
        overrides.append(f"data.split.group_by={json.dumps(group_by)}")
    if folds < 2:
        raise TorchrigError(f"--folds must be at least 2, got {folds}.")
    if n_jobs == 0:
        raise TorchrigError("--jobs (n_jobs) must not be 0: give the folds to run at once, or -1 for one per core.")
    if n_jobs < 0:  # joblib's convention: -1 all cores, -2 all but one, ...
        n_jobs = max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    recipe = load_recipe(recipe_path, [*overrides, f"data.split.folds={folds}", "data.split.fold=1"])
    _check_folds(recipe)  # a bad --folds or group_by fails here, before any worker starts
    out = Path(out) if out is not None else Path("runs") / f"{recipe['name']}-cv"
    out.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(1, folds + 1) if not (out / f"fold-{i}" / SUMMARY).is_file()]
    for i in todo:  # an interrupted fold starts again (its state may be from another set of folds)
        _clear(out / f"fold-{i}")
    if todo:
        _run_folds(str(recipe_path), overrides, todo, folds, out, n_jobs, scheduler)
    summary = summarize([json.loads((out / f"fold-{i}" / SUMMARY).read_text()) for i in range(1, folds + 1)])
    atomic_write(out / CV_SUMMARY, json.dumps(summary, indent=2).encode())
    return out, summary


def _check_folds(recipe: Any) -> None:
    from ._data import build_splits

    build_splits(recipe)


def _clear(folder: Path) -> None:
    import shutil

    if folder.exists():
        shutil.rmtree(folder)


def _run_folds(recipe_path: str, overrides: list[str], todo: list[int], folds: int, out: Path, n_jobs: int,
               scheduler: str | None) -> None:
    """The folds on a Dask cluster, in this process (one job), or on ``n_jobs`` local slots."""
    from joblib import Parallel, delayed, parallel_backend

    if scheduler is not None:  # the cluster's workers: one fold each, their own threads
        try:
            from dask.distributed import Client
        except ImportError:
            raise TorchrigError("--scheduler needs Dask: pip install 'torchrig[cluster]'.") from None
        with Client(scheduler), parallel_backend("dask"):
            Parallel(n_jobs=-1)(delayed(_fold_run)(recipe_path, overrides, i, folds, str(out / f"fold-{i}"), 1)
                                for i in todo)
        return
    jobs = max(1, min(n_jobs, len(todo)))
    if jobs == 1:
        for i in todo:  # in this process, all cores: no worker start-up, and errors as they are
            _fold_run(recipe_path, overrides, i, folds, str(out / f"fold-{i}"), os.cpu_count() or 1)
        return
    _run_slots(recipe_path, overrides, todo, folds, out, jobs)


def _run_slots(recipe_path: str, overrides: list[str], todo: list[int], folds: int, out: Path, jobs: int) -> None:
    """``jobs`` folds at a time: this process trains folds itself, alongside ``jobs - 1`` joblib
    (loky) worker processes, and each slot takes the next fold as soon as it is free. So the
    first fold starts at once instead of after the workers have imported torch (seconds each),
    and no slot idles while another still has folds queued.

    A fold gets its share of the cores: ``cores // jobs`` while every slot is busy, more when
    fewer folds are left than slots (the last fold alone gets them all)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from joblib.externals.loky import get_reusable_executor

    cores, lock = os.cpu_count() or 1, threading.Lock()
    pending, running = list(todo), [0]
    workers = get_reusable_executor(max_workers=jobs - 1)  # they start importing now

    def slot(here: bool) -> None:
        while True:
            with lock:
                if not pending:
                    return
                fold = pending.pop(0)
                running[0] += 1
                threads = max(1, cores // min(jobs, running[0] + len(pending)))
            call = (recipe_path, overrides, fold, folds, str(out / f"fold-{fold}"), threads)
            try:
                _fold_run(*call) if here else workers.submit(_fold_run, *call).result()
            except BaseException:
                with lock:
                    pending.clear()  # the other slots finish their fold and stop
                raise
            finally:
                with lock:
                    running[0] -= 1

    threads_before = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(jobs, thread_name_prefix="torchrig-cv") as pool:
            for done in [pool.submit(slot, i == 0) for i in range(jobs)]:
                done.result()
    finally:
        torch.set_num_threads(threads_before)


def summarize(fold_summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per fold its scores; per split and metric the mean and (sample) standard deviation."""
    folds = [{split: s[split] for split in ("val", "test") if isinstance(s.get(split), dict)} for s in fold_summaries]
    stats: dict[str, dict[str, dict[str, float]]] = {}
    for split in ("val", "test"):
        names = list(dict.fromkeys(k for f in folds for k in f.get(split, {})))
        for name in names:
            values = [f[split][name] for f in folds if name in f.get(split, {})]
            stats.setdefault(split, {})[name] = {
                "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return {"folds": folds, "summary": stats}


def format_cv(summary: dict[str, Any]) -> str:
    """A table: one row per split, one column per metric, ``mean ± std``."""
    lines = []
    for split, metrics in summary["summary"].items():
        if not lines:
            lines.append("split".ljust(7) + "".join(m.ljust(20) for m in metrics))
        cells = [f"{v['mean']:.4f} ± {v['std']:.4f}" if math.isfinite(v["mean"]) else "-" for v in metrics.values()]
        lines.append(split.ljust(7) + "".join(c.ljust(20) for c in cells))
    return "\n".join(lines)
