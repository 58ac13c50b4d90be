"""Per-epoch overhead of ``torchrig.Trainer.fit`` against the hand-written PyTorch loop.

Both sides train the same model on the same data (scikit-learn's digits) in one process on one
thread, alternating epoch by epoch (plain, trainer, ...); a timed epoch is train plus validation.
The Trainer keeps its default callbacks (progress bar forced on, rendering to ``os.devnull``) and
computes ``metrics=["accuracy"]``. Both sides start from one seed, so their final parameters must
be bit-identical (parity).

Run from the repository root::

    python benchmarks/overhead.py                  # print the table, exit 0
    python benchmarks/overhead.py --check          # exit 1 if a case misses its target or parity
    python benchmarks/overhead.py --repeats 30 --device cuda
    python benchmarks/overhead.py --device cuda --precision 16-mixed --target 1.03 --check

Mixed precision (``--precision bf16-mixed`` or ``16-mixed``): the plain side is then PyTorch's
own AMP recipe, written by hand: forward and loss under ``torch.autocast(device_type, dtype)``
(validation too), and for ``16-mixed`` a ``torch.amp.GradScaler`` with
``scaler.scale(loss).backward()``, ``scaler.step(optimizer)``, ``scaler.update()``. The Trainer
side gets ``precision=...``. ``16-mixed`` needs CUDA (the Trainer refuses fp16 on the CPU);
``bf16-mixed`` also runs on the CPU. The plain side builds a new GradScaler each epoch because
the benchmark calls ``Trainer.fit`` once per epoch and each ``fit`` starts its own GradScaler
(scale 65536): with one scaler for the whole run, an overflowing step would change the loss
scale on one side only and the weights would part for that reason alone.

Parity on CUDA: both sides run with deterministic algorithms (``torch.use_deterministic_algorithms``
with ``warn_only``, ``cudnn.deterministic``, ``CUBLAS_WORKSPACE_CONFIG=:4096:8``), in every
precision, and parity stays judged. Chosen over reporting parity as informational: without it,
cuDNN's backward kernels (atomic adds) can make two runs of the *same* hand-written loop differ,
so a difference would say nothing; with it, the two sides run the same kernels in the same order
and any difference is something the Trainer computes differently (an extra cast, a different
step order, a scaler out of step). The cost falls on both sides alike (kernel choice), except
that torchmetrics swaps ``bincount`` for a few tiny kernels where the Trainer's metrics use it:
it can only make the Trainer look slower. An op with no deterministic CUDA kernel warns (naming
the op) instead of failing. The CPU runs as before: single-threaded CPU
kernels are deterministic already.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torchrig

SEED = 0


def mlp() -> nn.Module:
    """MLP 64-64-10 on flat 8x8 digits: per-step overhead dominates."""
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def cnn() -> nn.Module:
    """Two conv layers (16, 32 channels) with pooling and a linear head, for 1x32x32 inputs."""
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 8 * 8, 10))


@dataclass
class Case:
    """One benchmark: a model builder, its inputs, batch size and the ratio to stay under."""

    name: str
    build: Callable[[], nn.Module]
    image: bool  # True: (N, 1, 32, 32) images; False: (N, 64) vectors
    batch_size: int
    target: float


CASES = {"a": Case("(a) mlp digits b32", mlp, image=False, batch_size=32, target=1.03),
         "b": Case("(b) cnn digits32 b64", cnn, image=True, batch_size=64, target=1.01)}


def load_data(image: bool) -> tuple[TensorDataset, TensorDataset]:
    """Digits scaled to [0, 1] as float32, split 80/20 (stratified) into train and val."""
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16
    y = torch.tensor(digits.target, dtype=torch.long)
    if image:  # upsampled once, up front: both sides then read the same ready tensors
        x = F.interpolate(x.view(-1, 1, 8, 8), size=(32, 32), mode="bilinear", align_corners=False)
    train, val = map(torch.tensor, train_test_split(range(len(y)), test_size=0.2, random_state=SEED,
                                                    stratify=y.numpy()))
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])


class Side:
    """One side's own model, optimizer and loaders, all built from the same seed."""

    def __init__(self, case: Case, data: tuple[TensorDataset, ...], device: torch.device) -> None:
        # The shuffle gets its own generator: both sides interleave on one global RNG.
        generator = torchrig.seed_everything(SEED)
        self.model = case.build().to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.loss_fn = nn.CrossEntropyLoss()
        self.train_loader = DataLoader(data[0], batch_size=case.batch_size, shuffle=True,
                                       generator=generator)
        self.val_loader = DataLoader(data[1], batch_size=case.batch_size)


def plain_epoch(side: Side, device: torch.device) -> tuple[float, float, float]:
    """The tutorial loop: train one epoch, then validate by hand.

    Returns:
        ``(train_loss, val_loss, val_accuracy)``.
    """
    model, optimizer, loss_fn = side.model, side.optimizer, side.loss_fn
    model.train()
    total, count = 0.0, 0
    for x, y in side.train_loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)
        count += len(y)
    model.eval()
    val_total, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for x, y in side.val_loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            val_total += loss_fn(out, y).item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
    return total / count, val_total / seen, correct / seen


DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def amp_epoch(side: Side, device: torch.device, dtype: torch.dtype) -> tuple[float, float, float]:
    """The tutorial loop with PyTorch's AMP recipe: autocast, and a GradScaler for float16.

    Returns:
        ``(train_loss, val_loss, val_accuracy)``.
    """
    model, optimizer, loss_fn = side.model, side.optimizer, side.loss_fn
    # A new scaler per epoch, as each Trainer.fit call makes one (see the module docstring).
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    model.train()
    total, count = 0.0, 0
    for x, y in side.train_loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=dtype):
            loss = loss_fn(model(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        total += loss.item() * len(y)
        count += len(y)
    model.eval()
    val_total, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for x, y in side.val_loader:
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, dtype=dtype):
                out = model(x)
                val_total += loss_fn(out, y).item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
    return total / count, val_total / seen, correct / seen


def make_trainer(device: torch.device, precision: str = "32") -> torchrig.Trainer:
    """A default Trainer whose progress bar really renders (to /dev/null), TTY or not."""
    # precision given explicitly, like the plain loop ("auto" would pick bf16-mixed on a CUDA device).
    trainer = torchrig.Trainer(max_epochs=1, device=device, precision=precision, progress_bar=True)
    bar = next(cb for cb in trainer.callbacks if isinstance(cb, torchrig.ProgressBar))
    bar.bar, bar.file = True, open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    return trainer


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds taken by ``fn()``, after a GC pass, with the device synchronized."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def run_case(case: Case, device: torch.device, warmup: int, repeats: int, precision: str = "32",
             target: float | None = None) -> dict[str, Any]:
    """Time ``warmup + repeats`` alternating epochs per side, then check parity.

    Args:
        precision: ``"32"`` (the plain loop) or a mixed precision (the AMP loop, :func:`amp_epoch`).
        target: the ratio to stay under (default: the case's own).

    Returns:
        One row of the report.
    """
    data = load_data(case.image)
    plain, rig = Side(case, data, device), Side(case, data, device)
    trainer = make_trainer(device, precision)
    target = case.target if target is None else target
    if precision == "32":
        plain_side = lambda: plain_epoch(plain, device)  # noqa: E731
    else:
        plain_side = lambda: amp_epoch(plain, device, DTYPES[precision])  # noqa: E731

    def trainer_epoch() -> None:
        trainer.fit(rig.model, rig.train_loader, rig.loss_fn, rig.optimizer,
                    val_loader=rig.val_loader, metrics=["accuracy"])

    gc.collect()
    gc.freeze()  # the GC passes between epochs then skip the imported world: short, equal
    times = [(timed(plain_side, device), timed(trainer_epoch, device))
             for _ in range(warmup + repeats)][warmup:]  # alternating: plain, trainer, plain, ...
    gc.unfreeze()
    parity = all(map(torch.equal, plain.model.parameters(), rig.model.parameters()))
    mp, mt = statistics.median(p for p, _ in times), statistics.median(t for _, t in times)
    steps = len(plain.train_loader)
    return {"case": case.name, "steps": steps, "plain_ms": mp * 1e3, "rig_ms": mt * 1e3,
            "ratio": mt / mp, "pairs": statistics.median(t / p for p, t in times),
            "us_step": (mt - mp) * 1e6 / steps, "target": target, "parity": parity,
            "ok": parity and mt / mp <= target}


def deterministic_cuda() -> None:
    """Deterministic kernels for the CUDA comparison (the module docstring says why)."""
    # cuBLAS reads this when its handle is created: before the first CUDA matmul.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def main(argv: list[str] | None = None) -> int:
    """Run the cases and print the table.

    Returns:
        The exit status: 0, or 1 with ``--check`` when a case misses its target or parity.
    """
    parser = argparse.ArgumentParser(description="Trainer.fit vs the hand-written loop, per epoch.")
    parser.add_argument("--repeats", type=int, default=15, help="timed epochs per side per case")
    parser.add_argument("--warmup", type=int, default=3, help="untimed epochs per side first")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--cases", default="ab", help="cases to run, e.g. 'a' (default: ab)")
    parser.add_argument("--check", action="store_true", help="exit 1 on a missed target or parity")
    parser.add_argument("--precision", default="32", choices=("32", *DTYPES),
                        help="32 (default): the plain loop; bf16-mixed or 16-mixed: the hand-written "
                             "autocast (+ GradScaler) loop against Trainer(precision=...)")
    parser.add_argument("--target", type=float, help="ratio to stay under for every case "
                                                      "(default: each case's own)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device here (torch.cuda.is_available() is False); "
                     "use --device cpu")
    if args.precision == "16-mixed" and device.type != "cuda":
        parser.error(f"--precision 16-mixed needs a CUDA device (float16 autocast with a GradScaler; the "
                     f"Trainer refuses it on {device.type}). Use --device cuda, or --precision bf16-mixed.")
    torch.set_num_threads(1)
    notes = ""
    if args.precision != "32":
        notes += f", precision {args.precision}"
    if device.type == "cuda":
        deterministic_cuda()
        notes += ", deterministic algorithms"
    rows = [run_case(CASES[c], device, args.warmup, args.repeats, args.precision, args.target)
            for c in args.cases]
    print(f"torch {torch.__version__}, torchrig {torchrig.__version__}, {args.device}, 1 thread, "
          f"{args.warmup} warm-up + {args.repeats} timed epochs per side{notes}")
    print(f"{'case':<22}{'steps':>6}{'plain ms':>10}{'rig ms':>9}{'ratio':>8}{'pairs':>8}"
          f"{'us/step':>9}{'target':>8}  {'parity':<7}result")
    for r in rows:
        print(f"{r['case']:<22}{r['steps']:>6}{r['plain_ms']:>10.2f}{r['rig_ms']:>9.2f}"
              f"{r['ratio']:>8.3f}{r['pairs']:>8.3f}{r['us_step']:>+9.1f}{r['target']:>8.2f}  "
              f"{'equal' if r['parity'] else 'DIFFER':<7}{'PASS' if r['ok'] else 'FAIL'}")
    print("ratio: median(trainer) / median(plain) ms per epoch (judged); pairs: median of the "
          "per-pair ratios; us/step: the median gap per train step")
    return 1 if args.check and not all(r["ok"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
