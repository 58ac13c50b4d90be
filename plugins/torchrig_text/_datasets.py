"""Datasets: your CSV/TSV/JSONL file or folder of .txt files, and Debian's fortunes corpus."""

from __future__ import annotations

import csv as csv_module
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

import torchrig

from ._plugin import plugin

log = logging.getLogger("torchrig.text")
FORTUNES = "/usr/share/games/fortunes"


class TextDataset(Dataset):
    """``(text, class index)`` pairs with ``classes``, ``targets`` and the ``skipped`` rows."""

    def __init__(self, texts: list[str], labels: list[str], classes: list[str] | None = None,
                 skipped: list[str] | None = None) -> None:
        self.classes = classes if classes is not None else sorted(set(labels))
        index = {c: i for i, c in enumerate(self.classes)}
        self.texts = texts
        self.targets = [index[label] for label in labels]
        self.skipped = skipped or []

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.texts[i], self.targets[i]

    def describe(self, i: int) -> str:
        """Sample ``i``'s text (for a run's top losses)."""
        return self.texts[i]

    def show(self, inputs: Any, ax: Any) -> None:
        """A sample as text: raw text as it is, token ids through no vocabulary (as numbers)."""
        torchrig.show_generic(inputs, ax)


def _read_rows(path: Path, fmt: str, encoding: str) -> list[tuple[int, Any]]:
    """(line number, row) pairs; undecodable bytes are kept as surrogates and found later."""
    text = path.read_bytes().decode(encoding, errors="surrogateescape")
    if fmt == "jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append((n, json.loads(line)))
            except json.JSONDecodeError as exc:
                rows.append((n, exc))
        return rows
    reader = csv_module.DictReader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",")
    rows = []
    try:
        for row in reader:
            rows.append((reader.line_num, row))
    except csv_module.Error as exc:  # a NUL byte, or a field over the csv module's 128 KiB
        raise torchrig.InputError(
            f"text/csv: {path}:{reader.line_num + 1}: cannot parse the {fmt.upper()} ({exc}). A binary file, or an "
            "unclosed quote that swallows the rest of the file? Fix the file, or pass the right one.") from None
    if reader.fieldnames is None:
        return []
    return rows


def _problem(row: Any, text_column: str, label_column: str) -> str | None:
    if isinstance(row, Exception):
        return f"not valid JSON ({row})"
    if not isinstance(row, dict):
        return f"expected an object with {text_column!r} and {label_column!r}, got {type(row).__name__}"
    text, label = row.get(text_column), row.get(label_column)
    if text is None:
        return f"no {text_column!r} value"
    if label is None or str(label).strip() == "":
        return f"no {label_column!r} value"
    if not isinstance(text, str):
        return f"the {text_column!r} value is a {type(text).__name__}, not text"
    if not text.strip():
        return f"the {text_column!r} value is empty"
    if any("\udc80" <= ch <= "\udcff" for ch in text + str(label)):
        return "bytes that are not valid in the file's encoding"
    return None


@plugin.dataset
def csv(*, path: str, text_column: str = "text", label_column: str = "label", format: str | None = None,
             encoding: str = "utf-8", on_error: str = "raise") -> Dataset:
    """Your own labelled texts in a CSV, TSV or JSONL file (one object per line).

    Args:
        path: the file.
        text_column, label_column: the column (or JSON key) names.
        format: "csv", "tsv" or "jsonl"; by default from the suffix.
        encoding: the file's text encoding (e.g. "latin-1" for old files).
        on_error: "raise" stops at a bad row (empty text, missing label, undecodable bytes) and
            names it; "skip" leaves such rows out and counts them in the run summary.
    """
    file = Path(os.path.expanduser(path))
    if not file.is_file():
        raise torchrig.InputError(f"text/csv: no file at {path!r}" + (" (it is a folder)." if file.is_dir() else "."))
    fmt = (format or file.suffix.lstrip(".")).lower()
    if fmt in ("json", "ndjson"):
        fmt = "jsonl"
    if fmt not in ("csv", "tsv", "jsonl"):
        raise torchrig.TorchrigError(f"text/csv: cannot tell the format of {path!r}; pass format: csv, tsv or jsonl.")
    torchrig.check_on_error(on_error, "text/csv")
    try:
        rows = _read_rows(file, fmt, encoding)
    except LookupError as exc:
        raise torchrig.TorchrigError(f"text/csv: unknown encoding {encoding!r}.") from exc
    if fmt != "jsonl" and rows and (text_column not in rows[0][1] or label_column not in rows[0][1]):
        columns = ", ".join(k for k in rows[0][1] if k is not None)
        raise torchrig.TorchrigError(f"text/csv: {path!r} has no column {text_column!r} or {label_column!r}; "
                                     f"its columns are: {columns}. Set text_column and label_column.")
    texts, labels, skipped = [], [], []
    for line, row in rows:
        problem = _problem(row, text_column, label_column)
        if problem is None:
            texts.append(row[text_column])
            labels.append(str(row[label_column]).strip())
        elif on_error == "skip":
            skipped.append(f"{path}:{line}")
            log.warning("skipping %s:%d: %s", path, line, problem)
        else:
            hint = f" Set encoding (e.g. encoding: latin-1) if the file is not {encoding}," if "bytes" in problem else ""
            raise torchrig.TorchrigError(f"text/csv: {path}:{line}: {problem}.{hint} Fix the row, or set "
                                         "on_error: skip to leave bad rows out.")
    if not texts:
        raise torchrig.TorchrigError(f"text/csv: {path!r} has no usable rows.")
    return TextDataset(texts, labels, skipped=skipped)


@plugin.dataset
def folder(*, root: str, split: str = "train", encoding: str = "utf-8", on_error: str = "raise") -> Dataset | None:
    """One folder per class of ``.txt`` files (``root/<class>/*.txt``), or with ``train``/``val``/
    ``test`` subfolders as the splits. Each file is one sample."""
    torchrig.check_on_error(on_error, "text/folder")
    found = torchrig.class_folder_files(root, split, (".txt",), component="text/folder")
    if found is None:
        return None  # no such split: the recipe carves it from train
    classes, files = found
    texts, labels, skipped = [], [], []
    for file, target in files:
        try:
            text = file.read_text(encoding=encoding)
            problem = None if text.strip() else "the file is empty"
            if "\x00" in text:
                problem = f"it holds {text.count(chr(0))} NUL byte(s): a binary file, not text"
        except UnicodeDecodeError as exc:
            problem = f"not {encoding} text ({exc.reason} at byte {exc.start})"
        except OSError as exc:  # a dangling link, a permission
            problem = f"it cannot be opened ({exc.strerror or exc})"
        if problem is None:
            texts.append(text)
            labels.append(classes[target])
        elif on_error == "skip":
            skipped.append(str(file))
            log.warning("skipping %s: %s", file, problem)
        else:
            raise torchrig.InputError(f"text/folder: {file}: {problem}. Fix or remove it, set encoding, "
                                      "or set on_error: skip.")
    if not texts:
        raise torchrig.TorchrigError(f"text/folder: no readable .txt file under {root!r}.")
    return TextDataset(texts, labels, classes=classes, skipped=skipped)


DEFAULT_CATEGORIES = ("computers", "food", "law", "medicine", "politics", "science", "songs-poems", "sports")


@plugin.dataset
def fortunes(*, categories: list[str] = list(DEFAULT_CATEGORIES), root: str = FORTUNES, min_chars: int = 20) -> Dataset:
    """Debian's ``fortunes`` corpus (real quotations and jokes, by category): classify a quote's
    category. Offline once installed: ``apt-get install fortunes``. No own splits: the recipe
    carves val and test (stratified).

    Args:
        categories: the category files to use; each is a class.
        root: where the category files are.
        min_chars: leave out shorter entries.
    """
    base = Path(root)
    if not base.is_dir():
        raise torchrig.TorchrigError(f"text/fortunes: {root} does not exist. Install the corpus: "
                                     "`sudo apt-get install fortunes` (Debian/Ubuntu), or pass root: to its folder.")
    texts, labels = [], []
    for category in categories:
        file = base / category
        if not file.is_file():
            have = sorted(p.name for p in base.iterdir() if p.is_file() and "." not in p.name)
            raise torchrig.TorchrigError(f"text/fortunes: no category {category!r} in {root}. "
                                         f"{torchrig.did_you_mean(category, have)} Available: {', '.join(have)}.")
        for entry in file.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            entry = entry.strip().strip("%").strip()
            if len(entry) >= min_chars:
                texts.append(entry)
                labels.append(category)
    return TextDataset(texts, labels, classes=list(categories))


@plugin.reader("-", ".txt")
def text(source: str, *, force: bool = False) -> str:
    """A line from stdin (``-``), or a whole ``.txt`` file as one text.

    Input that is not text (NUL bytes: a binary file; bytes that are not UTF-8) is refused with
    a message saying so; ``force`` (``torchrig predict --force``) classifies it anyway, with
    undecodable bytes replaced by U+FFFD.
    """
    if source.endswith(".txt") and os.path.isfile(source):
        data, what = Path(source).read_bytes(), repr(source)
    else:  # a line of stdin, read with undecodable bytes kept as surrogates
        data, what = source.encode("utf-8", errors="surrogateescape"), "a line of standard input"
    problem = torchrig.not_text(data)
    if problem is not None and not force:
        raise torchrig.InputError(f"{what} is not text: {problem}. Pass --force to classify it anyway.")
    return data.decode("utf-8", errors="replace")
