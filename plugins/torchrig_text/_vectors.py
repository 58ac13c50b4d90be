"""Pretrained word vectors (torchtext's ``Vectors`` / ``GloVe`` role), aligned to a vocabulary.

Files are streamed: only the rows of tokens in the vocabulary are parsed and kept, so a 1 GB file
costs about ``len(vocab) * dim * 4`` bytes, not the file's size. Formats, told apart by content:

- GloVe ``.txt``: ``word v1 v2 ...`` per line, no header;
- word2vec text and fastText ``.vec``: the same after a ``count dim`` header line;
- word2vec binary (``.bin``): a ``count dim`` header, then per word its UTF-8 bytes, a space and
  ``dim`` little-endian float32;
- any of these gzipped (``.gz``).
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

import torchrig

from ._vocab import DEFAULT_SPECIALS

__all__ = ["AlignedVectors", "load_vectors"]

_FASTTEXT_MAGIC = 793712314  # the first int32 of a fastText .bin model (not a vectors file)


@dataclass
class AlignedVectors:
    """Word vectors in vocabulary order, as :func:`load_vectors` returns them.

    Attributes:
        vectors: ``(len(tokens), dim)`` float32; rows of tokens not found are zero.
        found: ``(len(tokens),)`` bool, True where the file had the token.
        path: the file read.
        counted: how many tokens the coverage counts (the specials ``<pad>``, ``<unk>``,
            ``<bos>``, ``<eos>`` are not in vectors files and are left out).
    """

    vectors: torch.Tensor
    found: torch.Tensor
    path: Path
    counted: int
    covered: int = 0
    specials: list[int] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __str__(self) -> str:
        return (f"vectors: {self.covered:,} of {self.counted:,} vocabulary tokens found in {self.path.name} "
                f"({100 * self.covered / max(self.counted, 1):.1f}%, dim {self.dim})")


def load_vectors(path: str | os.PathLike, tokens: Sequence[str], *, dim: int | None = None) -> AlignedVectors:
    """Read a word-vectors file and align it to ``tokens`` (a vocabulary's ``itos``).

    Args:
        path: a GloVe ``.txt``, word2vec text or binary, or fastText ``.vec`` file (or ``.gz``).
        tokens: the vocabulary, in id order.
        dim: the dimension the caller needs (a model's ``embed_dim``); a file of another
            dimension is an error that names both.

    Returns:
        :class:`AlignedVectors`: the matrix, which rows were found, and the coverage.

    Raises:
        TorchrigError: a missing, empty, non-UTF-8 or malformed file (with ``file:line``), a
            dimension other than ``dim``, or no vocabulary token found at all.

    Example::

        aligned = load_vectors("glove.6B.100d.txt", encoder.vocab.get_itos(), dim=100)
        print(aligned)   # vectors: 31,204 of 33,100 vocabulary tokens found in glove.6B.100d.txt (...)
        embedding = nn.Embedding.from_pretrained(aligned.vectors, freeze=False)
    """
    path = Path(os.path.expanduser(os.fspath(path)))
    if not path.is_file():
        raise torchrig.TorchrigError(f"No word-vectors file at {str(path)!r}. Give a GloVe .txt, word2vec .txt/.bin "
                                     "or fastText .vec file.")
    index: dict[str, list[int]] = {}
    for i, token in enumerate(tokens):
        index.setdefault(token, []).append(i)
    with _open(path) as f:
        head = f.read(4)
        f.seek(0)
        if len(head) == 4 and int.from_bytes(head, "little") == _FASTTEXT_MAGIC:
            raise torchrig.TorchrigError(f"{str(path)!r} is a fastText .bin model, not a vectors file. Use the .vec "
                                         "file fastText ships beside it (same name, text format).")
        binary = path.name.lower().removesuffix(".gz").endswith(".bin")
        rows = _read_binary(f, path) if binary else _read_text(f, path)
        matrix: np.ndarray | None = None
        found = np.zeros(len(tokens), dtype=bool)
        for word, values, where, file_dim in rows:
            if matrix is None:
                if dim is not None and file_dim != dim:
                    raise torchrig.TorchrigError(
                        f"{where}: the vectors in {path.name} have dimension {file_dim}, but the model's embed_dim "
                        f"is {dim}. Set the model's embed_dim: {file_dim}, or use a {dim}-dimensional file.")
                matrix = np.zeros((len(tokens), file_dim), dtype=np.float32)
            ids = index.get(word)
            if ids is None:
                continue
            vector = values()
            for i in ids:
                if not found[i]:  # the first occurrence wins, as in gensim and torchtext
                    matrix[i], found[i] = vector, True
    if matrix is None:
        raise torchrig.TorchrigError(f"The word-vectors file {str(path)!r} holds no vectors (it is empty or has only a "
                                     "header). Check that the download finished.")
    specials = [i for i, t in enumerate(tokens) if t in DEFAULT_SPECIALS]
    counted = len(tokens) - len(specials)
    covered = int(found.sum()) - int(found[specials].sum())
    if covered == 0 and counted > 0:
        sample = ", ".join(repr(t) for t in tokens[len(specials):len(specials) + 5])
        raise torchrig.TorchrigError(
            f"None of the {counted:,} vocabulary tokens is in {str(path)!r} (the vocabulary has e.g. {sample}). "
            "Use a tokenizer that splits text as the vectors were made (GloVe: lowercase words, basic_english).")
    return AlignedVectors(torch.from_numpy(matrix), torch.from_numpy(found), path, counted, covered, specials)


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb", buffering=1 << 20)


def _header(first: bytes) -> tuple[int, int] | None:
    """``count dim`` (word2vec / fastText), or None (GloVe has no header)."""
    parts = first.split()
    if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
        return int(parts[0]), int(parts[1])
    return None


def _word(raw: bytes, path: Path, line: int | str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise torchrig.TorchrigError(f"{path}:{line}: the word-vectors file is not UTF-8 text ({raw[:30]!r}). "
                                     "Re-save it as UTF-8 (e.g. iconv -t UTF-8).") from None


def _read_text(f: IO[bytes], path: Path) -> Iterator[tuple[str, Any, str, int]]:
    """Yield ``(word, parse, "file:line", dim)``; ``parse()`` turns the numbers into floats only
    for the rows the vocabulary needs (most of a large file is skipped unparsed)."""
    dim: int | None = None
    for number, line in enumerate(f, 1):
        line = line.rstrip()
        if not line:
            continue
        if number == 1 and (header := _header(line)) is not None:
            dim = header[1]
            continue
        fields = line.count(b" ")
        if dim is None:
            dim = fields
        where = f"{path}:{number}"
        if fields < dim or dim < 1:
            raise torchrig.TorchrigError(f"{where}: expected a word and {dim} numbers, found {fields}. The file is "
                                         "truncated or not a word-vectors file.")
        # a word may itself hold spaces (GloVe 840B has some): the last `dim` fields are the vector
        if fields == dim:
            raw, numbers = line.split(b" ", 1)
        else:
            raw, *values = line.rsplit(b" ", dim)
            numbers = b" ".join(values)
        yield _word(raw, path, number), _parser(numbers, where, dim), where, dim


def _parser(numbers: bytes, where: str, dim: int) -> Any:
    def parse() -> np.ndarray:
        try:
            values = np.array(numbers.split(), dtype=np.float32)
        except ValueError as exc:
            raise torchrig.TorchrigError(f"{where}: not a number ({exc}). The file is corrupt.") from None
        if not np.isfinite(values).all():
            raise torchrig.TorchrigError(f"{where}: the vector holds inf or nan. The file is corrupt.")
        return values
    return parse


def _read_binary(f: IO[bytes], path: Path) -> Iterator[tuple[str, Any, str, int]]:
    """word2vec's binary format, read in 1 MB blocks (never the whole file)."""
    header = _header(f.readline())
    if header is None:
        raise torchrig.TorchrigError(f"{path}:1: a word2vec .bin file starts with a 'count dim' line; this one does "
                                     "not. Is it a text file? Rename it to .txt.")
    count, dim = header
    width = 4 * dim
    buffer, pos = b"", 0
    for n in range(1, count + 1):
        while True:  # the word runs up to a space; refill the buffer as needed
            space = buffer.find(b" ", pos)
            if space >= 0 and len(buffer) - space - 1 >= width:
                break
            more = f.read(1 << 20)
            if not more:
                raise torchrig.TorchrigError(f"{path}: word {n} of {count} is cut short; the file is truncated. "
                                             "Download it again.")
            buffer, pos = buffer[pos:] + more, 0
        raw = buffer[pos:space].lstrip(b"\n")  # the C tool ends each vector with a newline
        block = buffer[space + 1: space + 1 + width]
        pos = space + 1 + width
        where = f"{path}:word {n}"

        def parse(block: bytes = block, where: str = where) -> np.ndarray:
            values = np.frombuffer(block, dtype="<f4").astype(np.float32)
            if not np.isfinite(values).all():
                raise torchrig.TorchrigError(f"{where}: the vector holds inf or nan. The file is corrupt.")
            return values
        yield _word(raw, path, f"word {n}"), parse, where, dim


def init_embedding(weight: torch.Tensor, aligned: AlignedVectors, pad_id: int | None) -> None:
    """Copy the found vectors into an embedding matrix; tokens not found get a small random vector
    (normal, the found vectors' standard deviation), and padding stays zero."""
    found = aligned.found
    std = float(aligned.vectors[found].std()) if int(found.sum()) > 1 else 0.1
    with torch.no_grad():
        weight.normal_(0.0, std if math.isfinite(std) and std > 0 else 0.1)
        weight[found] = aligned.vectors[found].to(weight.dtype)
        if pad_id is not None and 0 <= pad_id < weight.shape[0]:
            weight[pad_id].zero_()
