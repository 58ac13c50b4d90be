"""torchrig_vision.sklearn.ImagePreprocessor on arrays of every layout, real image files and digits."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import check_estimator

import torchrig
from torchrig import TorchrigError
from torchrig.sklearn import ModelInputs
from torchrig_vision.sklearn import ImagePreprocessor

# Each check expected to fail, why, and the message it must fail with (so it fails for that reason only).
EXPECTED_FAILED = {
    "check_n_features_in": (
        "images of any size are resized, so there is no fixed feature count and no n_features_in_",
        r"^$"),
    "check_n_features_in_after_fitting": (
        "images of any size are resized, so there is no fixed feature count and no n_features_in_",
        "does not set the `n_features_in_` attribute"),
    "check_transformer_general": (
        "only its last step fails: it wants a different row width rejected; other sizes are resized",
        "does not raise an error when the number of features in transform is different"),
}


def assert_standardised(Xt, channels, size):
    assert isinstance(Xt, ModelInputs) and Xt.dtype == np.float32
    assert Xt.shape[1:] == (channels, size, size) and Xt.model_kwargs == {"in_channels": channels}
    np.testing.assert_allclose(Xt.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(Xt.std(axis=(0, 2, 3)), 1, atol=1e-3)


def test_sklearn_estimator_checks():
    pytest.importorskip("sklearn", minversion="1.6")  # expected_failed_checks and on_fail arrived in 1.6
    # The checks feed N x D tables of any width; flat_shape=(1, -1) reads each row as a 1 x D strip
    # image, a documented setting, so every check runs against the real fit and transform.
    results = check_estimator(ImagePreprocessor(size=4, flat_shape=(1, -1)), on_fail=None, on_skip=None,
                              expected_failed_checks={k: why for k, (why, _) in EXPECTED_FAILED.items()})
    assert [r["check_name"] for r in results if r["status"] == "failed"] == []
    xfails = {r["check_name"]: r["exception"] for r in results if r["status"] == "xfail"}
    assert set(xfails) == set(EXPECTED_FAILED)
    for name, exc in xfails.items():
        assert re.search(EXPECTED_FAILED[name][1], str(exc)), (name, exc)
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= {"check_array_api_input"}  # skipped by sklearn unless SCIPY_ARRAY_API=1 is set
    assert sum(r["status"] == "passed" for r in results) > 30


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(6, 20, 24, 3), dtype=np.uint8)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW", "float"])
def test_rgb_layouts_agree_and_are_standardised(rgb, layout):
    X = {"NHWC": rgb, "NCHW": rgb.transpose(0, 3, 1, 2), "float": rgb / 255.0}[layout]
    pre = ImagePreprocessor(size=16)
    Xt = pre.fit_transform(X)
    assert_standardised(Xt, 3, 16)
    assert pre.n_channels_ == 3 and pre.mean_.shape == pre.std_.shape == (3,)
    np.testing.assert_allclose(Xt, ImagePreprocessor(size=16).fit_transform(rgb), atol=1e-4)


def test_greyscale_layouts_agree(rgb):
    grey = rgb[..., 0]
    expected = ImagePreprocessor(size=8).fit_transform(grey)  # N x H x W
    assert_standardised(expected, 1, 8)
    for X in (grey[..., None], grey[:, None], grey.astype(np.float64)):
        np.testing.assert_allclose(ImagePreprocessor(size=8).fit_transform(X), expected, atol=1e-4)
    np.testing.assert_allclose(ImagePreprocessor(size=8).fit_transform(grey[:, :16, :16].reshape(6, -1)),
                               ImagePreprocessor(size=8).fit_transform(grey[:, :16, :16]), atol=1e-4)


def test_scale_and_normalize_off(rgb):
    pre = ImagePreprocessor(size=20, normalize=False).fit(rgb[:, :, :20])
    out = pre.transform(rgb[:, :, :20])
    np.testing.assert_allclose(out, rgb[:, :, :20].transpose(0, 3, 1, 2) / 255, atol=1e-6)  # same size: no resize
    floats = ImagePreprocessor(size=20, normalize=False).fit(rgb[:, :, :20] * 4.0)  # float in 0..1020
    assert floats.scale_ == 1020.0  # "auto": the training maximum
    np.testing.assert_allclose(floats.transform(rgb[:, :, :20] * 4.0), out, atol=1e-6)
    np.testing.assert_allclose(floats.transform(rgb[:, :, :20]), out, atol=1e-6)  # uint8: always / 255
    assert ImagePreprocessor(scale=1020, normalize=False).fit(rgb * 4.0).scale_ == 1020


def test_rgba_composited_on_white_and_channel_conversion(rgb):
    rgba = np.concatenate([rgb, np.zeros_like(rgb[..., :1])], axis=-1)  # fully transparent
    out = ImagePreprocessor(size=8, normalize=False).fit_transform(rgba)
    assert out.shape == (6, 3, 8, 8) and np.allclose(out, 1.0)
    grey = ImagePreprocessor(size=8, channels=1).fit_transform(rgb)
    assert_standardised(grey, 1, 8)
    three = ImagePreprocessor(size=8, channels=3).fit_transform(rgb[..., 0])
    assert_standardised(three, 3, 8)


def test_files_match_arrays(tmp_path, rgb):
    rgba = np.concatenate([rgb, np.full_like(rgb[..., :1], 255)], axis=-1)
    paths = []
    for i, img in enumerate(rgb):
        path = tmp_path / f"img {i}.png"
        Image.fromarray(rgba[i] if i % 2 else img).save(path)  # every other one RGBA, opaque
        paths.append(path if i % 3 else str(path))             # PathLike and str
    np.testing.assert_allclose(ImagePreprocessor(size=12).fit_transform(paths),
                               ImagePreprocessor(size=12).fit_transform(rgb), atol=1e-4)
    greys = []
    for i, img in enumerate(rgb[..., 1]):
        greys.append(str(tmp_path / f"grey{i}.png"))
        Image.fromarray(img).save(greys[-1])  # mode L
    pre = ImagePreprocessor(size=12).fit(greys)
    assert pre.n_channels_ == 1
    np.testing.assert_allclose(pre.transform(np.array(greys)),
                               ImagePreprocessor(size=12).fit_transform(rgb[..., 1]), atol=1e-4)
    # half-transparent RGBA files are composited on white exactly as RGBA arrays are
    rgba[..., 3] = np.random.default_rng(1).integers(0, 256, size=rgba.shape[:3])
    for i, img in enumerate(rgba):
        Image.fromarray(img).save(tmp_path / f"alpha{i}.png")
    alpha = ImagePreprocessor(size=12, normalize=False).fit_transform([tmp_path / f"alpha{i}.png" for i in range(6)])
    np.testing.assert_allclose(alpha, ImagePreprocessor(size=12, normalize=False).fit_transform(rgba), atol=2 / 255)
    # a colour file after fitting on greyscale files is converted to greyscale, like image_folder does
    assert pre.transform([paths[0]]).shape == (1, 1, 12, 12)


def test_jpeg_with_exif_rotation(tmp_path, rgb):
    img = Image.fromarray(rgb[0])  # 20 high, 24 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    img.save(tmp_path / "photo.jpg", quality=95, exif=exif)
    Xt = ImagePreprocessor(size=8, normalize=False).fit_transform([tmp_path / "photo.jpg"])
    upright = np.rot90(rgb[0], k=-1)
    expected = ImagePreprocessor(size=8, normalize=False).fit_transform(upright[None])
    assert np.abs(Xt - expected).mean() < 0.03  # JPEG is lossy; the wrong orientation differs by ~0.3


def test_corrupt_file_is_named(tmp_path, rgb):
    good = tmp_path / "good.png"
    Image.fromarray(rgb[0]).save(good)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    with pytest.raises(TorchrigError, match=re.escape(f"Cannot read image {str(bad)!r}")):
        ImagePreprocessor().fit([good, bad])
    with pytest.raises(TorchrigError, match="pass a list of paths"):
        ImagePreprocessor().fit(str(good))


@pytest.mark.parametrize("X, match", [
    (np.zeros(10), "X is 1-D .* Reshape your data"),
    (np.zeros((4, 10)), "rows of 10 values, which are not square images. Pass flat_shape"),
    (np.zeros((4, 5, 6, 7)), r"cannot read X of shape \(4, 5, 6, 7\) as images"),
    (np.zeros((2, 3, 4, 5, 6)), "cannot read X of shape"),
])
def test_bad_shapes(X, match):
    with pytest.raises(ValueError, match=match):  # a TorchrigError too
        ImagePreprocessor().fit(X)


def test_bad_params_and_flat_shape():
    with pytest.raises(TorchrigError, match="size must be a positive int"):
        ImagePreprocessor(size=0).fit(np.zeros((2, 4, 4)))
    with pytest.raises(TorchrigError, match="channels must be 1, 3 or None, got 2"):
        ImagePreprocessor(channels=2).fit(np.zeros((2, 4, 4)))
    with pytest.raises(TorchrigError, match="scale must be 'auto' or a positive number, got 'max'"):
        ImagePreprocessor(scale="max").fit(np.zeros((2, 4, 4)))
    with pytest.raises(TorchrigError, match=r"not images of flat_shape=\(3, 3\)"):
        ImagePreprocessor(flat_shape=(3, 3)).fit(np.zeros((2, 10)))
    assert ImagePreprocessor(size=6, flat_shape=(2, -1)).fit_transform(np.arange(60.0).reshape(3, 20)).shape == \
        (3, 1, 6, 6)


def test_channels_must_match_fit(rgb):
    pre = ImagePreprocessor(size=8).fit(rgb)
    with pytest.raises(TorchrigError, match="fitted on 3-channel images but X has 1. .* set channels=1 or 3"):
        pre.transform(rgb[..., 0])
    assert ImagePreprocessor(size=8, channels=3).fit(rgb).transform(rgb[..., 0]).shape == (6, 3, 8, 8)


def test_unfitted_clone_and_pickle(rgb):
    with pytest.raises(NotFittedError):
        ImagePreprocessor().transform(rgb)
    pre = ImagePreprocessor(size=8, channels=1).fit(rgb)
    copy = clone(pre)
    assert copy.get_params() == pre.get_params() and not hasattr(copy, "mean_")
    again = pickle.loads(pickle.dumps(pre))
    np.testing.assert_array_equal(again.transform(rgb), pre.transform(rgb))
    out = pickle.loads(pickle.dumps(pre.transform(rgb)))
    assert isinstance(out, ModelInputs) and out.model_kwargs == {"in_channels": 1}


def test_digits():
    from sklearn.datasets import load_digits

    X, _ = load_digits(return_X_y=True)  # (1797, 64) float64, 0..16
    pre = ImagePreprocessor(size=16)
    Xt = pre.fit_transform(X)
    assert pre.scale_ == 16.0 and pre.n_channels_ == 1
    assert_standardised(Xt, 1, 16)
    # a digit as an 8-bit image (0..255) gives what its 0..16 row gives
    as_uint8 = np.round(X[:5] / 16 * 255).astype(np.uint8).reshape(5, 8, 8)
    np.testing.assert_allclose(pre.transform(as_uint8), Xt[:5], atol=0.02)
    # the output builds and feeds a vision model directly
    model = torchrig.get_model("vision/small_cnn", num_classes=10, **Xt.model_kwargs)
    assert model(torch.from_numpy(np.asarray(Xt[:4]))).shape == (4, 10)


@pytest.mark.slow
def test_pipeline_grid_search_with_two_jobs_on_digits():
    """ImagePreprocessor + RigClassifier("vision/small_cnn") under GridSearchCV(n_jobs=2), string labels."""
    pytest.importorskip("skorch")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    from torchrig.sklearn import RigClassifier

    X, y = load_digits(return_X_y=True)
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])[y]
    search = GridSearchCV(
        Pipeline([("prep", ImagePreprocessor(size=16)),
                  ("net", RigClassifier("vision/small_cnn", module__width=8, max_epochs=6, lr=3e-3, verbose=0,
                                        train_split=None))]),
        {"prep__size": [8, 16], "net__lr": [3e-3, 1e-2]}, cv=2, n_jobs=2)
    search.fit(X[:1000], names[:1000])
    assert search.score(X[1000:], names[1000:]) > 0.85  # ten classes: chance is 0.1
    assert search.best_estimator_["net"].module_implied_ == {"num_classes": 10, "in_channels": 1}
    assert search.predict(X[1000:1003]).tolist() == names[1000:1003].tolist()


@pytest.fixture
def resnet_file(tmp_path):
    """'Pretrained' ResNet-18 weights in a file (a random state_dict: tests never download)."""
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(3)
    path = tmp_path / "resnet18.safetensors"
    save_file(torchvision.models.resnet18().state_dict(), path)
    return path


@pytest.mark.slow
def test_fine_tuning_a_pretrained_resnet_in_a_grid_search(resnet_file):
    """RigClassifier(module="vision/resnet18", module__weights=...) with fine-tuning options in a
    Pipeline under GridSearchCV(n_jobs=2): grey 1-channel digits adapt the first convolution, a
    10-class head is made, and the frozen epoch leaves the backbone as loaded."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    from torchrig.sklearn import RigClassifier

    X, y = load_digits(return_X_y=True)
    X, y = X[:400], y[:400]
    net = RigClassifier("vision/resnet18", module__weights=str(resnet_file), max_epochs=2, batch_size=50,
                        lr=3e-3, train_split=None, random_state=0)
    search = GridSearchCV(Pipeline([("prep", ImagePreprocessor(size=32, flat_shape=(8, 8))), ("net", net)]),
                          {"net__finetune": [None, {"freeze_epochs": 1, "backbone_lr_scale": 0.3}]}, cv=2, n_jobs=2,
                          error_score="raise")
    search.fit(X, y)
    # The 'pretrained' filters are random here; what is tested is that both candidates train in the
    # workers. Measured: 0.17 training everything for 2 epochs, 0.555 with the head alone first
    # (random features + a linear head learn faster on 200 images); chance is 0.1.
    assert search.best_score_ > 0.35

    frozen = clone(net).set_params(finetune={"freeze_epochs": 2, "backbone_lr_scale": 0.1})
    frozen.fit(ImagePreprocessor(size=32, flat_shape=(8, 8)).fit_transform(X[:100]), y[:100])
    from safetensors.torch import load_file

    source = load_file(resnet_file)
    assert torch.equal(frozen.module_.layer3[0].conv1.weight.cpu(), source["layer3.0.conv1.weight"])
    assert torch.equal(frozen.module_.layer3[0].bn1.running_mean.cpu(), source["layer3.0.bn1.running_mean"])
    assert all(p.requires_grad for p in frozen.module_.parameters())


def test_pretrained_estimators_do_not_share_tensors_and_pickle_their_own_weights(resnet_file, tmp_path):
    from torchrig.sklearn import RigClassifier

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3, 32, 32)).astype(np.float32), np.arange(40) % 2
    a = RigClassifier("vision/resnet18", module__weights=str(resnet_file), max_epochs=1, batch_size=20,
                      train_split=None, random_state=0)
    b = clone(a)
    a.fit(X, y)
    b.initialize()
    shared = [n for (n, p), q in zip(a.module_.named_parameters(), b.module_.parameters())
              if p.data_ptr() == q.data_ptr()]
    assert not shared
    before = a.predict_proba(X)
    blob = pickle.dumps(a)
    resnet_file.unlink()  # the fine-tuned weights travel in the pickle, not the source path
    np.testing.assert_allclose(pickle.loads(blob).predict_proba(X), before, atol=1e-6)
