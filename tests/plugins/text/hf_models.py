"""A tiny Transformers text classifier made here, for tests and benchmarks (nothing downloads)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch


def make_tiny_bert(folder: Path, texts: Sequence[str], *, tokenizer: bool = True, num_labels: int = 2,
                   hidden: int = 32, layers: int = 2, vocab_size: int = 120) -> Path:
    """A BERT with ``layers`` layers of width ``hidden`` and random weights, and a WordPiece
    tokenizer trained on ``texts``, saved in ``folder`` with ``save_pretrained``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128,
                        num_labels=num_labels)
    BertForSequenceClassification(config).save_pretrained(folder)
    if tokenizer:
        PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)
    return folder
