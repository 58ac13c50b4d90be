"""A vocabulary: tokens <-> ids, with special tokens and an unknown-token fallback.

Named like torchtext's ``Vocab`` and ``build_vocab_from_iterator`` so migrating code reads the same.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torchrig

PAD, UNK, BOS, EOS, CLS = "<pad>", "<unk>", "<bos>", "<eos>", "<cls>"
DEFAULT_SPECIALS = (PAD, UNK, BOS, EOS)


class Vocab:
    """An ordered token list; ``vocab["word"]`` gives its id, unknown tokens the default id.

    Args:
        tokens: every token, in id order (specials included).
        default: the token whose id unknown tokens get (``None``: unknown tokens raise).
    """

    def __init__(self, tokens: Sequence[str], *, default: str | None = UNK) -> None:
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise torchrig.TorchrigError("Vocab tokens must be unique.")
        self.default_index: int | None = None
        if default is not None:
            self.set_default_index(self.stoi[default] if default in self.stoi else None)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __getitem__(self, token: str) -> int:
        index = self.stoi.get(token, self.default_index)
        if index is None:
            raise torchrig.TorchrigError(f"Token {token!r} is not in the vocabulary and it has no default "
                                         "index; call set_default_index(vocab['<unk>']).")
        return index

    def set_default_index(self, index: int | None) -> None:
        """The id returned for tokens not in the vocabulary (torchtext's name)."""
        self.default_index = index

    def lookup_indices(self, tokens: Iterable[str]) -> list[int]:
        return [self[t] for t in tokens]

    def lookup_tokens(self, indices: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in indices]

    def get_itos(self) -> list[str]:
        return list(self.itos)

    def get_stoi(self) -> dict[str, int]:
        return dict(self.stoi)

    def state_dict(self) -> dict[str, Any]:
        return {"itos": self.itos, "default_index": self.default_index}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Vocab:
        vocab = cls(state["itos"], default=None)
        vocab.set_default_index(state["default_index"])
        return vocab


def build_vocab_from_iterator(iterator: Iterable[Iterable[str]], *, min_freq: int = 1,
                              max_tokens: int | None = None, specials: Sequence[str] = DEFAULT_SPECIALS,
                              special_first: bool = True) -> Vocab:
    """Count tokens and keep those seen ``min_freq`` times, most frequent first (ties: by token).

    Args:
        iterator: token lists, one per text.
        min_freq: drop rarer tokens.
        max_tokens: the vocabulary's size limit, specials included.
        specials: special tokens (padding first, so its id is 0).
        special_first: put specials before the counted tokens.
    """
    counts: Counter[str] = Counter()
    for tokens in iterator:
        counts.update(tokens)
    ranked = sorted((t for t, c in counts.items() if c >= min_freq and t not in specials),
                    key=lambda t: (-counts[t], t))
    if max_tokens is not None:
        ranked = ranked[: max(0, max_tokens - len(specials))]
    tokens = [*specials, *ranked] if special_first else [*ranked, *specials]
    return Vocab(tokens, default=UNK if UNK in specials else None)
