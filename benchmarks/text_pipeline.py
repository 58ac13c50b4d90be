"""Texts per second through tokenize -> ids -> pad: the text plugin's pipeline (HF tokenizers,
batch path) as a ratio of a plain Python ``str.split`` + dict lookup + ``pad_sequence`` loop.

Same texts (Debian's fortunes if installed, else generated sentences), same vocabulary size,
same process, alternating, medians compared. Target: >= 2x.

Run: ``python benchmarks/text_pipeline.py [--texts 20000] [--repeats 7]``
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import Counter
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

import torchrig
from torchrig_text import Encoder


def corpus(n: int) -> list[str]:
    root = Path("/usr/share/games/fortunes")
    texts: list[str] = []
    if (root / "computers").is_file():
        for name in ("computers", "people", "definitions", "cookie", "science", "politics"):
            texts += [t.strip() for t in (root / name).read_text(errors="replace").split("\n%\n") if t.strip()]
    else:
        rng = random.Random(0)
        words = [f"word{i}" for i in range(5000)]
        texts = [" ".join(rng.choices(words, k=rng.randint(5, 80))) + "." for _ in range(5000)]
    return (texts * (n // len(texts) + 1))[:n]


def plain(texts: list[str], stoi: dict[str, int], unk: int, batch: int) -> int:
    """The hand-written loop: split, look up, pad, batch by batch."""
    total = 0
    for i in range(0, len(texts), batch):
        ids = [torch.tensor([stoi.get(w, unk) for w in t.lower().split()][:256] or [unk]) for t in texts[i:i + batch]]
        total += pad_sequence(ids, batch_first=True, padding_value=0).numel()
    return total


def plugin(texts: list[str], enc: Encoder, batch: int) -> int:
    total = 0
    for i in range(0, len(texts), batch):
        ids = enc.encode_batch(texts[i:i + batch])
        total += pad_sequence(ids, batch_first=True, padding_value=enc.pad_id).numel()
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--check", action="store_true", help="exit 1 if the ratio misses 2.0")
    args = parser.parse_args()
    texts = corpus(args.texts)
    enc = Encoder("whitespace", max_len=256).fit(t.lower() for t in texts[:5000])
    counts = Counter(w for t in texts[:5000] for w in t.lower().split())
    stoi = {w: i + 4 for i, (w, _) in enumerate(counts.most_common())}
    lowered = [t.lower() for t in texts]  # both sides get lower-cased text: the same work
    times: dict[str, list[float]] = {"plugin": [], "plain": []}
    for _ in range(args.repeats):
        for name in ("plain", "plugin"):
            start = time.perf_counter()
            plugin(lowered, enc, args.batch) if name == "plugin" else plain(lowered, stoi, 1, args.batch)
            times[name].append(time.perf_counter() - start)
    rate = {k: args.texts / statistics.median(v) for k, v in times.items()}
    ratio = rate["plugin"] / rate["plain"]
    print(f"torch threads {torch.get_num_threads()}, {args.texts} texts, batch {args.batch}, torchrig {torchrig.__version__}")
    for k, r in rate.items():
        print(f"{k:<7} {r:10.0f} texts/s")
    print(f"ratio plugin / plain = {ratio:.2f}x  (target >= 2x: {'PASS' if ratio >= 2 else 'FAIL'})")
    return 1 if args.check and ratio < 2 else 0


if __name__ == "__main__":
    raise SystemExit(main())
