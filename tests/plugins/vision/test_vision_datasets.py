"""vision/image_folder and friends on real image files written with PIL."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import torchrig
from torchrig import TorchrigError
from torchrig._cli import main


def write_images(root, *, corrupt=True):
    """Two classes of coloured squares in several formats and modes, plus files to ignore."""
    rng = np.random.default_rng(0)
    for cls, colour in (("red things", (220, 30, 30)), ("blüe", (30, 30, 220))):
        folder = root / cls
        folder.mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(rng.normal(colour, 25, size=(20, 24, 3)), 0, 255).astype(np.uint8)
            img = Image.fromarray(pixels)
            kind = i % 6
            if kind == 0:
                img.save(folder / f"photo {i}.png")              # a space in the name
            elif kind == 1:
                img.save(folder / f"img{i}.JPG", quality=90)
            elif kind == 2:
                img.convert("L").save(folder / f"grey{i}.png")     # greyscale
            elif kind == 3:
                img.convert("RGBA").save(folder / f"alpha{i}.png")  # RGBA
            elif kind == 4:
                img.convert("P").save(folder / f"palette{i}.gif")  # palette
            else:
                img.convert("CMYK").save(folder / f"cmyk{i}.tiff")
        (folder / "notes.txt").write_text("not an image")
        (folder / ".hidden.png").write_bytes(b"ignored")
    if corrupt:
        (root / "blüe" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    return root


def test_image_folder_reads_every_format_and_mode(tmp_path):
    root = write_images(tmp_path / "photos", corrupt=False)
    ds = torchrig.get_dataset("vision/image_folder", root=str(root))
    assert ds.classes == ["blüe", "red things"] and len(ds) == 24
    modes = {ds[i][0].mode for i in range(len(ds))}
    assert modes == {"RGB"}
    grey = torchrig.get_dataset("vision/image_folder", root=str(root), channels=1)
    assert grey[0][0].mode == "L" and grey.model_kwargs == {"in_channels": 1}
    # RGBA becomes RGB on white, not black
    alpha = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    from torchrig_vision._transforms import to_mode

    assert to_mode(alpha, 3).getpixel((0, 0)) == (255, 255, 255)
    assert torchrig.get_dataset("vision/image_folder", root=str(root), split="val") is None  # carved instead


def test_corrupt_image_raises_with_its_path_or_is_skipped(tmp_path):
    root = write_images(tmp_path / "photos")
    with pytest.raises(TorchrigError, match=r"Cannot read image '.*broken\.png': .*on_error: skip"):
        torchrig.get_dataset("vision/image_folder", root=str(root))
    ds = torchrig.get_dataset("vision/image_folder", root=str(root), on_error="skip")
    assert len(ds) == 24 and len(ds.skipped) == 1 and ds.skipped[0].endswith("broken.png")


def test_split_folders_become_splits(tmp_path):
    write_images(tmp_path / "photos" / "train", corrupt=False)
    write_images(tmp_path / "photos" / "val", corrupt=False)
    train = torchrig.get_dataset("vision/image_folder", root=str(tmp_path / "photos"), split="train")
    val = torchrig.get_dataset("vision/image_folder", root=str(tmp_path / "photos"), split="val")
    assert len(train) == len(val) == 24 and val.classes == train.classes
    assert torchrig.get_dataset("vision/image_folder", root=str(tmp_path / "photos"), split="test") is None


def test_bad_roots(tmp_path):
    with pytest.raises(TorchrigError, match=r"root '.*nowhere' is not a folder"):
        torchrig.get_dataset("vision/image_folder", root=str(tmp_path / "nowhere"))
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(TorchrigError, match=r"no files under .*<class>/<file> with suffixes \.jpg"):
        torchrig.get_dataset("vision/image_folder", root=str(tmp_path / "empty"))


def test_digits_and_fake():
    ds = torchrig.get_dataset("vision/digits", size=16)
    x, y = ds[0]
    assert x.shape == (1, 16, 16) and ds.classes == [str(i) for i in range(10)] and len(ds) == 1797
    fake = torchrig.get_dataset("vision/fake", size=8, image_size=16, num_classes=3)
    img, label = fake[0]
    assert img.size == (16, 16) and 0 <= label < 3


def test_image_folder_recipe_trains_one_epoch_and_predicts(tmp_path, monkeypatch, capsys):
    root = write_images(tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    recipe = "recipes/vision/image_folder.yaml"
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    run = tmp_path / "run"
    code = main(["train", str(repo / recipe), "--out", str(run), "--quiet",
                 "--set", f"data.dataset.root={root}", "--set", "model.name=vision/small_cnn",
                 "--set", "trainer.max_epochs=1", "--set", "data.num_workers=0",
                 "--set", "data.train_transform.size=32", "--set", "data.eval_transform.size=32",
                 "--set", "data.split.val=0.25", "--set", "data.split.test=0.25"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["skipped"] == {"train": 1} and summary["classes"] == ["blüe", "red things"]
    assert (run / "plots" / "confusion_matrix.png").is_file()
    capsys.readouterr()
    assert main(["predict", str(run), str(root / "red things" / "photo 0.png"), str(root / "blüe" / "grey8.png"),
                 "--json"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(results) == 2
    for r in results:
        assert {name for name, _ in r["top"]} == {"blüe", "red things"}
        assert sum(p for _, p in r["top"]) == pytest.approx(1.0, abs=1e-5)


def test_exif_orientation_is_applied(tmp_path):
    """A phone photo stored sideways with an EXIF 'rotate' tag is read the right way up."""
    folder = tmp_path / "photos" / "tall"
    folder.mkdir(parents=True)
    img = Image.new("RGB", (40, 20), (10, 200, 10))  # stored 40 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(folder / "phone.jpg", exif=exif.tobytes())
    ds = torchrig.get_dataset("vision/image_folder", root=str(tmp_path / "photos"))
    assert ds[0][0].size == (20, 40)


def test_a_digits_run_says_what_input_it_expects(tmp_path, capsys, caplog):
    """meta.json keeps the dataset's input note; `torchrig info RUN` prints it, predict repeats it
    when predictions are unsure, and a dark-on-light drawing gets a hint to invert it."""
    from PIL import Image

    from torchrig._cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: d\ndata:\n  dataset: {name: vision/digits}\n  split: {val: 0.2}\n"
                      "model: {name: vision/small_cnn, width: 4}\noptimizer: {name: sgd, lr: 0.00001}\n"
                      "trainer: {max_epochs: 1, device: cpu}\n")
    assert main(["train", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "input:   a handwritten digit as scikit-learn's digits are: light strokes on a dark background" in out
    drawing = Image.new("L", (40, 40), 255)  # a dark 7 on white paper
    for i in range(30):
        drawing.putpixel((5 + i, 6), 0)
        drawing.putpixel((34 - i // 2, 6 + i), 0)
    drawing.save(tmp_path / "seven.png")
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "seven.png")]) == 0
    err = capsys.readouterr().err  # (the hint is a log warning: on stderr in the CLI, in caplog here)
    assert "seven.png looks like dark strokes on a light background" in caplog.text and "invert it first" in caplog.text
    assert "prediction(s) are below 0.5 probability. This model expects a handwritten digit" in err
