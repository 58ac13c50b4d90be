"""``text/encode``: tokenizer + vocabulary + truncation + bos/eos -> ids, fitted on the training
split, with a collate that pads each batch and gives the lengths."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

import torchrig

from ._plugin import plugin
from ._tokenizers import RuleTokenizer, TrainedTokenizer
from ._vocab import BOS, DEFAULT_SPECIALS, EOS, PAD, UNK, Vocab, build_vocab_from_iterator


def _make_tokenizer(spec: Any) -> Any:
    if isinstance(spec, str):
        return torchrig.get_transform(spec if "/" in spec else f"text/{spec}")
    if isinstance(spec, dict):
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        name = spec["name"]
        return torchrig.get_transform(name if "/" in name else f"text/{name}", **kwargs)
    if callable(spec):  # e.g. torchtext's get_tokenizer("basic_english")
        return spec
    raise torchrig.TorchrigError(f"tokenizer must be a name (basic_english, whitespace, char, bpe, wordpiece), "
                                 f"a {{name: ...}} mapping or a callable; got {spec!r}.")


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
        (padded, lengths), y = enc.collate_fn([(enc(t), 0) for t in texts])
    """

    def __init__(self, tokenizer: Any = "basic_english", *, vocab: Any = None, max_len: int = 256,
                 min_freq: int = 1, max_tokens: int | None = None, bos: bool = False, eos: bool = False) -> None:
        if max_len < 1 + bos + eos:
            raise torchrig.TorchrigError(f"max_len must leave room for a token, got {max_len}.")
        self.tokenizer_spec = tokenizer if isinstance(tokenizer, (str, dict)) else None
        self.tokenizer = _make_tokenizer(tokenizer)
        self.max_len, self.min_freq, self.max_tokens, self.bos, self.eos = max_len, min_freq, max_tokens, bos, eos
        self.vocab: Vocab | None = None
        self._fast: Any = None
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
        if isinstance(self.tokenizer, RuleTokenizer) and UNK in vocab:
            self._fast = self.tokenizer.word_level(vocab.stoi, UNK)  # texts -> ids in Rust
        elif isinstance(self.tokenizer, TrainedTokenizer):
            self._fast = self.tokenizer.tokenizer
        else:
            self._fast = None

    @property
    def model_kwargs(self) -> dict[str, int]:
        """What a text model needs to know: ``vocab_size`` and ``pad_id``."""
        self._check_fitted()
        return {"vocab_size": len(self.vocab), "pad_id": self.pad_id}

    def state_dict(self) -> dict[str, Any]:
        """Everything to rebuild the fitted encoder exactly (JSON-serialisable)."""
        self._check_fitted()
        state: dict[str, Any] = {"vocab": self.vocab.state_dict()}
        if isinstance(self.tokenizer, TrainedTokenizer):
            state["subword_model"] = self.tokenizer.tokenizer.to_str()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "subword_model" in state:
            from tokenizers import Tokenizer

            self.tokenizer.tokenizer = Tokenizer.from_str(state["subword_model"])
        self._set_vocab(Vocab.from_state_dict(state["vocab"]))

    def _check_fitted(self) -> None:
        if self.vocab is None:
            raise torchrig.TorchrigError("text/encode is not fitted: call fit(train_texts) first "
                                         "(recipes do it on the training split).")

    # ---------------------------------------------------------------- encoding
    def _finish(self, ids: list[int]) -> torch.Tensor:
        room = self.max_len - self.bos - self.eos
        ids = ids[:room]
        if self.bos:
            ids = [self.vocab[BOS], *ids]
        if self.eos:
            ids = [*ids, self.vocab[EOS]]
        if not ids:  # an empty text still gives one token, so every sample has length >= 1
            ids = [self.vocab[UNK] if UNK in self.vocab else self.pad_id]
        return torch.tensor(ids, dtype=torch.long)

    def __call__(self, text: str) -> torch.Tensor:
        self._check_fitted()
        if not isinstance(text, str):
            raise torchrig.TorchrigError(f"text/encode takes a string, got {type(text).__name__}.")
        if self._fast is not None:
            return self._finish(self._fast.encode(text, add_special_tokens=False).ids)
        return self._finish(self.vocab.lookup_indices(self.tokenizer(text)))

    def encode_batch(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Encode many texts at once (in parallel, in Rust, on the fast path)."""
        self._check_fitted()
        if self._fast is not None:
            # encode_batch_fast (tokenizers >= 0.21) skips character offsets we never use
            encode = getattr(self._fast, "encode_batch_fast", self._fast.encode_batch)
            return [self._finish(e.ids) for e in encode(list(texts), add_special_tokens=False)]
        return [self(t) for t in texts]

    def collate_fn(self, batch: Sequence[tuple[torch.Tensor, Any]]) -> tuple[tuple[torch.Tensor, torch.Tensor], Any]:
        """Pad a batch of ``(ids, target)`` to its longest text: ``((ids (B, T), lengths (B,)), targets)``."""
        ids = [b[0] for b in batch]
        lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
        padded = pad_sequence(ids, batch_first=True, padding_value=self.pad_id)
        targets = torch.utils.data.default_collate([b[1] for b in batch])
        return (padded, lengths), targets

    def decode(self, ids: Iterable[int]) -> list[str]:
        self._check_fitted()
        return self.vocab.lookup_tokens(int(i) for i in ids)


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
