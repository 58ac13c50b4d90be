"""Texts per second through tokenize -> ids -> pad: the text plugin's batch path
(``Encoder.encode_padded``, what ``text/encode``'s collate runs) as a ratio of a plain Python
``str.split`` + dict lookup + ``pad_sequence`` loop.

Same texts (Debian's fortunes if installed, else generated sentences), same tokens (whitespace
split of lower-cased text), same process, alternating, medians compared. Target: >= 2x.

For information it also times the other tokenizers' batch paths against the same plain loop:
``basic_english`` (torchtext's regular expressions: more work per text than ``str.split``) and
``bpe`` (a subword model run by Hugging Face ``tokenizers``, in Rust, on every core).

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
    """The plugin's batch path: one padded (B, T) tensor and the lengths per batch."""
    total = 0
    for i in range(0, len(texts), batch):
        ids, _ = enc.encode_padded(texts[i:i + batch])
        total += ids.numel()
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--check", action="store_true", help="exit 1 if the ratio misses 2.0")
    args = parser.parse_args()
    texts = corpus(args.texts)
    lowered = [t.lower() for t in texts]  # both sides get lower-cased text: the same work
    counts = Counter(w for t in lowered[:5000] for w in t.split())
    stoi = {w: i + 4 for i, (w, _) in enumerate(counts.most_common())}
    encoders = {
        "plugin": Encoder("whitespace", max_len=256).fit(lowered[:5000]),
        "basic_english": Encoder("basic_english", max_len=256).fit(lowered[:5000]),
        "bpe (HF)": Encoder({"name": "bpe", "vocab_size": 8000}, max_len=256).fit(lowered[:5000]),
    }
    same = encoders["plugin"].encode_padded(lowered[:64])[0]
    reference = plain_batch(lowered[:64], encoders["plugin"].vocab.stoi)
    assert torch.equal(same, reference), "the plugin and the plain loop must give the same ids"
    times: dict[str, list[float]] = {"plain": [], **{k: [] for k in encoders}}
    for _ in range(args.repeats):
        for name in times:
            start = time.perf_counter()
            if name == "plain":
                plain(lowered, stoi, 1, args.batch)
            else:
                plugin(lowered, encoders[name], args.batch)
            times[name].append(time.perf_counter() - start)
    rate = {k: args.texts / statistics.median(v) for k, v in times.items()}
    print(f"torch threads {torch.get_num_threads()}, {args.texts} texts, batch {args.batch}, torchrig {torchrig.__version__}")
    for k, r in rate.items():
        print(f"{k:<14} {r:10.0f} texts/s   {r / rate['plain']:5.2f}x plain")
    ratio = rate["plugin"] / rate["plain"]
    print(f"ratio plugin (whitespace) / plain = {ratio:.2f}x  (target >= 2x: {'PASS' if ratio >= 2 else 'FAIL'})")
    return 1 if args.check and ratio < 2 else 0


def plain_batch(texts: list[str], stoi: dict[str, int]) -> torch.Tensor:
    ids = [torch.tensor([stoi.get(w, 1) for w in t.split()][:256] or [1]) for t in texts]
    return pad_sequence(ids, batch_first=True, padding_value=0)


if __name__ == "__main__":
    raise SystemExit(main())
