"""One writer per run dir: `train` holds an flock on RUN/.lock; a second `train` (or `--resume`)
into the same dir exits at once naming the process; readers still work while it trains; a
SIGKILLed run leaves no stale lock (the kernel releases flock)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from torchrig._cli import main
from torchrig._files import RunLock

RECIPE = """\
name: locked
seed: 0
data:
  dataset: {name: vision/digits, size: 16}
  split: {val: 0.2, test: 0.2}
  batch_size: 16
model: {name: vision/small_cnn, width: 16}
optimizer: {name: sgd, lr: 0.05}
metrics: [accuracy]
trainer: {max_epochs: 200, device: cpu, precision: "32"}
"""


def _wait_for(condition, what: str, proc: subprocess.Popen, limit: float = 300.0) -> None:
    """Poll until ``condition()``; fail if the training process ended first (a generous limit
    only turns a hang into a failure, it times nothing)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert proc.poll() is None, f"training ended before {what}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"no {what} after {limit:.0f} s"
        time.sleep(0.2)


def test_a_run_in_use_refuses_a_second_writer_serves_readers_and_survives_sigkill(tmp_path, capsys):
    (tmp_path / "r.yaml").write_text(RECIPE)
    run = tmp_path / "same"
    proc = subprocess.Popen([sys.executable, "-m", "torchrig", "train", "r.yaml", "--out", str(run), "--quiet"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    try:
        _wait_for(lambda: (run / "weights.safetensors").is_file(), "a finished epoch", proc)
        for extra in ([], ["--resume"]):
            capsys.readouterr()
            assert main(["train", str(tmp_path / "r.yaml"), "--out", str(run), *extra]) == 2
            err = capsys.readouterr().err
            assert f"{run} is in use by process {proc.pid} (started " in err, err
        assert main(["evaluate", str(run), "--split", "val"]) == 0  # a reader: the last complete checkpoint
        assert main(["report", str(run)]) == 0
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    epochs = len(list(csv.DictReader((run / "metrics.csv").open())))
    capsys.readouterr()
    # the kernel dropped the killed process's lock: resume goes ahead (one more epoch)
    assert main(["train", str(tmp_path / "r.yaml"), "--out", str(run), "--resume", "--quiet",
                 "--set", f"trainer.max_epochs={epochs + 1}"]) == 0, capsys.readouterr().err
    assert len(list(csv.DictReader((run / "metrics.csv").open()))) == epochs + 1


def test_the_lock_is_exclusive_between_processes_and_released_on_exit(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom torchrig._files import RunLock\n"
                               "lock = RunLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(600)",
                               str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Exception, match=f"in use by process {holder.pid}"):
            RunLock(tmp_path / "run").acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path / "run"):
        assert f"process {os.getpid()}" in (tmp_path / "run" / ".lock").read_text()
    assert Path(tmp_path / "run" / ".lock").exists()  # the file stays; only the flock matters
