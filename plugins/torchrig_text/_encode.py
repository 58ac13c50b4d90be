"""``text/encode``: tokenizer + vocabulary + truncation + bos/eos -> ids, fitted on the training
split. It works per batch: the loader hands raw texts to its ``collate_fn``, which encodes the
whole batch at once and builds one padded id tensor plus the lengths (no tensor per text)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

import torchrig

from ._plugin import plugin
from ._tokenizers import TrainedTokenizer
from ._vocab import BOS, DEFAULT_SPECIALS, EOS, PAD, UNK, Vocab, build_vocab_from_iterator


def _make_tokenizer(spec: Any) -> Any:
    """A tokenizer name, ``{name: bpe, ...}``, or a callable as it is (torchtext's tokenizers)."""
    return torchrig.build_component(spec, "transform", prefix="text", owner="text/encode: tokenizer")


class Encoder:
    """Turn a text into a 1-D tensor of token ids; fit it on training texts first.

    Args:
        tokenizer: ``basic_english``, ``whitespace``, ``char``, ``bpe``, ``wordpiece`` (or
            ``{name: bpe, vocab_size: 4000}``), or any callable ``str -> list[str]`` (a torchtext
            tokenizer works).
        vocab: a ready vocabulary (ours, or a torchtext ``Vocab``); then ``fit`` learns nothing.
        max_len: keep at most this many ids (bos/eos included).
        min_freq: rarer tokens become ``<unk>``.
        max_tokens: the vocabulary's size limit (specials included).
        bos, eos: add ``<bos>`` / ``<eos>`` around each text.

    Example::

        enc = Encoder("basic_english", max_len=64)
        enc.fit(train_texts)
        ids = enc("A short text.")                 # tensor([...])
        padded, lengths = enc.encode_padded(texts)  # (B, T) ids, (B,) lengths: the batch path
        loader = DataLoader(list(zip(texts, labels)), batch_size=32, collate_fn=enc.collate_fn)
        # -> ((padded, lengths), labels) per batch, encoded as a batch

    Recipes apply it per batch (``batched = True``): samples stay raw text until the collate.
    """

    batched = True  # torchrig: apply in the loader's collate_fn, to whole batches of raw inputs

    def __init__(self, tokenizer: Any = "basic_english", *, vocab: Any = None, max_len: int = 256,
                 min_freq: int = 1, max_tokens: int | None = None, bos: bool = False, eos: bool = False) -> None:
        if max_len < 1 + bos + eos:
            raise torchrig.TorchrigError(f"max_len must leave room for a token, got {max_len}.")
        self.tokenizer_spec = tokenizer if isinstance(tokenizer, (str, dict)) else None
        self.tokenizer = _make_tokenizer(tokenizer)
        self.max_len, self.min_freq, self.max_tokens, self.bos, self.eos = max_len, min_freq, max_tokens, bos, eos
        self.vocab: Vocab | None = None
        if vocab is not None:
            self._set_vocab(vocab if isinstance(vocab, Vocab) else _from_torchtext(vocab))

    # ---------------------------------------------------------------- fitting
    def fit(self, texts: Iterable[str]) -> Encoder:
        """Learn the vocabulary (and a subword model) from training texts."""
        if self.vocab is not None and not getattr(self.tokenizer, "trainable", False):
            return self  # given a ready vocabulary
        texts = [t for t in texts]
        if isinstance(self.tokenizer, TrainedTokenizer):
            self.tokenizer.fit(texts)
            hf_vocab = self.tokenizer.tokenizer.get_vocab()
            self._set_vocab(Vocab(sorted(hf_vocab, key=hf_vocab.get)))
        else:
            tokenize = getattr(self.tokenizer, "tokenize_batch", None)
            token_lists = tokenize(texts) if tokenize else (self.tokenizer(t) for t in texts)
            self._set_vocab(build_vocab_from_iterator(token_lists, min_freq=self.min_freq,
                                                      max_tokens=self.max_tokens, specials=DEFAULT_SPECIALS))
        return self

    def _set_vocab(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self.pad_id = vocab.stoi.get(PAD, 0)
        self._empty_id = vocab.stoi[UNK] if UNK in vocab else self.pad_id
        self._bos_id, self._eos_id = (vocab[BOS] if self.bos else None), (vocab[EOS] if self.eos else None)
        self._lookup = _Lookup(vocab)

    @property
    def model_kwargs(self) -> dict[str, int]:
        """What a text model needs to know: ``vocab_size`` and ``pad_id``."""
        self._check_fitted()
        return {"vocab_size": len(self.vocab), "pad_id": self.pad_id}

    @property
    def model_context(self) -> dict[str, Any]:
        """What a model may take but a recipe never records: the ``vocab`` tokens in id order
        (models align pretrained word vectors to them)."""
        self._check_fitted()
        return {"vocab": self.vocab.get_itos()}

    def state_dict(self) -> dict[str, Any]:
        """Everything to rebuild the fitted encoder exactly (JSON-serialisable)."""
        self._check_fitted()
        state: dict[str, Any] = {"vocab": self.vocab.state_dict()}
        if isinstance(self.tokenizer, TrainedTokenizer):
            state.update(self.tokenizer.state_dict())  # {"subword_model": ...}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "subword_model" in state:
            self.tokenizer.load_state_dict(state)
        self._set_vocab(Vocab.from_state_dict(state["vocab"]))

    def _check_fitted(self) -> None:
        if self.vocab is None:
            raise torchrig.TorchrigError("text/encode is not fitted: call fit(train_texts) first "
                                         "(recipes do it on the training split).")

    # ---------------------------------------------------------------- encoding
    def _id_lists(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's ids: tokenized, looked up, truncated, bos/eos added; never empty."""
        self._check_fitted()
        try:
            if isinstance(self.tokenizer, TrainedTokenizer):  # subwords: HF tokenizers, a batch in Rust
                hf = self.tokenizer.tokenizer
                # encode_batch_fast (tokenizers >= 0.21) skips the character offsets we never use
                encode = getattr(hf, "encode_batch_fast", hf.encode_batch)
                ids = [e.ids for e in encode(list(texts), add_special_tokens=False)]
            else:
                tokenize = getattr(self.tokenizer, "_split", self.tokenizer)  # skip a call layer per text
                lookup = self._lookup.__getitem__  # map() over a C method: the fastest lookup in Python
                ids = [list(map(lookup, tokenize(t))) for t in texts]
        except (TypeError, AttributeError):  # not a string: say which input
            bad = next((t for t in texts if not isinstance(t, str)), None)
            if bad is None:
                raise
            raise torchrig.TorchrigError(f"text/encode takes strings, got {type(bad).__name__}: {bad!r:.60}.") from None
        room = self.max_len - self.bos - self.eos
        head = [self._bos_id] if self.bos else []
        tail = [self._eos_id] if self.eos else []
        empty = [self._empty_id]  # an empty text still gives one token, so every length is >= 1
        if head or tail:
            return [head + x[:room] + tail for x in ids]
        return [(x if len(x) <= room else x[:room]) if x else empty for x in ids]

    def __call__(self, text: str) -> torch.Tensor:
        """One text -> a 1-D tensor of ids."""
        return torch.tensor(self._id_lists([text])[0], dtype=torch.long)

    def encode_batch(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Many texts -> one 1-D id tensor each (see ``encode_padded`` for the fast batch path)."""
        return [torch.tensor(x, dtype=torch.long) for x in self._id_lists(texts)]

    def encode_padded(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of texts -> ``(ids (B, T), lengths (B,))``, padded with ``pad_id`` to the longest.

        Builds one array for the batch (through NumPy), not one tensor per text.
        """
        return _pad(self._id_lists(texts), self.pad_id)

    def collate_fn(self, batch: Sequence[tuple[Any, Any]]) -> tuple[tuple[torch.Tensor, torch.Tensor], Any]:
        """``[(text or ids, target), ...]`` -> ``((ids (B, T), lengths (B,)), targets)``.

        Raw texts are encoded here, as one batch; already-encoded id tensors are just padded.
        """
        inputs = [b[0] for b in batch]
        targets = torch.utils.data.default_collate([b[1] for b in batch])
        if all(isinstance(x, str) for x in inputs):
            return self.encode_padded(inputs), targets
        lengths = torch.tensor([len(x) for x in inputs], dtype=torch.long)
        return (pad_sequence(inputs, batch_first=True, padding_value=self.pad_id), lengths), targets

    def decode(self, ids: Iterable[int]) -> list[str]:
        self._check_fitted()
        return self.vocab.lookup_tokens(int(i) for i in ids)

    def show(self, inputs: Any, ax: Any) -> None:
        """Draw one encoded text (``(ids, length)``) as the tokens the model sees (``<unk>``
        shows where the vocabulary lacks a word)."""
        ids, length = inputs if isinstance(inputs, (tuple, list)) else (inputs, len(inputs))
        torchrig.show_text(" ".join(self.decode(torch.as_tensor(ids)[: int(length)].tolist())), ax)

    def preprocessing(self, inputs: Any = None) -> dict[str, Any]:
        """The tokenizer's rules and the vocabulary, as data, for ``model.json``."""
        self._check_fitted()
        rules = getattr(self.tokenizer, "rules", None)
        return {"kind": "text", "tokenizer": rules() if callable(rules) else repr(self.tokenizer),
                "vocab": self.vocab.get_itos(), "unk_id": self.vocab.default_index, "pad_id": self.pad_id, "max_len": self.max_len,
                "bos": self.bos, "eos": self.eos, "inputs": ["ids (batch, time) int64, padded with pad_id",
                                                          "lengths (batch,) int64"]}

    def lengths(self, texts: Iterable[str]) -> list[int]:
        """Characters per text: a cheap stand-in for token counts, for length bucketing."""
        return [len(t) for t in texts]


class _Lookup(dict):
    """token -> id; an unknown token gets the vocabulary's default id (or a clear error)."""

    def __init__(self, vocab: Vocab) -> None:
        super().__init__(vocab.stoi)
        self.vocab = vocab

    def __missing__(self, token: str) -> int:
        return self.vocab[token]  # the default index, or TorchrigError naming the token


def _pad(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    width = int(lengths.max()) if len(ids) else 0
    out = np.full((len(ids), width), pad_id, dtype=np.int64)
    out[np.arange(width) < lengths[:, None]] = flat  # row-major fill: the ids in order
    return torch.from_numpy(out), torch.from_numpy(lengths)


def _from_torchtext(vocab: Any) -> Vocab:
    """Wrap a torchtext ``Vocab`` (or anything with ``get_itos``) as ours."""
    if not hasattr(vocab, "get_itos"):
        raise torchrig.TorchrigError(f"vocab must be a torchrig_text.Vocab or a torchtext Vocab, got {type(vocab).__name__}.")
    ours = Vocab(vocab.get_itos(), default=None)
    default = vocab.get_default_index() if hasattr(vocab, "get_default_index") else None
    ours.set_default_index(default)
    return ours


@plugin.transform
def encode(*, tokenizer: Any = "basic_english", max_len: int = 256, min_freq: int = 1,
           max_tokens: int | None = None, bos: bool = False, eos: bool = False) -> Encoder:
    """Text -> token ids: tokenize, map through a vocabulary fitted on the training split
    (``<unk>`` for unseen tokens), truncate to ``max_len``, optionally add ``<bos>``/``<eos>``.
    Batches are padded per batch and carry their lengths. The model's ``vocab_size`` and
    ``pad_id`` come from it.

    Args:
        tokenizer: basic_english, whitespace, char, bpe, wordpiece, or {name: bpe, vocab_size: 4000}.
        max_len: the longest id sequence kept.
        min_freq: tokens seen fewer times in training become <unk>.
        max_tokens: vocabulary size limit.
        bos, eos: add begin/end tokens.
    """
    return Encoder(tokenizer, max_len=max_len, min_freq=min_freq, max_tokens=max_tokens, bos=bos, eos=eos)
