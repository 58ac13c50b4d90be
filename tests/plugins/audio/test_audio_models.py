"""Every registered audio model runs forward and backward on padded batches (parametrized over the
registry), ignores its padding, and switches SpecAugment off in eval mode."""

from __future__ import annotations

import pytest
import torch

import torchrig

# audio/hf brings its checkpoint's own model (tests/plugins/audio/test_audio_hf.py builds one)
MODELS = [m for m in torchrig.list_models(plugin="audio") if m != "audio/hf"]
LENGTHS = torch.tensor([8000, 5000, 1200])  # 0.5 s, 0.3 s, 75 ms at 16 kHz


def _batch(channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(3, channels, 8000) * 0.1
    for i, n in enumerate(LENGTHS.tolist()):
        x[i, :, n:] = 0
    return x, LENGTHS


@pytest.mark.parametrize("name", MODELS)
def test_model_forwards_and_backwards(name):
    model = torchrig.get_model(name, num_classes=5)
    x, lengths = _batch()
    out = model(x, lengths)
    assert out.shape == (3, 5) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (3, 5)  # without lengths: nothing is padding
        assert model(x[:1, :, :800]).shape == (1, 5)  # a 50 ms clip
        assert model(x[:1, :, :40], torch.tensor([40])).shape == (1, 5)  # 2.5 ms: shorter than one window


@pytest.mark.parametrize("name", MODELS)
def test_model_takes_stereo(name):
    model = torchrig.get_model(name, num_classes=2, in_channels=2).eval()
    x, lengths = _batch(channels=2)
    with torch.no_grad():
        assert model(x, lengths).shape == (3, 2)


@pytest.mark.parametrize("name", MODELS)
def test_eval_is_deterministic_and_nearly_ignores_padding(name):
    model = torchrig.get_model(name, num_classes=4).eval()
    x, lengths = _batch()
    with torch.no_grad():
        batched = model(x, lengths)
        torch.testing.assert_close(model(x, lengths), batched)  # no SpecAugment, no dropout
        alone = model(x[1:2, :, :5000], lengths[1:2])
    # Convolutions see a few frames of padding at the clip's end; the scores move a little. Measured
    # over seeds 0-9 (randomly initialised models): at most 0.154 of the largest score (mel_cnn;
    # conformer 0.135, m5 0.071), so the bound is twice that. The old 0.1 failed on 3 of 4 other
    # seeds. Without the lengths (padding seen as audio) conformer moves by 0.53-1.39.
    assert float((alone - batched[1:2]).abs().max()) < 0.31 * float(batched.abs().max()) + 1e-3


@pytest.mark.parametrize("name", [m for m in MODELS if m not in ("audio/m5", "audio/wav2vec2")])  # on raw waveforms
def test_precomputed_features_match_the_front_end(name):
    model = torchrig.get_model(name, num_classes=3, n_mels=32).eval()
    pre = torchrig.get_model(name, num_classes=3, n_mels=32, features="precomputed").eval()
    pre.load_state_dict(model.state_dict())  # the front end holds no trained weights
    log_mel = torchrig.get_transform("audio/log_mel", n_mels=32)
    x = torch.randn(2, 1, 4000) * 0.1
    with torch.no_grad():
        feats = torch.stack([log_mel(clip) for clip in x])
        torch.testing.assert_close(pre(feats), model(x), atol=1e-4, rtol=1e-4)


def test_mfcc_front_end_and_option_errors():
    model = torchrig.get_model("audio/mel_cnn", num_classes=3, features="mfcc", n_mfcc=20)
    assert model(torch.randn(2, 1, 4000)).shape == (2, 3)
    with pytest.raises(torchrig.TorchrigError, match="features must be one of log_mel, mfcc, precomputed"):
        torchrig.get_model("audio/mel_cnn", features="mel")
    with pytest.raises(torchrig.TorchrigError, match="d_model \\(90\\) must be a multiple of num_heads"):
        torchrig.get_model("audio/conformer", d_model=90, num_heads=4)


def test_spec_augment_only_in_training():
    model = torchrig.get_model("audio/mel_cnn", num_classes=3, freq_mask=30, time_mask=30)
    x = torch.randn(2, 1, 8000)
    front = model.frontend.train()
    torch.manual_seed(0)
    masked, _ = front(x)
    assert (masked == 0).float().mean() > 0.05
    clean, _ = front.eval()(x)
    assert (clean == 0).float().mean() < 0.01
