"""``audio/wav2vec2``: a self-supervised speech backbone from torchaudio's pipeline bundles
(wav2vec 2.0, XLS-R, HuBERT, WavLM) with a clip-classification head.

The architecture is built from the bundle's own parameters with random weights; nothing
downloads unless ``weights`` names the bundle's weights (``DEFAULT`` or the bundle's name), which
torch.hub fetches into its cache as torchaudio itself does. Padding is ignored exactly: the
convolutional feature encoder's GroupNorm, the waveform normalisation, the attention and the
pooling all see each clip's own samples only, so a clip gives the same scores alone or padded in
a batch.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
import torchaudio
from torch import nn
from torch.nn import functional as F
from torchaudio.models.wav2vec2.wavlm_attention import WavLMSelfAttention

import torchrig

from ._features import valid_frames
from ._plugin import plugin

__all__ = ["BUNDLES", "BundleWeights", "Wav2Vec2Classifier", "wav2vec2"]

# torchaudio's pretrained (not fine-tuned for ASR) bundles: usable as classification backbones.
BUNDLES = ("WAV2VEC2_BASE", "WAV2VEC2_LARGE", "WAV2VEC2_LARGE_LV60K", "WAV2VEC2_XLSR53", "WAV2VEC2_XLSR_300M",
           "WAV2VEC2_XLSR_1B", "WAV2VEC2_XLSR_2B", "HUBERT_BASE", "HUBERT_LARGE", "HUBERT_XLARGE", "WAVLM_BASE",
           "WAVLM_BASE_PLUS", "WAVLM_LARGE")
DEFAULT_BUNDLE = "WAV2VEC2_BASE"
POOLINGS = ("mean", "attentive")
URL = "https://download.pytorch.org/torchaudio/models/"  # where torchaudio's bundles fetch their files


def _bundle(name: object, owner: str = "audio/wav2vec2", what: str = "bundle") -> tuple[str, object]:
    """``(name, torchaudio bundle)``; an unknown name raises with the closest ones."""
    key = name.removeprefix("torchaudio.pipelines.") if isinstance(name, str) else name
    if key not in BUNDLES:
        close = difflib.get_close_matches(str(key), BUNDLES, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise torchrig.TorchrigError(f"{owner}: unknown {what} {name!r}.{hint} torchaudio's pretrained bundles: "
                                     f"{', '.join(BUNDLES)}.")
    return key, getattr(torchaudio.pipelines, key)


def _backbone(bundle: object) -> nn.Module:
    """The bundle's architecture, randomly initialised, as ``bundle.get_model()`` builds it before
    loading the weights (torchaudio 2.x: its ``_model_type`` picks the factory)."""
    factory = torchaudio.models.wavlm_model if bundle._model_type == "WavLM" else torchaudio.models.wav2vec2_model
    return factory(**bundle._params)


class LayerMix(nn.Module):
    """A learned softmax-weighted sum of the transformer layers' outputs (SUPERB, Yang et al.,
    2021). Each layer is layer-normalised first (no affine): pre-LN models' intermediate states
    differ in scale by orders of magnitude, which would otherwise decide the mix."""

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))  # equal weights at the start

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack([F.layer_norm(h, h.shape[-1:]) for h in layers])  # (layers, batch, frames, dim)
        return (self.weights.softmax(0)[:, None, None, None] * stacked).sum(0)


class AttentivePool(nn.Module):
    """Self-attentive pooling: a score per frame (a one-hidden-layer MLP), softmax over the clip's
    own frames, the weighted mean."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        scores = self.score(h).squeeze(-1)  # (batch, frames)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return (scores.softmax(-1).unsqueeze(-1) * h).sum(1)


def _masked_group_norm(x: torch.Tensor, lengths: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """``norm`` on ``(batch, channels, frames)`` with each clip's statistics taken over its own
    frames: torchaudio's GroupNorm would also count the padding, so a padded clip would change."""
    b, c, t = x.shape
    g = norm.num_groups
    mask = valid_frames(lengths, t, x.device)[:, None, None, :].to(x.dtype)  # (batch, 1, 1, frames)
    xg = x.reshape(b, g, c // g, t)
    count = mask.sum(-1, keepdim=True).clamp_min(1) * (c // g)
    mean = (xg * mask).sum((-2, -1), keepdim=True) / count
    var = ((xg - mean) ** 2 * mask).sum((-2, -1), keepdim=True) / count
    y = ((xg - mean) / torch.sqrt(var + norm.eps)).reshape(b, c, t)
    if norm.affine:
        y = y * norm.weight[:, None] + norm.bias[:, None]
    return y


class Wav2Vec2Classifier(nn.Module):
    """A torchaudio ``Wav2Vec2Model`` (wav2vec 2.0, HuBERT, WavLM) as a clip classifier.

    ``forward(waveforms, lengths)`` takes ``(batch, channels, samples)`` or ``(batch, samples)``
    at ``sample_rate``: channels are averaged to mono, the audio resampled to the backbone's
    rate (and, for bundles trained so, normalised per clip), features taken from one transformer
    layer or a learned mix of all, pooled over each clip's frames, classified. Returns
    ``(batch, num_classes)`` logits.

    Args:
        backbone: a ``torchaudio.models.Wav2Vec2Model`` (``wav2vec2_model`` / ``wavlm_model``),
            held as ``self.model`` so its own state_dict loads with a ``model.`` prefix.
        num_classes: outputs.
        sample_rate: of the input (Hz).
        backbone_rate: the rate the backbone was trained at (Hz).
        normalize_waveform: zero mean, unit variance per clip first (the bundles trained so).
        layer: features of this transformer layer (1-based; later layers are neither computed
            nor trained), or None for a learned softmax-weighted sum of all layers.
        pooling: "mean" or "attentive" over each clip's frames.
        dropout: before the linear layer.
        freeze_feature_encoder: the convolutional feature encoder is never trained (as fairseq
            fine-tunes); fine-tuning leaves it frozen too.

    Example::

        backbone = torchaudio.models.wav2vec2_model(**torchaudio.pipelines.WAV2VEC2_BASE._params)
        model = Wav2Vec2Classifier(backbone, num_classes=5)
        logits = model(torch.randn(2, 1, 16000), torch.tensor([16000, 9000]))
    """

    def __init__(self, backbone: nn.Module, *, num_classes: int, sample_rate: int = 16000, backbone_rate: int = 16000,
                 normalize_waveform: bool = False, layer: int | None = None, pooling: str = "mean",
                 dropout: float = 0.1, freeze_feature_encoder: bool = True) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise torchrig.TorchrigError(f"Wav2Vec2Classifier: pooling must be one of {', '.join(POOLINGS)}, "
                                         f"got {pooling!r}.")
        self.model = backbone
        self.sample_rate, self.backbone_rate = int(sample_rate), int(backbone_rate)
        self.normalize_waveform, self.layer = bool(normalize_waveform), layer
        self.strides = [(blk.conv.kernel_size[0], blk.conv.stride[0]) for blk in backbone.feature_extractor.conv_layers]
        field = 1
        for kernel, stride in reversed(self.strides):
            field = (field - 1) * stride + kernel
        self.min_samples = field  # one frame's receptive field (400 samples, 25 ms, for every bundle)
        layers = backbone.encoder.transformer.layers
        self.wavlm = isinstance(layers[0].attention, WavLMSelfAttention)
        dim = backbone.encoder.feature_projection.projection.out_features
        # Registered in this order so the state_dict ends with the output layer (the loader's
        # report reads the class count from the last new weight).
        self.mix = LayerMix(len(layers)) if layer is None else None
        self.pool = AttentivePool(dim) if pooling == "attentive" else None
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Dropout(dropout), nn.Linear(dim, num_classes))
        # What fine-tuning trains first; another num_classes replaces head.2 alone.
        self.torchrig_head = tuple(n for n in ("mix", "pool", "head") if getattr(self, n) is not None)
        if freeze_feature_encoder:
            backbone.feature_extractor.requires_grad_(False)
        # The layers after `layer` are never run: frozen (still loaded), so nothing trains them and
        # DDP finds no parameter without a gradient. Pre-LN models (Transformer.layer_norm_first
        # False) end with a LayerNorm, applied after their last layer only.
        transformer = backbone.encoder.transformer
        self.final_norm = not transformer.layer_norm_first
        for unused in layers[layer or len(layers):]:
            unused.requires_grad_(False)
        if self.final_norm and layer is not None and layer < len(layers):
            transformer.layer_norm.requires_grad_(False)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() == 3:
            x = x.mean(1)  # mono
        if lengths is not None:
            lengths = lengths.to(x.device)
        if self.sample_rate != self.backbone_rate:
            x = torchaudio.functional.resample(x, self.sample_rate, self.backbone_rate)
            if lengths is not None:  # resample gives ceil(n * new / orig) samples for n
                lengths = (lengths * self.backbone_rate + self.sample_rate - 1) // self.sample_rate
                # The filter rings past each clip's end: zeros there, as after a clip resampled alone
                # (it matters when a clip shorter than one frame is padded up to one).
                x = x * valid_frames(lengths, x.shape[-1], x.device).to(x.dtype)
        if x.shape[-1] < self.min_samples:  # shorter than one frame: the zeros after it count as audio
            x = F.pad(x, (0, self.min_samples - x.shape[-1]))
        if lengths is not None:
            lengths = lengths.clamp(self.min_samples, x.shape[-1])
            if bool((lengths == x.shape[-1]).all()):
                lengths = None  # nothing is padding
        if self.normalize_waveform:
            x = self._normalize(x, lengths)
        features, frames = self._features(x, lengths)
        layers = self._layers(features, frames)
        h = layers[-1] if self.mix is None else self.mix(layers)  # (batch, frames, dim)
        mask = valid_frames(frames, h.shape[1], h.device)
        if self.pool is not None:
            pooled = self.pool(h, mask)
        elif mask is None:
            pooled = h.mean(1)
        else:
            weight = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * weight).sum(1) / weight.sum(1)
        return self.head(pooled)

    @staticmethod
    def _normalize(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Zero mean, unit variance over each clip's own samples (fairseq's per-utterance
        ``layer_norm``; torchaudio's wrapper would normalise over the whole padded batch)."""
        if lengths is None:
            return F.layer_norm(x, x.shape[-1:])
        mask = valid_frames(lengths, x.shape[-1], x.device).to(x.dtype)
        n = lengths[:, None].to(x.dtype)
        mean = (x * mask).sum(-1, keepdim=True) / n
        var = ((x - mean) ** 2 * mask).sum(-1, keepdim=True) / n
        return (x - mean) / torch.sqrt(var + 1e-5) * mask

    def _features(self, x: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """torchaudio's ``FeatureExtractor``, with the base models' GroupNorm over each clip's own
        frames. Returns ``(batch, frames, 512)`` and the frames of each clip."""
        h = x.unsqueeze(1)
        for block, (kernel, stride) in zip(self.model.feature_extractor.conv_layers, self.strides):
            h = block.conv(h)
            if lengths is not None:
                lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
            if isinstance(block.layer_norm, nn.GroupNorm) and lengths is not None:
                h = _masked_group_norm(h, lengths, block.layer_norm)
            elif block.layer_norm is not None:
                h = block.layer_norm(h)
            h = F.gelu(h)
        return h.transpose(1, 2), lengths

    def _layers(self, features: torch.Tensor, frames: torch.Tensor | None) -> list[torch.Tensor]:
        """Each transformer layer's output, up to ``layer``: ``Encoder.extract_features`` with the
        padding masked for WavLM too (torchaudio's WavLM rejects the attention mask it is given)."""
        encoder = self.model.encoder
        h = encoder.feature_projection(features)
        pad = None if frames is None else ~valid_frames(frames, h.shape[1], h.device)
        additive = keys = None
        if pad is not None:
            h = h.masked_fill(pad.unsqueeze(-1), 0.0)  # the positional convolution sees zeros there
            if self.wavlm:  # a float key mask, as WavLM's float position bias wants it
                keys = torch.zeros(pad.shape, dtype=h.dtype, device=h.device).masked_fill(pad, float("-inf"))
            else:  # torchaudio's additive mask, (batch, 1, frames, frames)
                additive = (-10000.0 * pad[:, None, None, :].to(h.dtype)).expand(-1, 1, h.shape[1], -1)
        transformer = encoder.transformer
        h = transformer._preprocess(h)
        out: list[torch.Tensor] = []
        bias = None
        for layer in transformer.layers[:self.layer or len(transformer.layers)]:
            if self.wavlm:
                h, bias = layer(h, None, position_bias=bias, key_padding_mask=keys)
            else:
                h, _ = layer(h, additive)
            out.append(h)
        if self.final_norm and len(out) == len(transformer.layers):
            out[-1] = transformer.layer_norm(out[-1])  # as Transformer.forward ends
        return out


class BundleWeights:
    """A bundle's pretrained weights, as core's loader asks for them (``NamedWeights``): the file
    torchaudio's ``bundle.get_model()`` fetches, from torch.hub's cache
    (``$TORCH_HOME/hub/checkpoints``) or downloaded into it by torchaudio's own loader."""

    def __init__(self, name: str) -> None:
        self.name, self.bundle = _bundle(name)
        file = Path(self.bundle._path).name
        self.label = f"torchaudio.pipelines.{self.name}"
        self.url = self.bundle._path if self.bundle._path.startswith("https") else URL + file
        self.path = Path(torch.hub.get_dir()) / "checkpoints" / file
        self.transform_kwargs: dict[str, dict] = {}  # the model resamples and normalises itself
        self.model_kwargs = {"bundle": self.name}  # the weights set the architecture

    @classmethod
    def find(cls, name: str, *, model_kwargs: dict | None = None) -> BundleWeights:
        """``DEFAULT`` (the model's ``bundle``, else ``WAV2VEC2_BASE``) or a bundle's name, which
        then sets the architecture (``bundle``); weights of another bundle than the one set are
        refused, as their tensors may fit the other architecture shape for shape."""
        chosen = (model_kwargs or {}).get("bundle")
        if name == "DEFAULT":
            return cls(chosen or DEFAULT_BUNDLE)
        if isinstance(name, str) and name.removeprefix("torchaudio.pipelines.") in BUNDLES:
            found = cls(name)
            if chosen is not None and _bundle(chosen)[0] != found.name:
                raise torchrig.TorchrigError(
                    f"audio/wav2vec2: weights {name!r} are {found.name}'s, but bundle is {chosen!r}. Use "
                    f"weights: DEFAULT for {chosen}'s own weights, or leave bundle out (or set it to {found.name}).")
            return found
        close = difflib.get_close_matches(str(name), ("DEFAULT", *BUNDLES), n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise torchrig.TorchrigError(
            f"audio/wav2vec2: unknown weights {name!r}.{hint} Named weights are DEFAULT ({DEFAULT_BUNDLE}) or a "
            f"bundle's name ({', '.join(BUNDLES)}); or a weights file, or a torchrig "
            "run dir.")

    def load(self) -> dict[str, torch.Tensor]:
        """torchaudio's own loader (torch.hub's ``load_state_dict_from_url``), keys prefixed to
        match :class:`Wav2Vec2Classifier`'s ``model``."""
        state = self.bundle._get_state_dict({"map_location": "cpu"})
        return {f"model.{k}": v for k, v in state.items()}


def _check(sample_rate: int, layer: int | None, pooling: str, num_classes: int, in_channels: int, num_layers: int,
           dropout: float) -> None:
    owner = "audio/wav2vec2"
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise torchrig.TorchrigError(f"{owner}: {name} must be a whole number >= 1, got {value!r}.")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 1000 <= sample_rate <= 384_000:
        raise torchrig.TorchrigError(f"{owner}: sample_rate must be the input's rate in Hz, a whole number between "
                                     f"1000 and 384000 (e.g. 16000), got {sample_rate!r}.")
    if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= num_layers):
        raise torchrig.TorchrigError(f"{owner}: layer must be a transformer layer from 1 to {num_layers} of this "
                                     f"bundle, or null for a learned mix of all layers, got {layer!r}.")
    if pooling not in POOLINGS:
        raise torchrig.TorchrigError(f"{owner}: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}.")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise torchrig.TorchrigError(f"{owner}: dropout must be a number in [0, 1), got {dropout!r}.")


def wav2vec2(*, num_classes: int = 10, in_channels: int = 1, sample_rate: int = 16000, bundle: str = DEFAULT_BUNDLE,
             layer: int | None = None, pooling: str = "mean", dropout: float = 0.1,
             freeze_feature_encoder: bool = True) -> nn.Module:
    """A pretrained self-supervised speech model (torchaudio's bundles) as a clip classifier.

    The bundle's architecture, randomly initialised; ``weights: DEFAULT`` (WAV2VEC2_BASE) or
    ``weights: <the bundle's name>`` loads its pretrained weights (torch.hub fetches them into
    $TORCH_HOME/hub/checkpoints, as torchaudio does; 360 MB for the base models, 1.2 GB for the
    large ones, more for XLS-R 1B/2B).
    ``weights: HUBERT_BASE`` alone builds HuBERT's architecture (the weights set ``bundle``);
    ``DEFAULT`` loads the chosen bundle's own weights. Waveforms of any rate and channels are mixed to mono and resampled inside; the
    features of one transformer layer, or a learned mix of all of them (SUPERB), are pooled over
    each clip's own frames into a LayerNorm-dropout-linear head. Padding is ignored exactly.
    ~95M parameters (base), ~315M (large); a GPU is advisable for training.

    Args:
        num_classes: outputs (filled in from the dataset by recipes).
        in_channels: of the input (filled in from the dataset); channels are averaged to mono.
        sample_rate: of the input (filled in from the dataset); resampled to the bundle's 16 kHz.
        bundle: WAV2VEC2_BASE, WAV2VEC2_LARGE, WAV2VEC2_LARGE_LV60K, WAV2VEC2_XLSR53,
            WAV2VEC2_XLSR_300M, WAV2VEC2_XLSR_1B, WAV2VEC2_XLSR_2B, HUBERT_BASE, HUBERT_LARGE,
            HUBERT_XLARGE, WAVLM_BASE, WAVLM_BASE_PLUS or WAVLM_LARGE.
        layer: use this transformer layer's features (1-based; the layers after it are neither
            computed nor trained); null: a learned softmax-weighted sum of all layers.
        pooling: "mean" or "attentive" (learned weights per frame) over time.
        dropout: before the linear layer.
        freeze_feature_encoder: keep the convolutional feature encoder frozen (as fairseq's
            fine-tuning does); fine-tuning never unfreezes it.

    Named weights: DEFAULT (WAV2VEC2_BASE) and each bundle's name.
    """
    _, found = _bundle(bundle)
    _check(sample_rate, layer, pooling, num_classes, in_channels, found._params["encoder_num_layers"], dropout)
    return Wav2Vec2Classifier(_backbone(found), num_classes=num_classes, sample_rate=sample_rate,
                              backbone_rate=int(found.sample_rate), normalize_waveform=found._normalize_waveform,
                              layer=layer, pooling=pooling, dropout=float(dropout),
                              freeze_feature_encoder=bool(freeze_feature_encoder))


wav2vec2.named_weights = BundleWeights.find  # type: ignore[attr-defined]
plugin.model(wav2vec2)
