"""Tokenizers: rule-based (basic_english, whitespace, char) and trained (bpe, wordpiece).

Rule-based ones run as Hugging Face ``tokenizers`` pipelines (Rust), so a batch of texts is
split in one call; ``basic_english`` reproduces torchtext's rules exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

from ._plugin import plugin
from ._vocab import DEFAULT_SPECIALS

# torchtext.data.utils._basic_english_normalize, applied in this order after lower-casing.
_BASIC_ENGLISH = [(r"\'", " '  "), (r"\"", ""), (r"\.", " . "), (r"<br \/>", " "), (r",", " , "),
                  (r"\(", " ( "), (r"\)", " ) "), (r"\!", " ! "), (r"\?", " ? "), (r"\;", " "),
                  (r"\:", " "), (r"\s+", " ")]


class RuleTokenizer:
    """Split text into tokens with fixed rules; ``tokenize`` one text or ``tokenize_batch`` many."""

    trainable = False

    def __init__(self, name: str, normalizer: Any, pre_tokenizer: Any) -> None:
        self.name = name
        self.normalizer, self.pre_tokenizer = normalizer, pre_tokenizer

    def __call__(self, text: str) -> list[str]:
        return self.tokenize(text)

    def tokenize(self, text: str) -> list[str]:
        if self.normalizer is not None:
            text = self.normalizer.normalize_str(text)
        return [piece for piece, _ in self.pre_tokenizer.pre_tokenize_str(text)]

    def tokenize_batch(self, texts: list[str]) -> list[list[str]]:
        return [self.tokenize(t) for t in texts]

    def word_level(self, vocab: dict[str, int], unk: str) -> Tokenizer:
        """A Rust pipeline that maps texts straight to ids with ``vocab`` (the fast batch path)."""
        tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
        if self.normalizer is not None:
            tok.normalizer = self.normalizer
        tok.pre_tokenizer = self.pre_tokenizer
        return tok

    def __repr__(self) -> str:
        return f"text/{self.name}"


@plugin.transform
def basic_english() -> RuleTokenizer:
    """Lower-case, split off punctuation, split on whitespace: torchtext's ``basic_english``."""
    steps = [normalizers.Lowercase()] + [normalizers.Replace(Regex(p), r) for p, r in _BASIC_ENGLISH]
    return RuleTokenizer("basic_english", normalizers.Sequence(steps), pre_tokenizers.WhitespaceSplit())


@plugin.transform
def whitespace() -> RuleTokenizer:
    """Split on whitespace only (``str.split``); case and punctuation are kept."""
    return RuleTokenizer("whitespace", None, pre_tokenizers.WhitespaceSplit())


@plugin.transform
def char() -> RuleTokenizer:
    """One token per character (spaces included)."""
    return RuleTokenizer("char", None, pre_tokenizers.Split(Regex("."), behavior="isolated"))


class TrainedTokenizer:
    """A subword tokenizer (BPE or WordPiece) learned from the training texts with HF tokenizers."""

    trainable = True

    def __init__(self, kind: str, vocab_size: int, min_frequency: int, lowercase: bool) -> None:
        self.kind, self.vocab_size, self.min_frequency, self.lowercase = kind, vocab_size, min_frequency, lowercase
        self.tokenizer: Tokenizer | None = None

    def fit(self, texts: Iterable[str], specials: list[str] = list(DEFAULT_SPECIALS)) -> None:
        unk = "<unk>"
        if self.kind == "bpe":
            tok = Tokenizer(models.BPE(unk_token=unk))
            trainer = trainers.BpeTrainer(vocab_size=self.vocab_size, min_frequency=self.min_frequency,
                                          special_tokens=specials, show_progress=False)
        else:
            tok = Tokenizer(models.WordPiece(unk_token=unk))
            trainer = trainers.WordPieceTrainer(vocab_size=self.vocab_size, min_frequency=self.min_frequency,
                                                special_tokens=specials, show_progress=False)
        if self.lowercase:
            tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits()])
        tok.train_from_iterator(texts, trainer=trainer)
        self.tokenizer = tok

    def __call__(self, text: str) -> list[str]:
        return self.tokenize(text)

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
