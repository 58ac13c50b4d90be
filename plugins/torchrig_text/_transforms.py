"""Single-step transforms with torchtext's names, for pipelines written step by step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

from ._plugin import plugin
from ._vocab import Vocab


class Truncate:
    """Keep the first ``max_len`` tokens or ids (torchtext.transforms.Truncate)."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def __call__(self, seq: Sequence[Any]) -> Sequence[Any]:
        return seq[: self.max_len]


class AddToken:
    """Put ``token`` at the start (``begin=True``) or end (torchtext.transforms.AddToken)."""

    def __init__(self, token: Any, begin: bool = True) -> None:
        self.token, self.begin = token, begin

    def __call__(self, seq: Sequence[Any]) -> list[Any]:
        return [self.token, *seq] if self.begin else [*seq, self.token]


class VocabTransform:
    """Tokens -> ids through a vocabulary (torchtext.transforms.VocabTransform)."""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab

    def __call__(self, tokens: Sequence[str]) -> list[int]:
        return self.vocab.lookup_indices(tokens)


class ToTensor:
    """Ids (or a list of id lists, padded with ``padding_value``) -> a long tensor."""

    def __init__(self, padding_value: int = 0) -> None:
        self.padding_value = padding_value

    def __call__(self, ids: Sequence[Any]) -> torch.Tensor:
        if ids and isinstance(ids[0], (list, tuple, torch.Tensor)):
            return pad_sequence([torch.as_tensor(x, dtype=torch.long) for x in ids], batch_first=True,
                                padding_value=self.padding_value)
        return torch.as_tensor(ids, dtype=torch.long)


class PadTransform:
    """Pad a 1-D (or batch of) id tensor to ``max_length`` with ``pad_value``."""

    def __init__(self, max_length: int, pad_value: int = 0) -> None:
        self.max_length, self.pad_value = max_length, pad_value

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        missing = self.max_length - x.shape[-1]
        return torch.nn.functional.pad(x, (0, missing), value=self.pad_value) if missing > 0 else x


@plugin.transform
def truncate(*, max_len: int) -> Truncate:
    """Keep the first ``max_len`` tokens or ids."""
    return Truncate(max_len)


@plugin.transform
def add_token(*, token: Any, begin: bool = True) -> AddToken:
    """Add a token (or id) at the beginning or end."""
    return AddToken(token, begin)


@plugin.transform
def to_tensor(*, padding_value: int = 0) -> ToTensor:
    """Ids -> a long tensor (a list of id lists is padded)."""
    return ToTensor(padding_value)


@plugin.transform
def pad(*, max_length: int, pad_value: int = 0) -> PadTransform:
    """Pad id tensors to a fixed length."""
    return PadTransform(max_length, pad_value)
