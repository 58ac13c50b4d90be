"""Predict latency of an exported model in onnxruntime against torch eager, in one process.

For small_cnn (a 1x16x16 digit, as recipes/vision/digits.yaml), mel_cnn (1 s clips at 16 kHz,
with lengths) and embedding_bag (64-token texts, a 10,000-word vocabulary, with lengths), at batch
1 and batch 32: each side runs `--calls` forward passes per round, the rounds alternate (torch,
ORT, torch, ...), and the medians are compared. Both sides use the same number of threads
(--threads, default 1). Prints milliseconds per call and the ratio ORT / torch (below 1: ORT
is faster).

    python benchmarks/export_latency.py [--threads 1] [--rounds 7] [--calls 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import torchrig


def cases(batch: int) -> dict[str, tuple[torch.nn.Module, object]]:
    g = torch.Generator().manual_seed(0)
    clips = torch.randn(batch, 1, 16000, generator=g) * 0.1
    ids = torch.randint(4, 10000, (batch, 64), generator=g)
    full = lambda n: torch.full((batch,), n, dtype=torch.long)  # noqa: E731
    return {
        "vision/small_cnn": (torchrig.get_model("vision/small_cnn", num_classes=10, in_channels=1, width=32),
                             torch.rand(batch, 1, 16, 16, generator=g)),
        "audio/mel_cnn": (torchrig.get_model("audio/mel_cnn", num_classes=10), (clips, full(16000))),
        "text/embedding_bag": (torchrig.get_model("text/embedding_bag", vocab_size=10000, num_classes=8),
                               (ids, full(64))),
    }


def timed(call, args, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call(*args)
    return (time.perf_counter() - start) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    print(f"threads {args.threads}; median of {args.rounds} alternating rounds of {args.calls} calls")
    print(f"{'model':<20}{'batch':>6}{'torch ms':>11}{'ORT ms':>9}{'ORT/torch':>11}")
    with tempfile.TemporaryDirectory() as folder:
        for name, (model, example) in cases(4).items():
            path = Path(folder) / f"{name.replace('/', '_')}.onnx"
            model.eval()
            spec = torchrig.export_model(model, example, path, format="onnx")
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            names = [i["name"] for i in spec["inputs"]]
            for batch in (1, 32):
                _, inputs = cases(batch)[name]
                tensors = list(inputs) if isinstance(inputs, tuple) else [inputs]
                feed = {n: t.numpy() for n, t in zip(names, tensors)}

                def eager(*xs):
                    with torch.inference_mode():
                        return model(*xs)

                def onnx():
                    return session.run(None, feed)

                eager(*tensors), onnx()  # warm-up
                sides = {"torch": [], "ort": []}
                for _ in range(args.rounds):
                    sides["torch"].append(timed(eager, tensors, args.calls))
                    sides["ort"].append(timed(onnx, (), args.calls))
                t, o = statistics.median(sides["torch"]), statistics.median(sides["ort"])
                print(f"{name:<20}{batch:>6}{t:>11.3f}{o:>9.3f}{o / t:>11.3f}")


if __name__ == "__main__":
    main()
