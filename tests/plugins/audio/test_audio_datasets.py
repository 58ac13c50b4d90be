"""audio/folder on real files: mixed rates, channels and formats; bad files; splits; the reader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torchrig
from torchrig_audio._folder import clip
from torchrig_audio._io import _torchcodec_available, pad_collate, read_clip

from audio_files import fill, tone, write


def test_mixed_rates_channels_and_formats_become_mono_16k(tone_folder):
    ds = torchrig.get_dataset("audio/folder", root=str(tone_folder))
    assert ds.classes == ["high", "low"]
    assert len(ds) == 12 and sorted(set(ds.targets)) == [0, 1]
    assert ds.model_kwargs == {"sample_rate": 16000, "in_channels": 1}
    assert ds.skipped == [] and ds.preloaded
    for (path, target), waveform in zip(ds.samples, (ds[i][0] for i in range(len(ds)))):
        assert waveform.dtype == torch.float32 and waveform.shape[0] == 1
        seconds = waveform.shape[-1] / 16000
        assert 0.29 < seconds < 0.91, path
        assert path.endswith((".wav", ".flac", ".ogg"))


def test_resampled_tone_keeps_its_pitch(tmp_path):
    path = write(tmp_path / "a.wav", tone(1000, 1.0, 44100, 2), 44100)
    waveform = read_clip(path, sample_rate=16000)
    assert waveform.shape == (1, 16000)
    spectrum = torch.fft.rfft(waveform[0]).abs()
    assert abs(int(spectrum.argmax()) - 1000) <= 2  # 1 Hz bins: the tone is still at 1000 Hz


def test_channels_two_keeps_stereo_and_repeats_mono(tmp_path):
    stereo = write(tmp_path / "s.flac", tone(500, 0.5, 22050, 2), 22050, "FLAC")
    mono = write(tmp_path / "m.wav", tone(500, 0.5, 22050, 1), 22050)
    left_right = read_clip(stereo, sample_rate=16000, channels=2)
    assert left_right.shape == (2, 8000) and not torch.allclose(left_right[0], left_right[1])
    twice = read_clip(mono, sample_rate=16000, channels=2)
    assert twice.shape == (2, 8000) and torch.equal(twice[0], twice[1])
    with pytest.raises(Exception, match="2 channels, and channels=3"):
        read_clip(stereo, sample_rate=16000, channels=3)


def test_duration_pads_and_crops_and_max_duration_only_crops(tone_folder):
    fixed = torchrig.get_dataset("audio/folder", root=str(tone_folder), duration=0.5, sample_rate=8000)
    assert {fixed[i][0].shape for i in range(len(fixed))} == {(1, 4000)}
    capped = torchrig.get_dataset("audio/folder", root=str(tone_folder), max_duration=0.5, sample_rate=8000)
    lengths = {capped[i][0].shape[-1] for i in range(len(capped))}
    assert max(lengths) == 4000 and min(lengths) < 4000


def test_collate_pads_per_batch_with_lengths(tone_folder):
    ds = torchrig.get_dataset("audio/folder", root=str(tone_folder))
    assert ds.collate_fn is pad_collate
    (x, lengths), y = pad_collate([ds[0], ds[7], ds[3]])
    assert x.shape == (3, 1, int(lengths.max())) and y.tolist() == [ds.targets[i] for i in (0, 7, 3)]
    shortest = int(lengths.argmin())
    assert torch.all(x[shortest, :, lengths[shortest]:] == 0)
    assert torch.equal(x[shortest, :, :lengths[shortest]], ds[(0, 7, 3)[shortest]][0])


@pytest.mark.parametrize("kind, reason", [
    ("empty", "empty \\(0 bytes\\)"),
    ("corrupt", "not a readable audio file"),
    ("truncated", "truncated"),
    ("silent", "silent"),
    ("cut", "corrupt or truncated"),
])
def test_an_unusable_file_raises_naming_it(tone_folder, bad_files, kind, reason):
    for other, path in bad_files.items():
        if other != kind:
            path.unlink()
    with pytest.raises(torchrig.TorchrigError, match=f"{bad_files[kind].name}.*{reason}.*on_error: skip"):
        torchrig.get_dataset("audio/folder", root=str(tone_folder))


def test_on_error_skip_leaves_out_and_counts_unusable_files(tone_folder, bad_files):
    ds = torchrig.get_dataset("audio/folder", root=str(tone_folder), on_error="skip")
    assert len(ds) == 12
    assert sorted(ds.skipped) == sorted(str(p) for p in bad_files.values())


def test_a_folder_of_only_unusable_files_is_an_error_even_when_skipping(tmp_path, bad_files, tone_folder):
    for path in tone_folder.rglob("*"):
        if path.is_file() and path not in bad_files.values():
            path.unlink()
    write(tone_folder / "high" / "quiet.wav", np.zeros((800, 1), np.float32), 16000)
    with pytest.raises(torchrig.TorchrigError, match="none of the 6 sound files can be used. The first, .*"):
        torchrig.get_dataset("audio/folder", root=str(tone_folder), on_error="skip")


@pytest.mark.skipif(_torchcodec_available(), reason="TorchCodec installed: it reads .m4a")
def test_ffmpeg_only_formats_say_how_to_read_them(tone_folder):
    (tone_folder / "low" / "memo.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(64))
    with pytest.raises(torchrig.TorchrigError, match="memo.m4a.*install TorchCodec.*ffmpeg -i memo.m4a memo.flac"):
        torchrig.get_dataset("audio/folder", root=str(tone_folder))
    assert len(torchrig.get_dataset("audio/folder", root=str(tone_folder), on_error="skip").skipped) == 1


def test_without_preload_a_silent_or_cut_file_raises_when_read(tone_folder, bad_files):
    for name in ("empty", "corrupt", "truncated"):
        bad_files[name].unlink()
    ds = torchrig.get_dataset("audio/folder", root=str(tone_folder), preload=False)
    assert not ds.preloaded and ds.waveforms is None and len(ds) == 14  # their headers look fine
    index = [p for p, _ in ds.samples].index(str(bad_files["silent"]))
    assert ds[0][0].shape[0] == 1
    with pytest.raises(torchrig.TorchrigError, match="silent.wav.*silent.*preload: true"):
        ds[index]
    with pytest.raises(torchrig.TorchrigError, match="cut.flac.*corrupt or truncated"):
        ds[[p for p, _ in ds.samples].index(str(bad_files["cut"]))]


def test_split_folders_become_the_splits(tmp_path):
    fill(tmp_path / "train", 4)
    fill(tmp_path / "test", 2, seed=5)
    kwargs = {"root": str(tmp_path)}
    train = torchrig.get_dataset("audio/folder", split="train", **kwargs)
    test = torchrig.get_dataset("audio/folder", split="test", **kwargs)
    assert torchrig.get_dataset("audio/folder", split="val", **kwargs) is None  # carved by the recipe
    assert (len(train), len(test)) == (8, 4) and test.classes == train.classes == ["high", "low"]
    assert torchrig.get_dataset("audio/folder", split="val", root=str(tmp_path / "train")) is None


def test_hidden_and_non_audio_files_are_ignored_and_nested_files_found(tone_folder):
    (tone_folder / "low" / ".DS_Store").write_bytes(b"junk")
    (tone_folder / "low" / "notes.txt").write_text("not audio")
    write(tone_folder / "high" / "alice" / "take1.wav", tone(2000, 0.5, 16000), 16000)
    write(tone_folder / "high" / ".trash" / "old.wav", tone(2000, 0.5, 16000), 16000)
    ds = torchrig.get_dataset("audio/folder", root=str(tone_folder))
    assert len(ds) == 13 and any(p.endswith("alice/take1.wav") for p, _ in ds.samples)


@pytest.mark.parametrize("kwargs, match", [
    ({"root": "/no/such/folder"}, "root '/no/such/folder' is not a folder"),
    ({"sample_rate": 44.1}, "sample_rate must be a whole number"),
    ({"channels": 0}, "channels must be 1"),
    ({"duration": -1}, "duration must be a positive number"),
    ({"on_error": "ignore"}, "on_error must be 'raise' or 'skip'"),
])
def test_bad_arguments_say_what_to_do(tone_folder, kwargs, match):
    with pytest.raises(torchrig.TorchrigError, match=match):
        torchrig.get_dataset("audio/folder", **{"root": str(tone_folder), **kwargs})


def test_one_class_or_no_files_is_explained(tmp_path):
    write(tmp_path / "only" / "a.wav", tone(300, 0.5, 16000), 16000)
    with pytest.raises(torchrig.TorchrigError, match="at least two"):
        torchrig.get_dataset("audio/folder", root=str(tmp_path))
    (tmp_path / "only" / "a.wav").unlink()
    with pytest.raises(torchrig.TorchrigError, match="no files under"):
        torchrig.get_dataset("audio/folder", root=str(tmp_path))


def test_reader_decodes_as_the_run_dataset_did(tmp_path):
    path = write(tmp_path / "x.flac", tone(440, 1.2, 48000, 2), 48000, "FLAC")
    waveform = clip(str(path), dataset={"name": "audio/folder", "root": "r", "sample_rate": 8000, "duration": 1.0})
    assert waveform.shape == (1, 8000)
    assert clip(str(path)).shape == (1, 19200)  # defaults: 16 kHz, mono, own length
    (inputs, lengths), target = clip.collate_fn([(waveform, 0)])
    assert inputs.shape == (1, 1, 8000) and lengths.tolist() == [8000] and target.tolist() == [0]
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(torchrig.TorchrigError, match="bad.wav.*not a readable audio file"):
        clip(str(tmp_path / "bad.wav"))


def test_nan_samples_are_unusable(tmp_path):
    audio = tone(300, 0.5, 16000)
    audio[100] = np.nan
    path = write(tmp_path / "nan.wav", audio, 16000, subtype="FLOAT")
    with pytest.raises(Exception, match="NaN"):
        read_clip(path, sample_rate=16000)
