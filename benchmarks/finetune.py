"""Fine-tuning costs, each as a ratio against a baseline run in the same process.

(a) One epoch of ResNet-18 at 128 px with the backbone frozen (``torchrig.FineTune``, the head
    alone trains) against one epoch training everything: frozen computes no backbone gradients.
    Target: frozen at least 1.5x faster.
(b) Loading cached named weights: ``torchrig.get_model("vision/resnet18", weights="DEFAULT")``
    against torchvision's own ``resnet18(weights=ResNet18_Weights.DEFAULT)``. The "cached" file
    is a random state_dict written where torchvision looks, in a temporary TORCH_HOME (nothing
    downloads). Target: ratio at most 1.2.

The two sides alternate and each ratio is the median over repeats.

    python benchmarks/finetune.py [--repeats 5] [--batches 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch import nn

import torchrig


def epoch_time(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], frozen: bool,
               device: torch.device) -> float:
    """One training epoch over ``batches`` through the Trainer, the backbone frozen or not."""
    finetune = torchrig.FineTune(freeze_epochs=1 if frozen else 0, backbone_lr_scale=0.1)
    optimizer = torch.optim.SGD(finetune.param_groups(model, lr=0.01), momentum=0.9)
    trainer = torchrig.Trainer(max_epochs=1, device=device, precision="32", progress_bar=False, callbacks=[finetune])
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    trainer.fit(model, batches, nn.CrossEntropyLoss(), optimizer)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def load_times(repeats: int) -> list[float]:
    """Per repeat: torchrig's load time / torchvision's, alternating which goes first."""
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    ratios = []
    with tempfile.TemporaryDirectory() as home:
        os.environ["TORCH_HOME"] = home
        cache = Path(home) / "hub" / "checkpoints"
        cache.mkdir(parents=True)
        torch.save(torchvision.models.resnet18().state_dict(), cache / Path(weights.url).name)
        torchrig.get_model("vision/resnet18", weights="DEFAULT")  # warm: plugin loading, imports
        torchvision.models.resnet18(weights=weights)
        for i in range(repeats):
            times = {}
            for side in (("ours", "theirs") if i % 2 == 0 else ("theirs", "ours")):
                started = time.perf_counter()
                if side == "ours":
                    torchrig.get_model("vision/resnet18", weights="DEFAULT")
                else:
                    torchvision.models.resnet18(weights=weights)
                times[side] = time.perf_counter() - started
            ratios.append(times["ours"] / times["theirs"])
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=8, help="batches of 16 images per timed epoch")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    batches = [(torch.randn(16, 3, 128, 128), torch.randint(0, 2, (16,))) for _ in range(args.batches)]
    model = torchrig.get_model("vision/resnet18", num_classes=2)
    epoch_time(model, batches[:2], False, device)  # warm-up
    full, frozen = [], []
    for i in range(args.repeats):
        for side in ((False, True) if i % 2 == 0 else (True, False)):
            (frozen if side else full).append(epoch_time(model, batches, side, device))
    ratios = [a / b for a, b in zip(full, frozen)]
    print(f"(a) ResNet-18, 128 px, {args.batches} x 16 images on {device}: full epoch {statistics.median(full):.2f} s, "
          f"frozen backbone {statistics.median(frozen):.2f} s; frozen is {statistics.median(ratios):.2f}x faster "
          "(target >= 1.5)")
    loads = load_times(max(args.repeats, 7))
    print(f"(b) cached DEFAULT weights: torchrig.get_model / torchvision resnet18(weights=...) = "
          f"{statistics.median(loads):.3f} (median of {len(loads)}; target <= 1.2)")


if __name__ == "__main__":
    main()
