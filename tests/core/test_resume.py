"""Exact resume after a hard kill: SIGKILL (``kill -9``) or SIGINT (Ctrl-C) a training process at
random points, including in the middle of a checkpoint write, resume it, and check that

- every checkpoint file left behind after every kill is readable (never torn), and
- the run that was killed and resumed again and again ends with exactly the same weights (and the
  same per-epoch losses) as an uninterrupted run in a fresh interpreter.

Training runs in real processes. Paying ``import torch`` and torchmetrics (several seconds) for
each of the ~30 short runs would be too slow, so runs are forked from a "zygote" process that has
done those imports (and one warm-up epoch) once and then only waits for orders; each fork is a new
process that builds its data, model, optimizer and Trainer from scratch and resumes from the files
on disk, as a restarted script does. The uninterrupted reference of the "generator" variant is a
plain ``python train.py`` subprocess, so forked and fresh interpreters are checked to agree too.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import torchrig

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and POSIX signals"),
]

MAX_EPOCHS = 12
# how the train loader shuffles (see SCRIPT); "finetune" shuffles as "generator" does and trains
# with torchrig.FineTune: the head alone for 4 epochs, then everything (kills land in both phases);
# "swa" too, with stochastic weight averaging from epoch 6 (SWALR in place of the cosine, the
# average validated and checkpointed, the live weights in the checkpoint: kills land on both sides)
VARIANTS = ("generator", "global_rng", "finetune", "swa")
TIMEOUT = 120.0  # generous: a stuck run fails the test instead of hanging it

# The training script. `main(args)` is one run; `python train.py '<json args>'` runs it in a fresh
# interpreter, `python train.py --zygote` imports everything once and forks a run per order.
SCRIPT = r'''
import faulthandler, json, os, signal, sys, threading, traceback


def main(args):
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    import torchrig

    torch.set_num_threads(1)
    progress = os.open(args["progress"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    if args.get("crash"):
        install_crash(*args["crash"])

    class Progress(torchrig.Callback):  # tells the test where the run is: one byte per event
        def on_fit_start(self, trainer, **kwargs):
            os.write(progress, b"R")

        def on_train_epoch_start(self, trainer, epoch, **kwargs):
            os.write(progress, b"e")

    generator = torchrig.seed_everything(0)
    data = torch.load(args["data"], weights_only=True)
    X, y = data["X"], data["y"]
    train, val = TensorDataset(X[:1400], y[:1400]), TensorDataset(X[1400:], y[1400:])
    if args["variant"] in ("generator", "finetune", "swa"):  # the order comes from the loader's own generator
        train_loader = DataLoader(train, batch_size=64, shuffle=True, generator=generator)
        make_scheduler = lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args["epochs"])
    else:  # the shuffle order is drawn from the global torch RNG, shared with dropout
        train_loader = DataLoader(train, batch_size=64, shuffle=True)
        make_scheduler = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    val_loader = DataLoader(val, batch_size=200)
    model = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(64, 10))
    callbacks = [torchrig.EarlyStopping(patience=1000), Progress()]
    if args["variant"] == "swa":
        callbacks.append(torchrig.WeightAveraging("swa", start_epoch=6, lr=1e-3))
    if args["variant"] == "finetune":
        finetune = torchrig.FineTune(freeze_epochs=4, backbone_lr_scale=0.2)
        optimizer = torch.optim.AdamW(finetune.param_groups(model), lr=3e-3, weight_decay=1e-2)
        callbacks.append(finetune)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    trainer = torchrig.Trainer(
        max_epochs=args["epochs"], device="cpu", precision="32", checkpoint_dir=args["dir"],
        callbacks=callbacks,
    )
    trainer.fit(model, train_loader, nn.CrossEntropyLoss(), optimizer, val_loader=val_loader,
                scheduler=make_scheduler(optimizer), metrics=["accuracy"], resume=True)
    torchrig.save_weights(os.path.join(args["dir"], "final.safetensors"), model.state_dict())
    os.write(progress, b"D")


def install_crash(name, nth, how):
    """SIGKILL this process inside its nth atomic write of `name`: just before the temporary
    file is renamed over `name`, either complete ("full") or cut to half its bytes ("half", the
    state a kill in the middle of writing leaves)."""
    real_replace, count = os.replace, [0]

    def replace(src, dst, *a, **kw):
        if os.path.basename(os.fspath(dst)) == name:
            count[0] += 1
            if count[0] == nth:
                if how == "half":
                    os.truncate(src, os.path.getsize(src) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, *a, **kw)

    os.replace = replace


def zygote(warmup):
    # tqdm (the progress bar) guards its bars with a multiprocessing lock that forked runs would
    # share, so a run SIGKILLed while holding it would block all later ones; each run gets its
    # own lock below. And no tqdm monitor thread here, to be forked mid-flight.
    from tqdm.auto import tqdm

    tqdm.monitor_interval = 0
    main(warmup)  # pay the imports and first-use costs every run would pay, once
    for line in sys.stdin:
        cmd, _, rest = line.strip().partition(" ")
        if cmd == "start":
            args = json.loads(rest)
            pid = os.fork()
            if pid == 0:  # the child: one training run, then exit without returning here
                code = 1
                try:
                    log = os.open(args["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                    os.dup2(log, 1)
                    os.dup2(log, 2)
                    # Ctrl-C raises KeyboardInterrupt, even where the test runner's own parent
                    # ignores SIGINT (a shell's background job, some CI runners).
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    faulthandler.register(signal.SIGUSR1, all_threads=True)  # stacks, if stuck
                    tqdm.set_lock(threading.RLock())
                    main(args)
                    code = 0
                except KeyboardInterrupt:
                    traceback.print_exc()
                    code = 130
                except BaseException:
                    traceback.print_exc()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            reply = f"started {pid}"
        elif cmd == "poll":  # reap only when asked, so a pid we may still signal is never reused
            pid, status = os.waitpid(int(rest), os.WNOHANG)
            reply = "running" if pid == 0 else f"exited {os.waitstatus_to_exitcode(status)}"
        else:
            reply = f"error unknown command {cmd!r}"
        print(reply, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--zygote":
        zygote(json.loads(sys.argv[2]))
    else:
        main(json.loads(sys.argv[1]))
'''


class Zygote:
    """Forks training runs from a process that has already imported torch and torchmetrics."""

    def __init__(self, script: Path, warmup: dict) -> None:
        self.log = Path(warmup["log"])
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, str(script), "--zygote", json.dumps(warmup)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
        self.unreaped: set[int] = set()

    def _ask(self, line: str) -> list[str]:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().split()
        if not reply or reply[0] == "error":
            raise RuntimeError(f"the zygote failed ({reply}); its log:\n{self.log.read_text()[-3000:]}")
        return reply

    def start(self, args: dict) -> int:
        pid = int(self._ask("start " + json.dumps(args))[1])
        self.unreaped.add(pid)
        args["pid"] = pid
        return pid

    def poll(self, pid: int) -> int | None:
        reply = self._ask(f"poll {pid}")
        if reply[0] == "running":
            return None
        self.unreaped.discard(pid)
        return int(reply[1])

    def signal(self, pid: int, sig: int) -> None:
        if pid in self.unreaped:  # at worst a zombie: never a reused pid
            os.kill(pid, sig)

    def wait(self, args: dict, timeout: float = TIMEOUT) -> int:
        """Reap a run: its exit code (-N: killed by signal N)."""
        deadline = time.monotonic() + timeout
        while (code := self.poll(args["pid"])) is None:
            if time.monotonic() > deadline:
                self.stuck(args, "to finish")
            time.sleep(0.005)
        return code

    def wait_until(self, args: dict, condition, what: str, timeout: float = TIMEOUT) -> bool:
        """Poll ``condition()`` every ~ms; False if the run finished first."""
        deadline = time.monotonic() + timeout
        while not condition():
            if progress(args).endswith(b"D"):
                return False
            if time.monotonic() > deadline:
                self.stuck(args, what)
            time.sleep(0.001)
        return True

    def stuck(self, args: dict, what: str) -> None:
        self.signal(args["pid"], signal.SIGUSR1)  # faulthandler writes its stacks to the log
        time.sleep(1.0)
        raise TimeoutError(f"run {args['pid']} waited for {what} too long; its log:\n{log_of(args)}")

    def close(self) -> None:
        for pid in list(self.unreaped):
            self.signal(pid, signal.SIGKILL)
            while self.poll(pid) is None:
                time.sleep(0.005)
        self.proc.kill()  # it holds nothing worth a slow interpreter shutdown
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


class Rig:
    def __init__(self, root: Path, digits: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.root = root
        self.script = root / "train.py"
        self.script.write_text(SCRIPT)
        X, y = digits
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        self.data = root / "digits.pt"
        torch.save({"X": X[order].contiguous(), "y": y[order].contiguous()}, self.data)
        self.runs = 0
        # One uninterrupted reference runs in a fresh interpreter, alongside the zygote's start.
        self.fresh_reference = self.popen(self.args(root / "reference-generator", "generator"))
        warmup = self.args(root / "warmup", "generator")
        self.zygote = Zygote(self.script, {**warmup, "epochs": 1})
        self.references: dict[str, Path] = {}

    def args(self, ckpt_dir: Path, variant: str, crash: tuple | None = None) -> dict:
        self.runs += 1
        run = self.root / f"run{self.runs:03d}"
        return {"dir": str(ckpt_dir), "variant": variant, "epochs": MAX_EPOCHS, "data": str(self.data),
                "progress": f"{run}.progress", "log": f"{run}.log", "crash": crash}

    def popen(self, args: dict) -> subprocess.Popen:
        with open(args["log"], "wb") as log:
            return subprocess.Popen([sys.executable, str(self.script), json.dumps(args)],
                                    stdout=log, stderr=subprocess.STDOUT)

    def reference(self, variant: str) -> Path:
        """The checkpoint dir of an uninterrupted run."""
        if variant not in self.references:
            out = self.root / f"reference-{variant}"
            if variant == "generator":
                code = self.fresh_reference.wait(timeout=TIMEOUT)
                args = json.loads(self.fresh_reference.args[-1])
            else:
                args = self.args(out, variant)
                self.zygote.start(args)
                code = self.zygote.wait(args)
            assert code == 0, f"the reference run failed:\n{log_of(args)}"
            self.references[variant] = out
        return self.references[variant]

    def close(self) -> None:
        self.zygote.close()
        if self.fresh_reference.poll() is None:
            self.fresh_reference.kill()
            self.fresh_reference.wait()


@pytest.fixture(scope="module")
def rig(tmp_path_factory, digits):
    rig = Rig(tmp_path_factory.mktemp("resume"), digits)
    yield rig
    rig.close()


# ---------------------------------------------------------------------------- helpers


def log_of(args: dict) -> str:
    path = Path(args["log"])
    return path.read_text()[-4000:] if path.exists() else "(no log)"


def progress(args: dict) -> bytes:
    try:
        return Path(args["progress"]).read_bytes()
    except FileNotFoundError:
        return b""


def epochs_started(args: dict) -> int:
    return progress(args).count(b"e")


def temp_files(ckpt_dir: Path, name: str = "") -> set[str]:
    """The temporary files of atomic writes (``.NAME.<random>.tmp``) in ``ckpt_dir``."""
    if not ckpt_dir.is_dir():
        return set()
    return {p for p in os.listdir(ckpt_dir) if p.startswith(f".{name}") and p.endswith(".tmp")}


def check_checkpoint_files(ckpt_dir: Path) -> int:
    """Every file a kill may have been writing must be whole; returns the saved epoch."""
    epoch = 0
    state_path = ckpt_dir / "state.pt"
    if state_path.exists():
        state = torchrig.load_state(state_path)  # raises on a torn file
        epoch = state["epoch"]
        assert 1 <= epoch <= MAX_EPOCHS
        assert [row["epoch"] for row in state["history"]] == list(range(1, epoch + 1))
        assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    weights_path = ckpt_dir / "weights.safetensors"
    if weights_path.exists():
        weights = torchrig.load_weights(weights_path)  # raises on a torn file
        assert set(weights) >= {"0.weight", "0.bias", "4.weight", "4.bias"}
    csv_path = ckpt_dir / "metrics.csv"
    if csv_path.exists():
        rows = read_csv(csv_path)
        assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1))
    return epoch


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_same_results(resumed: Path, reference: Path) -> None:
    final, expected = torchrig.load_weights(resumed / "final.safetensors"), torchrig.load_weights(reference / "final.safetensors")
    assert final.keys() == expected.keys()
    differ = [k for k in expected if not torch.equal(final[k], expected[k])]
    assert not differ, f"final weights differ from the uninterrupted run's in {differ}"
    best, expected_best = torchrig.load_weights(resumed / "weights.safetensors"), torchrig.load_weights(reference / "weights.safetensors")
    assert all(torch.equal(best[k], expected_best[k]) for k in expected_best), "best weights differ"

    rows, expected_rows = read_csv(resumed / "metrics.csv"), read_csv(reference / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, MAX_EPOCHS + 1))
    for row, expected_row in zip(rows, expected_rows):  # same losses, lr and accuracy, bit for bit
        row.pop("time"), expected_row.pop("time")
        assert row == expected_row
    assert torchrig.load_state(resumed / "state.pt")["epoch"] == MAX_EPOCHS


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("variant", VARIANTS)
def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_weights(rig, variant):
    rng = random.Random(f"resume-{variant}")
    ckpt = rig.root / f"killed-{variant}"
    # (how to kill, what). Ordered so that the kills inside a given write come while that write
    # is still sure to happen (weights.safetensors is only rewritten when val_loss improves).
    plan = [
        ("soon", None),                             # while the run is still building / loading
        ("crash", ("weights.safetensors", 1, "half")),
        ("epoch", None),                            # at a random instant of a random epoch
        ("crash", ("state.pt", 1, "half")),
        ("tempfile", "state.pt"),                   # the moment the state's temp file appears
        ("crash", ("metrics.csv", rng.randint(1, 2), "full")),
        ("epoch", None),
        ("crash", ("state.pt", rng.randint(1, 2), "full")),  # written, not yet renamed
        ("tempfile", "weights.safetensors"),
        ("soon", None),
        ("epoch", None),
    ]
    saved, outcomes = 0, []
    for how, what in plan:
        args = rig.args(ckpt, variant, crash=what if how == "crash" else None)
        pid = rig.zygote.start(args)
        if how == "soon":
            time.sleep(rng.uniform(0.0, 0.02))
        elif how == "epoch":
            # Kill during this run's epoch `target` (2 to 4), a random fraction of the length of
            # the epoch before it (measured here) after it starts.
            target = min(rng.randint(2, 4), MAX_EPOCHS - saved)
            if target >= 2 and rig.zygote.wait_until(args, lambda: epochs_started(args) >= target - 1, "an epoch"):
                started = time.monotonic()
                if rig.zygote.wait_until(args, lambda: epochs_started(args) >= target, "the next epoch"):
                    time.sleep(rng.uniform(0.0, 1.0) * (time.monotonic() - started))
        elif how == "tempfile":
            before = temp_files(ckpt, what)  # left over from earlier kills
            rig.zygote.wait_until(args, lambda: temp_files(ckpt, what) - before, f"a temporary {what}")
        if how != "crash":
            rig.zygote.signal(pid, signal.SIGKILL)
        code = rig.zygote.wait(args)
        assert code in (0, -signal.SIGKILL), f"run ended with {code} after {how} {what}:\n{log_of(args)}"
        if how == "crash" and saved < MAX_EPOCHS - 2:
            assert code == -signal.SIGKILL, (
                f"the crash inside a write of {what[0]} never happened (it is injected at the "
                "os.replace of an atomic write: is the file still written to a temp file first?)")
        epoch = check_checkpoint_files(ckpt)
        assert epoch >= saved, f"the saved epoch went back from {saved} to {epoch}"
        saved = epoch
        outcomes.append((how, code, epoch))

    killed = [o for o in outcomes if o[1] == -signal.SIGKILL]
    assert len(killed) >= 5, f"too few runs were still training when killed: {outcomes}"

    args = rig.args(ckpt, variant)
    rig.zygote.start(args)
    code = rig.zygote.wait(args)
    assert code == 0, log_of(args)
    assert_same_results(ckpt, rig.reference(variant))


def test_ctrl_c_exits_cleanly_and_resume_gives_the_uninterrupted_weights(rig):
    rng = random.Random("resume-ctrl-c")
    ckpt = rig.root / "ctrl-c"

    # Ctrl-C somewhere in the third epoch.
    args = rig.args(ckpt, "generator")
    pid = rig.zygote.start(args)
    if rig.zygote.wait_until(args, lambda: epochs_started(args) >= 2, "epoch 2"):
        started = time.monotonic()
        rig.zygote.wait_until(args, lambda: epochs_started(args) >= 3, "epoch 3")
        time.sleep(rng.uniform(0.0, 1.0) * (time.monotonic() - started))
    rig.zygote.signal(pid, signal.SIGINT)
    code = rig.zygote.wait(args)
    log = log_of(args)
    assert code == 130, f"the run was not interrupted by KeyboardInterrupt:\n{log}"
    assert "resume=True" in log, log  # the trainer says how to continue
    assert b"D" not in progress(args)
    first = check_checkpoint_files(ckpt)
    assert 2 <= first < MAX_EPOCHS
    assert not temp_files(ckpt), "an interrupted write left its temporary file behind"

    # Ctrl-C again, aimed at a state write: the write is abandoned, the last state stays whole.
    args = rig.args(ckpt, "generator")
    pid = rig.zygote.start(args)
    rig.zygote.wait_until(args, lambda: temp_files(ckpt, "state.pt"), "a temporary state.pt")
    rig.zygote.signal(pid, signal.SIGINT)
    code = rig.zygote.wait(args)
    log = log_of(args)
    assert code in (0, 130), log  # 0: the run had finished before the signal came
    if code == 130:
        assert "KeyboardInterrupt" in log, log
    assert check_checkpoint_files(ckpt) >= first
    # (No check for a left-over temp file here: a Ctrl-C in the few bytecodes between mkstemp()
    # and atomic_write's try: block would leave one, and this signal is aimed at that moment.)

    args = rig.args(ckpt, "generator")
    rig.zygote.start(args)
    code = rig.zygote.wait(args)
    assert code == 0, log_of(args)
    assert_same_results(ckpt, rig.reference("generator"))


def test_resuming_another_models_checkpoint_names_it(digit_loaders, tmp_path):
    """README's Trainer example once resumed the Quickstart's CNN checkpoint into an MLP: a wall of
    load_state_dict keys. Now: the checkpoint, the model it came from, the first differing keys."""
    import torch
    from torch import nn

    import torchrig

    train_loader, val_loader = digit_loaders

    class Wide(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

        def forward(self, x):
            return self.body(x)

    first = Wide()
    torchrig.Trainer(max_epochs=1, checkpoint_dir=tmp_path, progress_bar=False).fit(
        first, train_loader, nn.CrossEntropyLoss(), torch.optim.SGD(first.parameters(), lr=0.1))
    other = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    with pytest.raises(torchrig.TorchrigError) as caught:
        torchrig.Trainer(max_epochs=2, checkpoint_dir=tmp_path, progress_bar=False).fit(
            other, train_loader, nn.CrossEntropyLoss(), torch.optim.SGD(other.parameters(), lr=0.1), resume=True)
    message = str(caught.value)
    assert f"Cannot resume from '{tmp_path / 'state.pt'}': it was saved from " in message
    assert "test_resume.test_resuming_another_models_checkpoint_names_it.<locals>.Wide" in message
    assert "does not fit this torch.nn.modules.container.Sequential" in message
    assert "0.weight, 0.bias, 2.weight" in message and "checkpoint folder of its own" in message
    same = Wide()  # the right model still resumes
    torchrig.Trainer(max_epochs=2, checkpoint_dir=tmp_path, progress_bar=False).fit(
        same, train_loader, nn.CrossEntropyLoss(), torch.optim.SGD(same.parameters(), lr=0.1), resume=True)
