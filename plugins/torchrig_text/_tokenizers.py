"""Tokenizers: rule-based (basic_english, whitespace, char) and trained (bpe, wordpiece).

The rule-based ones are plain Python on purpose: ``str.split`` and a few compiled regular
expressions are C code, and measured here they split word-level text about twice as fast as a
Hugging Face ``tokenizers`` pipeline doing the same (benchmarks/text_pipeline.py).
``basic_english`` is torchtext's own rules, so it gives exactly torchtext's tokens. Subword
tokenizers (bpe, wordpiece) are learned and run with Hugging Face ``tokenizers``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import torchrig

from ._plugin import plugin
from ._vocab import DEFAULT_SPECIALS

# torchtext.data.utils._basic_english_normalize, applied in this order after lower-casing.
_BASIC_ENGLISH = [(re.compile(p), r) for p, r in [
    (r"\'", " '  "), (r"\"", ""), (r"\.", " . "), (r"<br \/>", " "), (r",", " , "), (r"\(", " ( "),
    (r"\)", " ) "), (r"\!", " ! "), (r"\?", " ? "), (r"\;", " "), (r"\:", " "), (r"\s+", " ")]]


def _basic_english(text: str) -> list[str]:
    text = text.lower()
    for pattern, replacement in _BASIC_ENGLISH:
        text = pattern.sub(replacement, text)
    return text.split()


class RuleTokenizer:
    """Split text into tokens with fixed rules; ``tokenize`` one text or ``tokenize_batch`` many."""

    trainable = False

    def __init__(self, name: str, split: Callable[[str], list[str]]) -> None:
        self.name, self._split = name, split

    def __call__(self, text: str) -> list[str]:
        return self._split(text)

    def tokenize(self, text: str) -> list[str]:
        return self._split(text)

    def tokenize_batch(self, texts: Iterable[str]) -> list[list[str]]:
        return list(map(self._split, texts))

    def __reduce__(self) -> tuple[Any, ...]:  # picklable for DataLoader workers (spawn) and sklearn
        return (_RULES[self.name], ())

    def rules(self) -> dict[str, Any]:
        """The rules as data, for a caller of an exported model to tokenize as training did."""
        if self.name == "basic_english":
            return {"name": self.name, "lowercase": True, "then": "apply each [regex, replacement] in order",
                    "replace": [[p.pattern, r] for p, r in _BASIC_ENGLISH], "split": "whitespace"}
        return {"name": self.name, "split": "whitespace" if self.name == "whitespace" else "characters"}

    def __repr__(self) -> str:
        return f"text/{self.name}"


@plugin.transform
def basic_english() -> RuleTokenizer:
    """Lower-case, split off punctuation, split on whitespace: torchtext's ``basic_english``."""
    return RuleTokenizer("basic_english", _basic_english)


@plugin.transform
def whitespace() -> RuleTokenizer:
    """Split on whitespace only (``str.split``); case and punctuation are kept."""
    return RuleTokenizer("whitespace", str.split)


@plugin.transform
def char() -> RuleTokenizer:
    """One token per character (spaces included)."""
    return RuleTokenizer("char", list)


_RULES = {"basic_english": basic_english, "whitespace": whitespace, "char": char}


class TrainedTokenizer:
    """A subword tokenizer (BPE or WordPiece) learned from the training texts with HF tokenizers."""

    trainable = True

    def __init__(self, kind: str, vocab_size: int, min_frequency: int, lowercase: bool) -> None:
        self.kind, self.vocab_size, self.min_frequency, self.lowercase = kind, vocab_size, min_frequency, lowercase
        self.tokenizer: Any = None  # a tokenizers.Tokenizer once fitted

    def fit(self, texts: Iterable[str], specials: Iterable[str] = DEFAULT_SPECIALS) -> None:
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

        unk = "<unk>"
        if self.kind == "bpe":
            tok = Tokenizer(models.BPE(unk_token=unk))
            trainer = trainers.BpeTrainer(vocab_size=self.vocab_size, min_frequency=self.min_frequency,
                                          special_tokens=list(specials), show_progress=False)
        else:
            tok = Tokenizer(models.WordPiece(unk_token=unk))
            trainer = trainers.WordPieceTrainer(vocab_size=self.vocab_size, min_frequency=self.min_frequency,
                                                special_tokens=list(specials), show_progress=False)
        if self.lowercase:
            tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits()])
        tok.train_from_iterator(texts, trainer=trainer)
        self.tokenizer = tok

    def state_dict(self) -> dict[str, Any]:
        """The trained subword model as JSON (what a run dir keeps in fitted.json)."""
        if self.tokenizer is None:
            raise torchrig.TorchrigError(f"text/{self.kind} is not fitted: call fit(train_texts) first.")
        return {"subword_model": self.tokenizer.to_str()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(state["subword_model"])

    def __call__(self, text: str) -> list[str]:
        return self.tokenize(text)

    def rules(self) -> dict[str, Any]:
        """The trained subword model as data: a Hugging Face ``tokenizers`` JSON document."""
        return {"name": self.kind, "tokenizers_json": self.state_dict()["subword_model"]}

    def tokenize(self, text: str) -> list[str]:
        if self.tokenizer is None:
            raise RuntimeError(f"text/{self.kind} must be fitted on training texts first")
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def __repr__(self) -> str:
        return f"text/{self.kind}"


@plugin.transform
def bpe(*, vocab_size: int = 8000, min_frequency: int = 2, lowercase: bool = True) -> TrainedTokenizer:
    """Byte-pair encoding learned on the training split (HF tokenizers, offline)."""
    return TrainedTokenizer("bpe", vocab_size, min_frequency, lowercase)


@plugin.transform
def wordpiece(*, vocab_size: int = 8000, min_frequency: int = 2, lowercase: bool = True) -> TrainedTokenizer:
    """WordPiece (BERT-style subwords) learned on the training split (HF tokenizers, offline)."""
    return TrainedTokenizer("wordpiece", vocab_size, min_frequency, lowercase)
