"""torchrig's text plugin (``text/``): tokenizers, vocabularies, padding and models on maintained
libraries (Hugging Face ``tokenizers`` and torch), with torchtext's names where that helps.

torchtext is not needed; where it is installed, its tokenizers and ``Vocab`` objects can be
passed to :class:`Encoder`.
"""

from __future__ import annotations

from . import _datasets, _encode, _hf, _models, _tokenizers, _transforms  # noqa: F401  (registration)
from ._encode import Encoder
from ._plugin import plugin
from ._transforms import AddToken, PadTransform, ToTensor, Truncate, VocabTransform
from ._vectors import AlignedVectors, load_vectors
from ._vocab import Vocab, build_vocab_from_iterator

__all__ = ["plugin", "Encoder", "Vocab", "build_vocab_from_iterator", "Truncate", "AddToken",
           "VocabTransform", "ToTensor", "PadTransform", "get_tokenizer", "load_vectors", "AlignedVectors"]


def get_tokenizer(name: str = "basic_english"):
    """torchtext's ``get_tokenizer``: ``basic_english``, ``whitespace`` or ``char`` -> a callable."""
    import torchrig

    return torchrig.get_transform(f"text/{name}")
