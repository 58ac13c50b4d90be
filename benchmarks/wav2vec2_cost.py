"""What ``audio/wav2vec2`` costs at inference on a CPU: the base bundle's architecture
(WAV2VEC2_BASE, ~95M parameters, random weights: the cost does not depend on them), eval mode,
``torch.no_grad``, on 1 s of 16 kHz audio.

Two figures, in one process, medians over repeats:

1. Seconds per clip: one forward pass of one 1 s clip (its inverse: clips per second; the
   seconds themselves are the real-time factor).
2. Batching: 8 clips one by one vs one batch of the same 8 clips; the ratio is (one by one) /
   (batch), > 1 when batching pays.

All three measurements alternate within each repeat, so drift in the machine's speed (other
processes) hits them alike; the per-repeat ratios and the spread are printed too.

Run: ``python benchmarks/wav2vec2_cost.py [--repeats 7] [--threads N] [--bundle WAV2VEC2_BASE]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import torchrig


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--bundle", default="WAV2VEC2_BASE")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchrig.get_model("audio/wav2vec2", num_classes=10, bundle=args.bundle).eval()
    params = sum(p.numel() for p in model.parameters())
    clips = torch.randn(args.batch, 1, 16000) * 0.1
    lengths = torch.full((args.batch,), 16000)

    def one_by_one() -> None:
        for i in range(args.batch):
            model(clips[i:i + 1], lengths[i:i + 1])

    def batched() -> None:
        model(clips, lengths)

    with torch.no_grad():
        batched()  # warm-up: allocator, kernels
        one_by_one()
        single, singles, batches = [], [], []
        for _ in range(args.repeats):  # the three measurements alternate: drift hits each alike
            single.append(seconds(model, clips[:1], lengths[:1]))
            singles.append(seconds(one_by_one))
            batches.append(seconds(batched))

    per_clip = statistics.median(single)
    s, b = statistics.median(singles), statistics.median(batches)
    print(f"audio/wav2vec2 bundle={args.bundle} ({params / 1e6:.1f}M parameters), CPU, {args.threads} thread(s), "
          f"eval + no_grad, 1 s of 16 kHz audio per clip, medians of {args.repeats}")
    print(f"  one clip:                      {per_clip * 1000:8.1f} ms  ({1 / per_clip:.1f} clips/s, "
          f"real-time factor {per_clip:.3f})")
    print(f"  {args.batch} clips one by one:            {s * 1000:8.1f} ms  ({s / args.batch * 1000:.1f} ms per clip)")
    print(f"  {args.batch} clips in one batch:          {b * 1000:8.1f} ms  ({b / args.batch * 1000:.1f} ms per clip)")
    print(f"  ratio one-by-one / batch:      {s / b:8.2f}x  (>1: batching is faster; per repeat "
          f"{min(x / y for x, y in zip(singles, batches)):.2f}-{max(x / y for x, y in zip(singles, batches)):.2f}x)")
    print(f"  spread of one clip over repeats: {min(single) * 1000:.1f}-{max(single) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
