"""One epoch of a tiny local Transformers text classifier through ``torchrig.Trainer`` against a
hand-written loop over the same batches (target: ratio <= 1.05).

The model is a 2-layer BERT (width 64) with a WordPiece tokenizer trained here on fortunes-like
text (tests/plugins/text/hf_models.py makes it; nothing downloads). Both sides get the same
pre-tokenized batches (dicts of ``input_ids`` / ``attention_mask``, padded per batch by
``text/hf_tokenizer``), so only the loops differ: the plain one calls ``model(**inputs).logits``,
the Trainer takes the dict and the output object as they come. Epochs alternate (plain, trainer,
...) on one thread; medians. Both sides start from one seed: their final weights must be equal.

    python benchmarks/hf_overhead.py [--repeats 9] [--check]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

import torchrig

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests/plugins/text"), str(REPO / "benchmarks")]
from hf_models import make_tiny_bert  # noqa: E402
from overhead import make_trainer, timed  # noqa: E402

TARGET = 1.05


def texts(n: int = 512) -> tuple[list[str], list[int]]:
    """Sentences of two made-up topics (labels 0, 1), 6-30 words each, from a seeded generator."""
    import random

    rng = random.Random(0)
    words = [["kernel", "compiler", "memory", "process", "thread", "file", "network", "bug", "code", "disk"],
             ["bread", "cheese", "wine", "soup", "apple", "salt", "garlic", "oven", "butter", "honey"]]
    common = ["the", "a", "is", "and", "of", "with", "to", "was", "very", "not"]
    out, labels = [], []
    for i in range(n):
        label = i % 2
        out.append(" ".join(rng.choice(words[label] + common) for _ in range(rng.randint(6, 30))))
        labels.append(label)
    return out, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--check", action="store_true", help="exit 1 when the ratio misses 1.05 or parity")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from transformers import AutoModelForSequenceClassification

    corpus, labels = texts()
    folder = make_tiny_bert(Path(tempfile.mkdtemp(prefix="hf-overhead-")) / "bert", corpus, hidden=64, layers=2,
                            vocab_size=200)
    tok = torchrig.get_transform("text/hf_tokenizer", checkpoint=str(folder), max_len=64)
    batches = [tok.collate_fn(list(zip(corpus[i:i + 16], labels[i:i + 16]))) for i in range(0, len(corpus), 16)]
    device = torch.device("cpu")

    def side() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        return model, torch.optim.AdamW(model.parameters(), lr=1e-3)

    (plain, plain_opt), (rig, rig_opt) = side(), side()
    loss_fn = torch.nn.CrossEntropyLoss()
    trainer = make_trainer(device)

    epoch = {"plain": 0, "rig": 0}  # each side's epoch k draws the same dropout masks: torch.manual_seed(k)

    def plain_epoch() -> None:
        torch.manual_seed(epoch["plain"])
        epoch["plain"] += 1
        plain.train()
        for inputs, y in batches:
            plain_opt.zero_grad()
            loss = loss_fn(plain(**inputs).logits, y)
            loss.backward()
            plain_opt.step()
            loss.item()

    def rig_epoch() -> None:
        torch.manual_seed(epoch["rig"])
        epoch["rig"] += 1
        trainer.fit(rig, batches, loss_fn, rig_opt)

    times = [(timed(plain_epoch, device), timed(rig_epoch, device)) for _ in range(args.warmup + args.repeats)]
    times = times[args.warmup:]
    parity = all(map(torch.equal, plain.parameters(), rig.parameters()))
    mp, mt = statistics.median(p for p, _ in times), statistics.median(t for _, t in times)
    ratio = mt / mp
    print(f"tiny BERT (2 layers, width 64), {len(batches)} batches of 16, 1 thread, {args.repeats} timed epochs per "
          f"side: plain {mp * 1e3:.1f} ms, Trainer {mt * 1e3:.1f} ms per epoch; ratio {ratio:.3f} (target <= "
          f"{TARGET}); per-pair median {statistics.median(t / p for p, t in times):.3f}; weights "
          f"{'equal' if parity else 'DIFFER'}")
    return 1 if args.check and not (parity and ratio <= TARGET) else 0


if __name__ == "__main__":
    sys.exit(main())
