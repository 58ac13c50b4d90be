"""scikit-learn transformer for text: strings -> fixed-width arrays of token ids.

Example::

    from sklearn.pipeline import make_pipeline
    from torchrig.sklearn import RigClassifier
    from torchrig_text.sklearn import TextEncoder

    pipe = make_pipeline(TextEncoder("basic_english", max_len=64), RigClassifier("text/bigru"))
    pipe.fit(texts, labels)            # the classifier gets vocab_size and pad_id from the encoder
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

import torchrig
from torchrig.sklearn import ModelInputs

from ._encode import Encoder

__all__ = ["TextEncoder", "HFTextEncoder"]


class TextEncoder(TransformerMixin, BaseEstimator):
    """Strings -> token ids, padded with ``pad_id_`` to ``max_len`` columns.

    ``fit`` learns the vocabulary (and a subword model for bpe/wordpiece) from the training
    texts, as ``text/encode`` does in a recipe. ``transform`` returns a ``(n_texts, max_len)``
    int64 array that carries ``vocab_size`` and ``pad_id`` for the next step (a
    :class:`torchrig.sklearn.RigClassifier` builds its embedding from them). Text models count
    each row's length as its non-padding ids.

    Args:
        tokenizer: basic_english, whitespace, char, bpe, wordpiece (or a callable str -> tokens).
        max_len: ids kept per text (longer texts are truncated); the output's width.
        min_freq: tokens seen fewer times in training become ``<unk>``.
        max_tokens: the vocabulary's size limit (specials included).
        vocab_size: subword vocabulary size for bpe/wordpiece (ignored by the others).

    Attributes:
        vocab_size_, pad_id_: what a model needs to know.
        encoder_: the fitted :class:`torchrig_text.Encoder`.

    Example::

        enc = TextEncoder("basic_english", max_len=8).fit(["a good film", "a bad film"])
        enc.transform(["a good one"])       # array([[5, 7, 1, 0, 0, 0, 0, 0]])
    """

    def __init__(self, tokenizer: Any = "basic_english", *, max_len: int = 128, min_freq: int = 1,
                 max_tokens: int | None = None, vocab_size: int = 8000) -> None:
        self.tokenizer = tokenizer
        self.max_len = max_len
        self.min_freq = min_freq
        self.max_tokens = max_tokens
        self.vocab_size = vocab_size

    def fit(self, X: Iterable[str], y: Any = None) -> TextEncoder:
        """Learn the vocabulary from the texts ``X``."""
        texts = _texts(X, "fit")
        tokenizer = self.tokenizer
        if tokenizer in ("bpe", "wordpiece"):
            tokenizer = {"name": tokenizer, "vocab_size": self.vocab_size}
        self.encoder_ = Encoder(tokenizer, max_len=self.max_len, min_freq=self.min_freq,
                                max_tokens=self.max_tokens).fit(texts)
        self.vocab_size_ = len(self.encoder_.vocab)
        self.pad_id_ = self.encoder_.pad_id
        self.n_features_in_ = 1
        return self

    def transform(self, X: Iterable[str]) -> ModelInputs:
        """Texts -> ``(n_texts, max_len)`` int64 ids (``ModelInputs`` with vocab_size, pad_id)."""
        check_is_fitted(self, "encoder_")
        texts = _texts(X, "transform")
        ids, _ = self.encoder_.encode_padded(texts)
        out = np.full((len(texts), self.max_len), self.pad_id_, dtype=np.int64)
        out[:, : ids.shape[1]] = ids.numpy()
        return ModelInputs(out, vocab_size=self.vocab_size_, pad_id=self.pad_id_,
                           vocab=self.encoder_.vocab.get_itos())

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "encoder_")
        return np.asarray([f"token_{i}" for i in range(self.max_len)], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags


class HFTextEncoder(TransformerMixin, BaseEstimator):
    """Strings -> token ids with a Hugging Face checkpoint's own tokenizer, for ``text/hf``.

    ``transform`` returns a ``(n_texts, max_len)`` int64 array padded with the tokenizer's pad id;
    it carries ``checkpoint`` and ``pad_id`` to the next step, so ``RigClassifier("text/hf")``
    needs no arguments (the attention mask is every id but padding). Nothing is learned: ``fit``
    loads the tokenizer.

    Args:
        checkpoint: a hub name or a folder saved with ``save_pretrained``.
        max_len: tokens kept per text (special tokens included); the output's width.

    Example::

        pipe = make_pipeline(HFTextEncoder("distilbert-base-uncased", max_len=64), RigClassifier("text/hf"))
        pipe.fit(texts, labels)
    """

    def __init__(self, checkpoint: str, *, max_len: int = 128) -> None:
        self.checkpoint = checkpoint
        self.max_len = max_len

    def fit(self, X: Iterable[str], y: Any = None) -> HFTextEncoder:
        """Load the checkpoint's tokenizer (``X`` is only checked)."""
        from ._hf import HFTokenizer

        _texts(X, "fit")
        self.tokenizer_ = HFTokenizer(self.checkpoint, max_len=self.max_len)
        self.pad_id_ = int(self.tokenizer_.tokenizer.pad_token_id)
        self.n_features_in_ = 1
        return self

    def transform(self, X: Iterable[str]) -> ModelInputs:
        """Texts -> ``(n_texts, max_len)`` int64 ids (``ModelInputs`` with checkpoint, pad_id)."""
        check_is_fitted(self, "tokenizer_")
        texts = _texts(X, "transform")
        out = np.full((len(texts), self.max_len), self.pad_id_, dtype=np.int64)
        if texts:
            ids = self.tokenizer_.encode_padded(texts)["input_ids"].numpy()
            out[:, : ids.shape[1]] = ids
        return ModelInputs(out, checkpoint=self.checkpoint, pad_id=self.pad_id_)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags


def _texts(X: Any, where: str) -> list[str]:
    """A list of strings from a list, a 1-D array, a pandas Series, or a one-column 2-D array."""
    if isinstance(X, str):
        raise torchrig.InputError(f"TextEncoder.{where} takes a list of texts, got a single string; "
                                     "wrap it: [text].")
    array = np.asarray(X, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise torchrig.InputError(f"TextEncoder.{where} takes one text per sample (a list or a 1-D array), "
                                     f"got an array of shape {array.shape}.")
    bad = next((i for i, t in enumerate(array) if not isinstance(t, str)), None)
    if bad is not None:
        raise torchrig.InputError(f"TextEncoder.{where}: sample {bad} is {type(array[bad]).__name__} "
                                     f"{array[bad]!r:.40}, not a string. Convert or drop it first.")
    return array.tolist()
