"""Features and augmentation: shapes, per-clip == batched, and what each augmentation promises."""

from __future__ import annotations

import pytest
import torch

import torchrig
from torchrig_audio._features import FrontEnd, LogMel, normalize

WAVE = torch.randn(1, 8000) * 0.1  # 0.5 s at 16 kHz


@pytest.mark.parametrize("name", torchrig.list_transforms(plugin="audio"))
def test_every_transform_builds_and_runs(name):
    kwargs = {"transforms": ["audio/random_gain", "audio/log_mel"]} if name == "audio/compose" else {}
    transform = torchrig.get_transform(name, **kwargs)
    x = torchrig.get_transform("audio/log_mel")(WAVE) if name == "audio/spec_augment" else WAVE
    out = transform(x)
    assert isinstance(out, torch.Tensor) and torch.isfinite(out).all()


def test_log_mel_and_mfcc_shapes():
    assert torchrig.get_transform("audio/log_mel", n_mels=40)(WAVE).shape == (1, 40, 8000 // 160 + 1)
    stereo = torch.randn(2, 16000)
    assert torchrig.get_transform("audio/mfcc", n_mfcc=13)(stereo).shape == (2, 13, 101)
    with pytest.raises(torchrig.TorchrigError, match="n_mfcc \\(80\\) cannot exceed n_mels"):
        torchrig.get_transform("audio/mfcc", n_mfcc=80)


def test_per_clip_features_equal_the_batched_front_end():
    per_clip = torchrig.get_transform("audio/log_mel", n_mels=32)
    front = FrontEnd(n_mels=32, norm=None, spec_augment=False).eval()
    batch = torch.randn(3, 1, 8000) * 0.1
    batched, frames = front(batch, torch.tensor([8000, 8000, 8000]))
    for i in range(3):
        torch.testing.assert_close(batched[i], per_clip(batch[i]))
    assert frames.tolist() == [51, 51, 51]


def test_normalize_ignores_padding():
    feats = torch.randn(2, 1, 8, 20) * 5 + 3
    out = normalize(feats, torch.tensor([20, 12]))
    assert torch.all(out[1, ..., 12:] == 0)
    assert abs(float(out[1, ..., :12].mean())) < 1e-4 and abs(float(out[1, ..., :12].std(unbiased=False)) - 1) < 1e-3
    torch.testing.assert_close(out[1:, ..., :12], normalize(feats[1:, ..., :12]))
    per_bin = normalize(feats, mode="bins")
    torch.testing.assert_close(per_bin.mean(-1), torch.zeros(2, 1, 8), atol=1e-5, rtol=0)


def test_normalize_transform_on_waveform_and_features():
    wave = torchrig.get_transform("audio/normalize")(WAVE * 7 + 1)
    assert abs(float(wave.mean())) < 1e-4 and abs(float(wave.std()) - 1) < 1e-2
    with pytest.raises(torchrig.TorchrigError, match="mode must be"):
        torchrig.get_transform("audio/normalize", mode="global")


def test_spec_augment_masks_with_zeros():
    feats = torch.ones(1, 40, 100)
    out = torchrig.get_transform("audio/spec_augment", freq_mask=10, time_mask=20, time_mask_p=1.0)(feats)
    assert out.shape == feats.shape and (out == 0).any() and (out == 1).any()


def test_random_gain_stays_in_range():
    gain = torchrig.get_transform("audio/random_gain", gain_db=[-6, 6])
    for _ in range(20):
        ratio = float(gain(WAVE).abs().max() / WAVE.abs().max())
        assert 10 ** (-6 / 20) - 1e-6 <= ratio <= 10 ** (6 / 20) + 1e-6
    with pytest.raises(torchrig.TorchrigError, match="gain_db must be"):
        torchrig.get_transform("audio/random_gain", gain_db=[6, -6])


def test_time_shift_keeps_length_and_moves_the_signal():
    x = torch.zeros(1, 1000)
    x[0, 500] = 1.0
    shift = torchrig.get_transform("audio/time_shift", max_shift=0.01, sample_rate=16000)  # 160 samples
    positions = {int(shift(x).argmax()) for _ in range(30)}
    assert all(340 <= p <= 660 for p in positions) and len(positions) > 5
    assert shift(x).shape == x.shape


def test_add_noise_hits_the_snr():
    signal = torch.sin(torch.arange(16000) / 5.0)[None]
    noisy = torchrig.get_transform("audio/add_noise", snr_db=[20, 20], p=1.0)(signal)
    snr = 10 * torch.log10(signal.pow(2).sum() / (noisy - signal).pow(2).sum())
    assert abs(float(snr) - 20) < 0.01
    pink = torchrig.get_transform("audio/add_noise", snr_db=10, p=1.0, color="pink")(signal)
    spectrum = torch.fft.rfft(pink[0] - signal[0]).abs()
    assert spectrum[10:200].mean() > 3 * spectrum[4000:6000].mean()  # pink: more energy low down
    assert torch.equal(torchrig.get_transform("audio/add_noise", p=0.0)(signal), signal)


def test_augment_preset_composes_and_can_leave_parts_out():
    preset = torchrig.get_transform("audio/augment", gain_db=None, max_shift=None, snr_db=None)
    assert torch.equal(preset(WAVE), WAVE)
    assert len(torchrig.get_transform("audio/augment").transforms) == 3


def test_compose_of_components():
    chain = torchrig.get_transform("audio/compose", transforms=[{"name": "audio/log_mel", "n_mels": 16},
                                                                 "audio/normalize"])
    assert chain(WAVE).shape == (1, 16, 51)
    with pytest.raises(torchrig.TorchrigError, match=r"audio/compose: a transform is a name \(.plugin/name.\), a mapping"):
        torchrig.get_transform("audio/compose", transforms=[3])


def test_log_mel_top_db_is_per_clip_in_a_batch():
    module = LogMel(16000, n_mels=16)
    loud, quiet = torch.randn(1, 4000), torch.randn(1, 4000) * 1e-3
    together = module(torch.stack([loud, quiet]))
    torch.testing.assert_close(together[1], module(quiet))
