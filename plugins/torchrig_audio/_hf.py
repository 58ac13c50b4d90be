"""Hugging Face Transformers audio classifiers (``audio/hf``); an optional extra:
``pip install "torchrig[hf]"``.

The model holds its checkpoint's feature extractor and applies it inside ``forward``, to the
``(waveforms, lengths)`` batches every audio dataset gives: clips are mixed to mono, resampled to
the extractor's rate and cut to their lengths first, so padding from the loader never reaches the
extractor. The extractor runs on the CPU (Transformers' extractors work on NumPy arrays); the
model runs wherever the Trainer put it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torchaudio
from torch import nn

import torchrig
from torchrig.hf import HEAD_DESCRIPTION, HFClassifier, from_pretrained, transformers

from ._plugin import plugin

__all__ = ["HFAudioClassifier", "hf"]


class HFAudioClassifier(HFClassifier):
    """``AutoModelForAudioClassification`` with its feature extractor, on ``(waveforms, lengths)``.

    Args:
        model: the Transformers model.
        extractor: its feature extractor (``AutoFeatureExtractor``).
        sample_rate: the rate of the waveforms it is given.
    """

    def __init__(self, model: nn.Module, extractor: Any, sample_rate: int) -> None:
        super().__init__(model)
        self.extractor = extractor
        self.sample_rate = int(sample_rate)
        self.target_rate = int(getattr(extractor, "sampling_rate", sample_rate))

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        x = waveforms.mean(1) if waveforms.dim() == 3 else waveforms  # (B, C, T) -> mono (B, T)
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[-1], dtype=torch.long)
        lengths = lengths.cpu()
        if self.sample_rate != self.target_rate:
            x = torchaudio.functional.resample(x, self.sample_rate, self.target_rate)
            lengths = (lengths * self.target_rate + self.sample_rate - 1) // self.sample_rate
            lengths = lengths.clamp(1, x.shape[-1])
        clips = [c[: int(n)].float().cpu().numpy() for c, n in zip(x, lengths)]
        features = self.extractor(clips, sampling_rate=self.target_rate, padding=True, return_tensors="pt")
        device = next(self.model.parameters()).device
        return self.model(**{k: v.to(device) for k, v in features.items()}).logits


@plugin.model
def hf(*, checkpoint: str, num_classes: int = 2, sample_rate: int = 16000, revision: str | None = None) -> nn.Module:
    """A Hugging Face Transformers audio classifier (``AutoModelForAudioClassification``: wav2vec 2.0,
    HuBERT, WavLM, AST, Whisper encoders, ...) with its own feature extractor, from a hub name
    (fetched into Transformers' cache) or a folder saved with ``save_pretrained``. A classifier
    head of another size is made anew.

    Args:
        checkpoint: e.g. ``superb/wav2vec2-base-superb-ks``, or a local folder.
        num_classes: the head's outputs (recipes fill it in from the data).
        sample_rate: of the input waveforms (filled in from the dataset); resampled to the
            extractor's rate inside the model.
        revision: a hub branch, tag or commit.
    """
    if not isinstance(sample_rate, (int, float)) or not math.isfinite(sample_rate) or sample_rate <= 0:
        raise torchrig.TorchrigError(f"audio/hf: sample_rate must be a positive number of Hz, got {sample_rate!r}.")
    tf = transformers("audio/hf")
    kwargs = {"revision": revision} if revision else {}
    extractor = from_pretrained(tf.AutoFeatureExtractor, checkpoint, what="audio/hf", part="feature extractor",
                                **kwargs)
    model = from_pretrained(tf.AutoModelForAudioClassification, checkpoint, what="audio/hf", part="model",
                            num_labels=num_classes, ignore_mismatched_sizes=True, **kwargs)
    return HFAudioClassifier(model, extractor, sample_rate)


hf.torchrig_head = HEAD_DESCRIPTION  # type: ignore[attr-defined]  (torchrig info)
