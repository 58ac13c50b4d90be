"""Hugging Face Transformers text classifiers (``text/hf``) and their own tokenizers
(``text/hf_tokenizer``); an optional extra: ``pip install "torchrig[hf]"``.

A recipe names the checkpoint once, on the model; the tokenizer takes it from there::

    data:
      train_transform: {name: text/hf_tokenizer, max_len: 128}
    model: {name: text/hf, checkpoint: distilbert-base-uncased}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

import torchrig
from torchrig.hf import HEAD_DESCRIPTION, HFClassifier, from_pretrained, transformers

from ._plugin import plugin

__all__ = ["HFTextClassifier", "HFTokenizer", "hf", "hf_tokenizer"]


class HFTextClassifier(HFClassifier):
    """``AutoModelForSequenceClassification`` on token ids. Without an ``attention_mask`` (e.g.
    fixed-width arrays from scikit-learn), every id but ``pad_id`` is attended to."""

    def __init__(self, model: nn.Module, pad_id: int) -> None:
        super().__init__(model)
        self.pad_id = pad_id

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **inputs: Any) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = (input_ids != self.pad_id).long()
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **inputs).logits


@plugin.model
def hf(*, checkpoint: str, num_classes: int = 2, pad_id: int | None = None, revision: str | None = None) -> nn.Module:
    """A Hugging Face Transformers text classifier (``AutoModelForSequenceClassification``) from a
    hub name (fetched into Transformers' cache) or a folder saved with ``save_pretrained``; a
    classifier head of another size is made anew. Use ``text/hf_tokenizer`` for its inputs.

    Args:
        checkpoint: e.g. ``distilbert-base-uncased``, or a local folder.
        num_classes: the head's outputs (recipes fill it in from the data).
        pad_id: the padding id for inputs without an attention mask (default: the model's).
        revision: a hub branch, tag or commit.
    """
    tf = transformers("text/hf")
    kwargs = {"revision": revision} if revision else {}
    model = from_pretrained(tf.AutoModelForSequenceClassification, checkpoint, what="text/hf", part="model",
                            num_labels=num_classes, ignore_mismatched_sizes=True, **kwargs)
    if pad_id is None:
        pad_id = getattr(model.config, "pad_token_id", None)
    return HFTextClassifier(model, 0 if pad_id is None else int(pad_id))


class HFTokenizer:
    """A checkpoint's own tokenizer as a recipe transform: texts -> ``{"input_ids",
    "attention_mask", ...}``, truncated to ``max_len`` and padded per batch (to the batch's longest
    text, not to ``max_len``).

    Args:
        checkpoint: the model's hub name or folder.
        max_len: the most tokens kept per text (special tokens included).

    Example::

        tok = HFTokenizer("distilbert-base-uncased", max_len=128)
        loader = DataLoader(list(zip(texts, labels)), batch_size=16, collate_fn=tok.collate_fn)
        for inputs, y in loader:   # inputs: a dict of (B, T) tensors; model(**inputs)
            ...
    """

    batched = True  # torchrig: applied in the loader's collate_fn, to whole batches of raw texts

    def __init__(self, checkpoint: str, *, max_len: int = 256, revision: str | None = None) -> None:
        tf = transformers("text/hf_tokenizer")
        kwargs = {"revision": revision} if revision else {}
        self.checkpoint, self.max_len = checkpoint, max_len
        self.tokenizer = from_pretrained(tf.AutoTokenizer, checkpoint, what="text/hf_tokenizer", part="tokenizer",
                                         **kwargs)
        if len(self.tokenizer) <= len(set(self.tokenizer.all_special_tokens)):
            # a folder without tokenizer files: Transformers 5 makes an empty tokenizer from the config
            raise torchrig.TorchrigError(
                f"text/hf_tokenizer: the folder {checkpoint!r} has no tokenizer (no tokenizer.json or vocabulary file; "
                f"Transformers would make an empty one). Save the model's tokenizer there with "
                f"tokenizer.save_pretrained({checkpoint!r}).")
        if self.tokenizer.pad_token is None:  # GPT-style tokenizers have none: pad with end-of-text
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def encode_padded(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """A batch of texts -> a dict of ``(B, T)`` tensors, ``T`` the longest text (<= max_len)."""
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:
            raise torchrig.TorchrigError(f"text/hf_tokenizer takes strings, got {type(bad).__name__}: {bad!r:.60}.")
        return dict(self.tokenizer(list(texts), truncation=True, max_length=self.max_len, padding=True,
                                   return_tensors="pt"))

    def __call__(self, text: str) -> dict[str, torch.Tensor]:
        """One text -> a dict of 1-D tensors."""
        return {k: v[0] for k, v in self.encode_padded([text]).items()}

    def collate_fn(self, batch: Sequence[tuple[Any, Any]]) -> tuple[dict[str, torch.Tensor], Any]:
        """``[(text, target), ...]`` -> ``({"input_ids": (B, T), ...}, targets)``."""
        targets = torch.utils.data.default_collate([b[1] for b in batch])
        return self.encode_padded([b[0] for b in batch]), targets

    def show(self, inputs: Any, ax: Any) -> None:
        """Draw one tokenized text as the tokens the model sees (padding left out)."""
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if mask is not None:
            ids = ids[mask.bool()]
        torchrig.show_text(" ".join(self.tokenizer.convert_ids_to_tokens(ids.tolist())), ax)

    def preprocessing(self, inputs: Any = None) -> dict[str, Any]:
        """The checkpoint's tokenizer, for ``model.json``: a caller loads it by name."""
        return {"kind": "text", "tokenizer": {"name": "transformers.AutoTokenizer", "checkpoint": self.checkpoint,
                                              "max_len": self.max_len, "truncation": True, "padding": "longest"},
                "inputs": sorted(inputs) if isinstance(inputs, dict) else None}

    def lengths(self, texts: Sequence[str]) -> list[int]:
        """Characters per text: a cheap stand-in for token counts, for length bucketing."""
        return [len(t) for t in texts]


@plugin.transform
def hf_tokenizer(*, checkpoint: str | None = None, max_len: int = 256, revision: str | None = None) -> HFTokenizer:
    """A Hugging Face model's own tokenizer: truncation to ``max_len``, padding per batch, an
    attention mask. In a recipe, ``checkpoint`` defaults to the model's.

    Args:
        checkpoint: hub name or folder (default in recipes: ``model.checkpoint``).
        max_len: the most tokens kept per text.
        revision: a hub branch, tag or commit.
    """
    if checkpoint is None:
        raise torchrig.TorchrigError("text/hf_tokenizer needs a checkpoint (a hub name or a folder); in a recipe it "
                                     "is taken from the model's checkpoint when the model is text/hf.")
    return HFTokenizer(checkpoint, max_len=max_len, revision=revision)


hf_tokenizer.from_model = ("checkpoint", "revision")  # type: ignore[attr-defined]  (recipes fill these in)


hf.torchrig_head = HEAD_DESCRIPTION  # type: ignore[attr-defined]  (torchrig info)
