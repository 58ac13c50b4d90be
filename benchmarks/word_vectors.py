"""Pretrained word vectors vs. random embeddings, on a small labelled split of real text.

No pretrained vectors can be downloaded here, so this makes vectors that carry real information:
word2vec (gensim, skip-gram) trained on a large local corpus that holds none of the labelled texts:
the English manual pages the machine ships (``/usr/share/man/man*``, roff stripped) and the
fortunes of every category *not* being classified. Then ``recipes/text/fortunes.yaml`` (8
categories) with only 20% of the fortunes for training, from scratch and with ``model.vectors``,
over seeds; both print. Also the reader's cost: the peak memory of aligning a 10,000-token
vocabulary to a large synthetic file, against the file's size (it streams: it must not hold the file).

    pip install gensim            # test/benchmark-only dependency
    python benchmarks/word_vectors.py [--seeds 3] [--models embedding_bag cnn] [--out DIR]

Needs Debian's fortunes (``apt-get install fortunes``) and man pages.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORTUNES = Path("/usr/share/games/fortunes")
_ROFF = re.compile(r"\\f[BIRP]|\\f\(..|\\\(..|\\[-&|^e]|\\s[+-]?\d|\\\*.")


def corpus(labelled: set[str]) -> list[str]:
    """Text lines, one paragraph-ish unit each: man pages and the fortunes not being classified."""
    lines: list[str] = []
    for page in sorted(Path("/usr/share/man").glob("man[1-8]/*.gz")):
        try:
            text = gzip.open(page, "rt", encoding="utf-8", errors="replace").read()
        except (OSError, EOFError):
            continue
        lines += [_ROFF.sub("", s) for s in text.splitlines() if s and not s.startswith((".", "'"))]
    for path in sorted(FORTUNES.iterdir()):
        if path.suffix or path.name in labelled or not path.is_file():
            continue
        lines += path.read_text(encoding="utf-8", errors="replace").split("\n%\n")
    return lines


def train_vectors(out: Path, labelled: set[str]) -> Path:
    from gensim.models import Word2Vec

    import torchrig

    tokenize = torchrig.get_transform("text/basic_english")  # as the recipe tokenizes
    sentences = [t for t in map(tokenize, corpus(labelled)) if len(t) > 2]
    words = sum(map(len, sentences))
    print(f"corpus: {len(sentences):,} lines, {words:,} tokens (man pages + fortunes of other categories)",
          flush=True)
    model = Word2Vec(sentences, vector_size=100, window=5, min_count=3, sg=1, negative=10, epochs=5, workers=2,
                     seed=0)
    path = out / "local-word2vec.vec"
    model.wv.save_word2vec_format(str(path))
    print(f"vectors: {len(model.wv):,} words x 100 -> {path} ({path.stat().st_size / 1e6:.0f} MB)", flush=True)
    return path


def train(out: Path, *overrides: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)  # a run left by an earlier call of this benchmark
    sets = [a for o in overrides for a in ("--set", o)]
    result = subprocess.run([sys.executable, "-m", "torchrig", "train", str(REPO / "recipes/text/fortunes.yaml"),
                             "--out", str(out), "--quiet", *sets], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return json.loads((out / "summary.json").read_text())


def reader_memory(work: Path) -> None:
    """Peak RSS of aligning 10,000 tokens to a 400,000-word file, measured in a fresh process."""
    big = work / "big.txt"
    if not big.is_file():
        import numpy as np

        rng = np.random.default_rng(0)
        with open(big, "w", encoding="utf-8") as f:
            for start in range(0, 400_000, 10_000):
                rows = rng.standard_normal((10_000, 100)).astype(np.float32)
                f.writelines(f"w{start + i} " + " ".join(f"{x:.5f}" for x in row) + "\n" for i, row in enumerate(rows))
    # Linux: writing 5 to clear_refs resets the peak (VmHWM), so the imports' peak does not hide the read's
    code = (
        "import re, sys, time\n"
        "from torchrig_text._vectors import load_vectors\n"
        "def kb(key): return int(re.search(key + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
        "tokens = ['<pad>', '<unk>'] + [f'w{i}' for i in range(0, 400_000, 40)]\n"
        "open('/proc/self/clear_refs', 'w').write('5'); before = kb('VmRSS')\n"
        "t = time.perf_counter(); a = load_vectors(sys.argv[1], tokens, dim=100); t = time.perf_counter() - t\n"
        "print(a.covered, (kb('VmHWM') - before) * 1024, t)\n"
    )
    covered, grew, seconds = subprocess.run([sys.executable, "-c", code, str(big)], capture_output=True, text=True,
                                            check=True).stdout.split()
    size = big.stat().st_size
    print(f"reader: file {size / 1e6:.0f} MB, 400,000 words x 100; aligned {int(covered):,} tokens in "
          f"{float(seconds):.1f} s; peak RSS grew {float(grew) / 1e6:.1f} MB = {float(grew) / size:.3f} x the file "
          f"(the kept matrix alone: {10_002 * 100 * 4 / 1e6:.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["embedding_bag", "cnn"])
    parser.add_argument("--out", help="keep the vectors and runs here (default: a temporary folder)")
    args = parser.parse_args()
    if not FORTUNES.is_dir():
        raise SystemExit("needs Debian's fortunes: apt-get install fortunes")
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="word-vectors-"))
    work.mkdir(parents=True, exist_ok=True)
    from torchrig_text._datasets import DEFAULT_CATEGORIES

    vectors = work / "local-word2vec.vec"
    if not vectors.is_file():
        vectors = train_vectors(work, set(DEFAULT_CATEGORIES))
    common = ("data.split.val=0.1", "data.split.test=0.7", "model.embed_dim=100")
    for model in args.models:
        scratch, pretrained, coverage = [], [], ""
        for seed in range(args.seeds):
            base = (*common, f"seed={seed}", f"model.name=text/{model}")
            scratch.append(train(work / f"{model}-scratch-{seed}", *base)["test"]["accuracy"])
            summary = train(work / f"{model}-vectors-{seed}", *base, f"model.vectors={vectors}")
            pretrained.append(summary["test"]["accuracy"])
            coverage = summary["init"]["message"]
            print(f"text/{model} seed {seed}: random init {scratch[-1]:.3f}, word vectors {pretrained[-1]:.3f}",
                  flush=True)
        print(f"text/{model}, fortunes (8 categories, 20% for training), test accuracy, mean of {args.seeds} seeds: "
              f"random init {statistics.mean(scratch):.3f}, pretrained vectors {statistics.mean(pretrained):.3f} "
              f"({100 * (statistics.mean(pretrained) - statistics.mean(scratch)):+.1f} points); {coverage}", flush=True)
    reader_memory(work)


if __name__ == "__main__":
    main()
