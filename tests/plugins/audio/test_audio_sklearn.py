"""torchrig_audio.sklearn.LogMel: scikit-learn's estimator checks, arrays, ragged lists and sound
files alike, the features audio/mel_cnn computes itself, errors that name the input, and a few
real spoken digits."""

from __future__ import annotations

import pickle
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from audio_files import tone, write
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import check_estimator

import torchrig
from torchrig.sklearn import ModelInputs
from torchrig_audio.sklearn import LogMel

FRAMES = 101  # 1 s at 16 kHz, 10 ms hop, centred frames: 16000 // 160 + 1
EXPECTED_FAILED = {
    "check_n_features_in_after_fitting": "clips of any length are valid input (each is cropped or padded to "
                                         "`duration`), so transform does not reject a width other than fit's",
}


def _waves(lengths, rate=16000, seed=0):
    return [tone(300 + 200 * i, n / rate, rate, seed=seed + i)[:, 0] for i, n in enumerate(lengths)]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")  # array API checks: not supported
@pytest.mark.parametrize("est", [LogMel(), LogMel(sample_rate=8000, duration=0.25, n_mels=32, norm=None)],
                         ids=["defaults", "8k-dB"])
def test_passes_sklearn_estimator_checks(est):
    # The checks feed (n, 1..10)-sample "waveforms": zero-padded to `duration`, they are real clips.
    check_estimator(est, expected_failed_checks=EXPECTED_FAILED)


def test_short_array_clips_are_padded_to_duration():
    X = np.random.default_rng(0).uniform(-1, 1, (3, 4))
    out = LogMel().fit_transform(X)
    padded = np.pad(X, ((0, 0), (0, 16000 - 4)))
    assert out.shape == (3, 1, 64, FRAMES) and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(out, LogMel().transform(padded))
    long = np.random.default_rng(1).uniform(-1, 1, (2, 40000))  # 2.5 s: centre-cropped to 1 s
    np.testing.assert_array_equal(LogMel().transform(long), LogMel().transform(long[:, 12000:28000]))


def test_features_are_mel_cnns_own_and_its_kwargs_take_them():
    waves = _waves([16000, 9000, 3000])
    X = LogMel().fit_transform(waves)
    assert isinstance(X, ModelInputs) and X.shape == (3, 1, 64, FRAMES)
    assert X.model_kwargs == {"features": "precomputed", "n_mels": 64, "in_channels": 1, "sample_rate": 16000,
                              "norm": None}
    batch = torch.stack([torch.nn.functional.pad(torch.from_numpy(w), (0, 16000 - len(w))) for w in waves])
    own = torchrig.get_model("audio/mel_cnn", num_classes=3).eval()  # computes log-mel from waveforms
    with torch.no_grad():
        features, _ = own.frontend(batch)
    torch.testing.assert_close(torch.from_numpy(np.asarray(X)), features)

    model = torchrig.get_model("audio/mel_cnn", num_classes=3, **X.model_kwargs)
    model.load_state_dict(own.state_dict())  # same weights: the same logits from features as from waveforms
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(torch.from_numpy(np.asarray(X))), own(batch))
    model.train()
    out = model(torch.from_numpy(np.asarray(X)))  # SpecAugment is the model's, in training
    assert out.shape == (3, 3) and torch.isfinite(out).all()


def test_arrays_ragged_lists_and_files_give_one_shape(tmp_path):
    waves = _waves([16000, 5000, 23000, 100])
    mono = write(tmp_path / "mono.wav", tone(440, 0.7, 16000), 16000)
    stereo = write(tmp_path / "stereo.wav", tone(440, 1.3, 8000, channels=2), 8000)
    flac = write(tmp_path / "c.flac", tone(900, 0.4, 22050), 22050, "FLAC")
    lm = LogMel()
    assert lm.transform(np.stack([waves[0], waves[0]])).shape == (2, 1, 64, FRAMES)
    assert lm.transform(waves).shape == (4, 1, 64, FRAMES)
    assert lm.transform([str(mono), stereo, flac, waves[1]]).shape == (4, 1, 64, FRAMES)
    assert LogMel(n_mels=40, hop_length=320).transform(waves).shape == (4, 1, 40, 51)


def test_file_input_equals_array_input_of_the_same_samples(tmp_path):
    path = write(tmp_path / "a.wav", tone(440, 0.7, 16000), 16000)
    samples, _ = sf.read(str(path), dtype="float32")
    lm = LogMel()
    np.testing.assert_array_equal(lm.transform([path]), lm.transform([samples]))

    stereo = write(tmp_path / "stereo.wav", tone(440, 1.3, 8000, channels=2), 8000)  # mixed to mono, resampled
    samples, _ = sf.read(str(stereo), dtype="float32")
    mono16k = torchaudio.transforms.Resample(8000, 16000)(torch.from_numpy(samples.mean(1))).numpy()
    np.testing.assert_allclose(lm.transform([stereo]), lm.transform([mono16k]), atol=1e-5)


def test_unreadable_file_is_named(tmp_path):
    good = write(tmp_path / "good.wav", tone(440, 0.5, 16000), 16000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + bytes(range(256)) * 4)
    with pytest.raises(torchrig.TorchrigError, match=re.escape(repr(str(bad))) + ".*not a readable audio file"):
        LogMel().transform([good, bad])
    with pytest.raises(torchrig.TorchrigError, match="missing.wav"):
        LogMel().transform([tmp_path / "missing.wav"])


@pytest.mark.parametrize("X, match", [
    (np.zeros((2, 2, 800)), r"shape \(2, 2, 800\).*mono.*X.mean\(axis=1\)"),
    (np.zeros(800), "1-D array of 800 numbers. Reshape your data"),
    ([np.zeros(800), np.zeros((2, 800))], r"X\[1\] has shape \(2, 800\).*x.mean\(axis=0\)"),
    ([np.zeros(800), np.zeros(0)], r"X\[1\] is empty \(0 samples\)"),
    ([np.array([0.1, np.nan])], r"X\[0\] holds NaN"),
    ([], "no clips"),
    (np.zeros((3, 0)), r"0 feature\(s\)"),
    ("clip.wav", r"one path.*\['clip.wav'\]"),
])
def test_bad_input_says_what_to_do(X, match):
    with pytest.raises(ValueError, match=match):
        LogMel().fit(X)


@pytest.mark.parametrize("params, match", [
    ({"norm": "max"}, "LogMel: norm must be 'utterance', 'bins' or null, got 'max'"),
    ({"duration": None}, "LogMel: duration must be seconds"),
    ({"duration": -1.0}, "LogMel: duration must be a positive number"),
    ({"n_mels": 0}, "LogMel: n_mels must be a whole number >= 1, got 0"),
])
def test_bad_parameters_are_named_at_fit_and_transform(params, match):
    for call in (LogMel(**params).fit, LogMel(**params).transform):
        with pytest.raises(torchrig.TorchrigError, match=match):
            call(np.zeros((1, 800)))


def test_pickle_and_clone_round_trip():
    waves = _waves([16000, 7000])
    lm = LogMel(n_mels=32, norm="bins").fit(np.stack([waves[0], waves[0]]))
    assert lm.n_features_in_ == 16000
    again = pickle.loads(pickle.dumps(lm))
    np.testing.assert_array_equal(again.transform(waves), lm.transform(waves))
    out = pickle.loads(pickle.dumps(lm.transform(waves)))
    assert isinstance(out, ModelInputs) and out.model_kwargs["n_mels"] == 32
    fresh = clone(lm)
    assert fresh.get_params() == lm.get_params() and not hasattr(fresh, "n_features_in_")
    assert not hasattr(lm.fit(waves), "n_features_in_")  # refit on a list: no stale width


def test_pipeline_separates_low_from_high_tones():
    rng = np.random.default_rng(0)
    freqs = np.r_[rng.uniform(250, 350, 12), rng.uniform(1800, 2200, 12)]
    X = [tone(f, rng.uniform(0.3, 0.9), 16000, seed=i)[:, 0] for i, f in enumerate(freqs)]
    y = np.repeat([0, 1], 12)
    pipe = make_pipeline(LogMel(n_mels=32), FunctionTransformer(lambda F: F.reshape(len(F), -1)),
                         LogisticRegression(max_iter=500))
    pipe.fit(X[::2], y[::2])
    assert (pipe.predict(X[1::2]) == y[1::2]).all()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")
def test_real_spoken_digits(tmp_path):
    small = {"max_voices": 3, "val_voices": 1, "test_voices": 1, "clips_per_voice": 1}  # 3 voices: ~1 s to build
    data = torchrig.get_dataset("audio/spoken_digits", split="train", root=str(tmp_path), duration=1.0, **small)
    paths = [path for path, _ in data.samples]
    X = LogMel().fit_transform(paths)
    assert X.shape == (10, 1, 64, FRAMES) and sorted(data.targets) == list(range(10)) and np.isfinite(X).all()
    from_dataset = LogMel().transform([data[i][0][0].numpy() for i in range(len(data))])
    np.testing.assert_allclose(X, from_dataset, atol=1e-4)  # the dataset resamples a batch at a time
    # Words last 0.3-0.9 s: the padded end is silence, one constant floor far below the speech.
    tail, speech = X[:, 0, :, -3:], X[:, 0, :, : FRAMES // 3]
    assert np.ptp(tail, axis=(1, 2)).max() < 1e-5 and (speech.max(axis=(1, 2)) > tail.max(axis=(1, 2)) + 2).all()
    model = torchrig.get_model("audio/mel_cnn", num_classes=10, **X.model_kwargs).eval()
    with torch.no_grad():
        assert model(torch.from_numpy(np.asarray(X))).shape == (10, 10)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")
def test_pipeline_grid_search_with_two_jobs_on_spoken_digits(tmp_path):
    """LogMel on file paths + RigClassifier("audio/mel_cnn") under GridSearchCV(n_jobs=2); test
    voices are never heard in training."""
    pytest.importorskip("skorch")
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    from torchrig.sklearn import RigClassifier

    sizes = {"max_voices": 40, "val_voices": 1, "test_voices": 6, "clips_per_voice": 2, "root": str(tmp_path)}
    train, test = (torchrig.get_dataset("audio/spoken_digits", split=s, duration=1.0, **sizes) for s in ("train", "test"))
    words = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    X, y = [str(p) for p, _ in train.samples], words[[t for _, t in train.samples]]
    search = GridSearchCV(
        Pipeline([("mel", LogMel(n_mels=32)),
                  ("net", RigClassifier("audio/mel_cnn", module__width=8, max_epochs=10, batch_size=32,
                                        verbose=0, train_split=None, random_state=0))]),
        {"net__lr": [3e-3, 1e-2]}, cv=2, n_jobs=2)
    search.fit(X, y)
    accuracy = search.score([str(p) for p, _ in test.samples], words[[t for _, t in test.samples]])
    assert accuracy > 0.6, accuracy  # ten classes: chance is 0.1
