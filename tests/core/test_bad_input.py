"""No traceback ever reaches a user: every CLI command against a corpus of bad inputs (made here,
at test time: no binary file is in the repo) exits 2 with a message on stderr that names the input,
and leaves every existing run dir as it was; the public loaders raise TorchrigError (InputError for
bad data), never a raw PIL, soundfile or csv exception."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

import torchrig
from torchrig._cli import main

BOMB_SIDE = 20000  # 4e8 pixels: 4.5x PIL's bomb limit; 400 MB as greyscale once decoded
QUIET_BOMB_SIDE = 12000  # 1.44e8 pixels: 1.6x the limit, which PIL alone decodes after a warning


def _png_bomb(path: Path, side: int = BOMB_SIDE) -> None:
    """A real greyscale PNG of side x side black pixels, written row by row (the file is ~400 KB;
    decoding it would take side*side bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row, parts = zlib.compressobj(9), b"\x00" * (side + 1), []
    parts += [packer.compress(row) for _ in range(side)]
    parts.append(packer.flush())
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def _image_bytes(fmt: str, seed: int, size: int = 24) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _wav_bytes(seed: int, seconds: float = 0.25, rate: int = 8000) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * (220 + 110 * seed) * t).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


BINARY = bytes(range(256)) * 8 + b"\x7fELF\x02\x01\x01" + b"\x00" * 512  # a compiled program's kind of bytes


def make_corpus(root: Path) -> dict[str, dict[str, Path]]:
    """Per domain, the bad inputs of issue 17 (and one good file with an awkward name)."""
    corpus: dict[str, dict[str, Path]] = {}
    for domain, suffix, good in (("vision", ".png", _image_bytes("PNG", 0)), ("audio", ".wav", _wav_bytes(0)),
                                 ("text", ".txt", "a perfectly ordinary sentence.\n".encode())):
        folder = root / domain
        folder.mkdir(parents=True)
        files = {
            "wrong_content": folder / f"notes{suffix}",
            "zero_bytes": folder / f"empty{suffix}",
            "directory": folder / f"folder{suffix}",
            "dangling_symlink": folder / f"gone{suffix}",
            "awkward_name": folder / f"naïve fïle ü{suffix}",
        }
        files["wrong_content"].write_text("shopping list: eggs, milk\n" if domain != "text" else "")
        if domain == "text":
            files["wrong_content"].write_bytes(BINARY)  # a binary "text" file
        files["zero_bytes"].write_bytes(b"")
        files["directory"].mkdir()
        files["dangling_symlink"].symlink_to(folder / "no-such-file")
        files["awkward_name"].write_bytes(good)
        corpus[domain] = files
    vision, audio, text = (corpus[d] for d in ("vision", "audio", "text"))
    jpeg = _image_bytes("JPEG", 1)
    vision["truncated"] = root / "vision" / "cut.jpg"
    vision["truncated"].write_bytes(jpeg[: len(jpeg) // 2])
    vision["bomb"] = root / "vision" / "bomb.png"
    _png_bomb(vision["bomb"])
    vision["quiet_bomb"] = root / "vision" / "quiet-bomb.png"  # over PIL's limit, under its 2x error: PIL only warns
    _png_bomb(vision["quiet_bomb"], QUIET_BOMB_SIDE)
    wav = _wav_bytes(1)
    audio["truncated"] = root / "audio" / "cut.wav"
    audio["truncated"].write_bytes(wav[: len(wav) // 2])
    text["not_utf8"] = root / "text" / "latin1.txt"
    text["not_utf8"].write_bytes("café crème brûlée, déjà vu\n".encode("latin-1"))
    return corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("bad"))


VISION = """\
name: v
seed: 0
data:
  dataset: {name: vision/image_folder, root: ROOT, on_error: ON_ERROR}
  split: {val: 0.25}
  train_transform: {name: vision/eval_preset, size: 16}
  eval_transform: {name: vision/eval_preset, size: 16}
  batch_size: 8
model: {name: vision/small_cnn, width: 4}
trainer: {max_epochs: 1, device: cpu}
"""
AUDIO = """\
name: a
seed: 0
data:
  dataset: {name: audio/folder, root: ROOT, sample_rate: 8000, on_error: ON_ERROR}
  split: {val: 0.25}
  batch_size: 8
model: {name: audio/mel_cnn, n_mels: 16, width: 4}
trainer: {max_epochs: 1, device: cpu}
"""
TEXT = """\
name: t
seed: 0
data:
  dataset: {name: text/folder, root: ROOT, on_error: ON_ERROR}
  split: {val: 0.25}
  train_transform: {name: text/encode, max_len: 16}
  eval_transform: {name: text/encode, max_len: 16}
  batch_size: 8
model: {name: text/embedding_bag, embed_dim: 8}
trainer: {max_epochs: 1, device: cpu}
"""
RECIPES = {"vision": VISION, "audio": AUDIO, "text": TEXT}
WORDS = ["red apples and pears", "green leaves in spring", "blue sea under sky", "yellow sun at noon"]


def _good_folder(folder: Path, domain: str) -> Path:
    """Two classes of six good samples each, as the domain's folder dataset reads them."""
    for c in range(2):
        (folder / f"class{c}").mkdir(parents=True)
        for i in range(6):
            if domain == "vision":
                (folder / f"class{c}" / f"{i}.png").write_bytes(_image_bytes("PNG", 10 * c + i))
            elif domain == "audio":
                (folder / f"class{c}" / f"{i}.wav").write_bytes(_wav_bytes(3 * c + i % 3))
            else:
                (folder / f"class{c}" / f"{i}.txt").write_text(f"{WORDS[2 * c + i % 2]} number {i}\n")
    return folder


def _recipe(path: Path, domain: str, root: Path, on_error: str = "raise") -> Path:
    path.write_text(RECIPES[domain].replace("ROOT", repr(str(root))).replace("ON_ERROR", on_error))
    return path


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the CLI in this process; an exception escaping main() is what a user sees as a traceback."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, corpus):
    """One finished run per domain, trained on good folders; and bad copies of the vision run."""
    root = tmp_path_factory.mktemp("runs")
    found = {}
    for domain in RECIPES:
        recipe = _recipe(root / f"{domain}.yaml", domain, _good_folder(root / f"{domain}-data", domain))
        assert main(["train", str(recipe), "--out", str(root / domain), "--quiet"]) == 0
        found[domain] = root / domain
    broken = {}
    for name, damage in (("truncated_weights", lambda r: _truncate(r / "weights.safetensors")),
                         ("garbage_recipe", lambda r: (r / "recipe.yaml").write_bytes(BINARY)),
                         ("truncated_meta", lambda r: _truncate(r / "meta.json"))):
        copy = root / f"broken-{name}"
        shutil.copytree(found["vision"], copy)
        damage(copy)
        broken[name] = copy
    broken["empty_folder"] = root / "empty-run"
    broken["empty_folder"].mkdir()
    broken["missing"] = root / "no-such-run"
    broken["a_file"] = corpus["vision"]["awkward_name"]
    broken["dangling_symlink"] = corpus["vision"]["dangling_symlink"]
    return found, broken


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def unchanged(runs):
    """Every good run dir is byte for byte the same after the test (the run-dir lock file aside)."""
    found, broken = runs
    folders = [*found.values(), *(p for p in broken.values() if p.is_dir() and not p.is_symlink())]
    before = {f: _digest(f) for f in folders}
    yield
    for folder in folders:
        assert _digest(folder) == before[folder], f"{folder} changed"


def _assert_clean_error(code: int, out: str, err: str, *names: str) -> None:
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err, err
    assert err.startswith("torchrig: error"), err
    for name in names:
        assert name in err, (name, err)


PREDICT_BAD = [(d, k) for d, kinds in {
    "vision": ["wrong_content", "zero_bytes", "directory", "dangling_symlink", "truncated", "bomb", "quiet_bomb"],
    "audio": ["wrong_content", "zero_bytes", "directory", "dangling_symlink", "truncated"],
    "text": ["wrong_content", "zero_bytes", "directory", "dangling_symlink", "not_utf8"],
}.items() for k in kinds]


@pytest.mark.parametrize("domain,kind", PREDICT_BAD)
def test_predict_refuses_each_bad_input_by_name(domain, kind, corpus, runs, unchanged, capsys):
    found, _ = runs
    path = corpus[domain][kind]
    code, out, err = cli(capsys, "predict", found[domain], path)
    _assert_clean_error(code, out, err, path.name)


@pytest.mark.parametrize("domain", list(RECIPES))
def test_predict_reads_a_file_with_spaces_and_non_ascii_in_its_name(domain, corpus, runs, unchanged, capsys):
    found, _ = runs
    code, out, err = cli(capsys, "predict", found[domain], corpus[domain]["awkward_name"])
    assert code == 0, err
    assert corpus[domain]["awkward_name"].name in out


@pytest.mark.parametrize("kind", ["wrong_content", "not_utf8"])
def test_text_predict_says_binary_input_is_not_text_and_force_classifies_it(kind, corpus, runs, unchanged, capsys):
    found, _ = runs
    path = corpus["text"][kind]
    code, out, err = cli(capsys, "predict", found["text"], path)
    _assert_clean_error(code, out, err, path.name, "not text", "--force")
    code, out, err = cli(capsys, "predict", found["text"], path, "--force")
    assert code == 0, err
    assert path.name in out


def test_text_predict_on_a_literal_string_says_to_pipe_it(runs, unchanged, capsys):
    found, _ = runs
    code, out, err = cli(capsys, "predict", found["text"], "what a wonderful film")
    _assert_clean_error(code, out, err, "'what a wonderful film' is not a file. To classify text, pipe it in: "
                                        f"echo 'what a wonderful film' | torchrig predict {found['text']} -")


DIGITS = Path(__file__).resolve().parents[2] / "recipes" / "vision" / "digits.yaml"


@pytest.mark.parametrize("setting, message", [
    ("data.batch_size=0", "data.batch_size: must be at least 1, got 0"),  # the schema's bounds
    ("data.num_workers=-1", "data.num_workers: must be at least 0, got -1"),
    ("trainer.max_epochs=0", "trainer.max_epochs: must be at least 1, got 0"),
    ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val: must be above 0, got -1"),  # trained backwards
    ("trainer.early_stopping.patience=-1", "trainer.early_stopping.patience: must be at least 0, got -1"),
    ("data.train_transform.size=-3", "data: a transform refused these settings: size must be a positive whole number"),
    ("model.dropout=2", "model: vision/small_cnn refused these settings: dropout probability has to be between 0 and 1"),
    ("model.width=-4", "model: vision/small_cnn refused these settings: Trying to create tensor with negative dimension"),
    ("optimizer.lr=-1", "optimizer: adamw refused these settings: Invalid learning rate: -1"),
])
def test_a_value_the_library_refuses_is_a_recipe_error_at_its_section(setting, message, capsys, tmp_path):
    """Values only the library checks (torch's optimizer, a module's constructor): an error at
    the recipe's section, in the library's words; the recipe schema's own bounds first. No run
    dir is left behind. (They were "internal error ... a bug in torchrig", or, for a negative
    gradient_clip_val or patience, accepted: the first trained with reversed gradients.)"""
    code, out, err = cli(capsys, "train", DIGITS, "--set", setting, "--out", tmp_path / "run", "--quiet")
    _assert_clean_error(code, out, err, str(DIGITS), message)
    assert "internal error" not in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("domain", ["vision", "text"])
def test_predict_on_a_pattern_that_matched_nothing_says_so(domain, corpus, runs, unchanged, capsys, tmp_path):
    """A shell passes a glob that matches no file on as it is: that is what the message says (a text
    run used to say to pipe the pattern in as text)."""
    found, _ = runs
    pattern = str(tmp_path / "no_such_photos" / "*.png")
    code, out, err = cli(capsys, "predict", found[domain], pattern)
    _assert_clean_error(code, out, err, f"Cannot predict {pattern!r}: no file matches this pattern",
                        f"ls {tmp_path / 'no_such_photos'}")


BAD_RUNS = ["truncated_weights", "garbage_recipe", "truncated_meta", "empty_folder", "missing", "a_file",
            "dangling_symlink"]


@pytest.mark.parametrize("command", ["evaluate", "predict", "report", "export"])
@pytest.mark.parametrize("bad", BAD_RUNS)
def test_run_dir_commands_refuse_a_bad_run_dir_by_name(command, bad, corpus, runs, unchanged, capsys):
    _, broken = runs
    extra = [corpus["vision"]["awkward_name"]] if command == "predict" else []
    code, out, err = cli(capsys, command, broken[bad], *extra)
    _assert_clean_error(code, out, err, broken[bad].name)


RECIPE_BAD = ["zero_bytes", "binary", "not_utf8", "directory", "dangling_symlink", "missing"]


@pytest.fixture(scope="module")
def bad_recipes(tmp_path_factory, corpus):
    root = tmp_path_factory.mktemp("recipes")
    made = {"zero_bytes": root / "empty.yaml", "binary": root / "binary.yaml", "not_utf8": root / "latin1.yaml",
            "directory": root / "folder.yaml", "dangling_symlink": root / "gone.yaml", "missing": root / "nope.yaml"}
    made["zero_bytes"].write_bytes(b"")
    made["binary"].write_bytes(BINARY)
    made["not_utf8"].write_bytes("name: café\nmodel: vision/small_cnn\n".encode("latin-1"))
    made["directory"].mkdir()
    made["dangling_symlink"].symlink_to(root / "nothing.yaml")
    return made


@pytest.mark.parametrize("command", ["train", "lr-find", "cv"])
@pytest.mark.parametrize("bad", RECIPE_BAD)
def test_recipe_commands_refuse_a_bad_recipe_file_by_name(command, bad, bad_recipes, runs, unchanged, capsys,
                                                          tmp_path):
    extra = ["--folds", "2"] if command == "cv" else []
    code, out, err = cli(capsys, command, bad_recipes[bad], "--out", tmp_path / "out", *extra)
    _assert_clean_error(code, out, err, bad_recipes[bad].name)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


TRAIN_BAD = [(d, k) for d, kinds in {
    "vision": ["wrong_content", "zero_bytes", "dangling_symlink", "truncated", "bomb", "quiet_bomb"],
    "audio": ["wrong_content", "zero_bytes", "dangling_symlink", "truncated"],
    "text": ["wrong_content", "zero_bytes", "dangling_symlink", "not_utf8"],
}.items() for k in kinds]


def _folder_with(root: Path, domain: str, files: list[Path]) -> Path:
    folder = _good_folder(root, domain)
    for f in files:
        target = folder / "class0" / f.name
        if f.is_symlink():
            target.symlink_to(os.readlink(f))
        else:
            shutil.copyfile(f, target)
    return folder


@pytest.mark.parametrize("domain,kind", TRAIN_BAD)
def test_train_refuses_a_bad_file_in_the_data_by_name(domain, kind, corpus, runs, unchanged, capsys, tmp_path):
    path = corpus[domain][kind]
    recipe = _recipe(tmp_path / "r.yaml", domain, _folder_with(tmp_path / "data", domain, [path]))
    code, out, err = cli(capsys, "train", recipe, "--out", tmp_path / "run", "--quiet")
    _assert_clean_error(code, out, err, path.name, "on_error: skip")


@pytest.mark.parametrize("command", ["lr-find", "cv"])
@pytest.mark.parametrize("kind", ["wrong_content", "bomb"])
def test_lr_find_and_cv_refuse_a_bad_file_in_the_data_by_name(command, kind, corpus, capsys, tmp_path):
    path = corpus["vision"][kind]
    recipe = _recipe(tmp_path / "r.yaml", "vision", _folder_with(tmp_path / "data", "vision", [path]))
    extra = ["--folds", "2"] if command == "cv" else []
    code, out, err = cli(capsys, command, recipe, "--out", tmp_path / "out", *extra)
    _assert_clean_error(code, out, err, path.name, "on_error: skip")


@pytest.mark.parametrize("domain", list(RECIPES))
def test_train_with_on_error_skip_counts_the_bad_files_and_goes_on(domain, corpus, capsys, tmp_path):
    import json

    bad = [corpus[domain][k] for d, k in TRAIN_BAD if d == domain]
    recipe = _recipe(tmp_path / "r.yaml", domain, _folder_with(tmp_path / "data", domain, bad), on_error="skip")
    code, out, err = cli(capsys, "train", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert sum(summary["skipped"].values()) == len(bad), summary["skipped"]


@pytest.mark.parametrize("domain", list(RECIPES))
def test_train_refuses_an_empty_class_folder_by_name(domain, capsys, tmp_path):
    folder = _good_folder(tmp_path / "data", domain)
    (folder / "hollow").mkdir()
    code, out, err = cli(capsys, "train", _recipe(tmp_path / "r.yaml", domain, folder), "--out", tmp_path / "run")
    _assert_clean_error(code, out, err, "hollow")


def test_text_csv_with_a_10_mb_field_and_bad_bytes(capsys, tmp_path):
    rows = ["text,label"] + [f"{WORDS[i % 4]} {i},{'ab'[i % 2]}" for i in range(16)]
    good = "\n".join(rows) + "\n"
    cases = {"huge_field.csv": (good + '"' + "x" * 10_000_000 + '",a\n').encode(),
             "latin1.csv": (good + "café crème,b\n").encode("latin-1"),
             "binary.csv": good.encode() + BINARY, "empty.csv": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        recipe = tmp_path / "r.yaml"
        recipe.write_text(TEXT.replace("{name: text/folder, root: ROOT, on_error: ON_ERROR}",
                                       f"{{name: text/csv, path: {str(tmp_path / name)!r}}}"))
        code, out, err = cli(capsys, "train", recipe, "--out", tmp_path / f"run-{name}")
        _assert_clean_error(code, out, err, name)


@pytest.mark.parametrize("argv,names", [
    (["info", "vision/no_such_model"], ["vision/no_such_model", "vision/"]),
    (["info", ""], ["''"]),
    (["info", "audio/audio_folder"], ["'audio/audio_folder'", "Did you mean 'audio/folder'?"]),  # a dataset, not a model
    (["list", "models", "--plugin", "no_such_plugin"], ["no_such_plugin"]),
    (["check-plugin", "no_such_plugin"], ["no_such_plugin"]),
])
def test_listing_commands_refuse_unknown_names(argv, names, runs, unchanged, capsys):
    code, out, err = cli(capsys, *argv)
    _assert_clean_error(code, out, err, *names)


LOADERS = {"vision": ("vision/image_folder", {}), "audio": ("audio/folder", {"sample_rate": 8000}),
           "text": ("text/folder", {})}


@pytest.mark.parametrize("domain,kind", TRAIN_BAD)
def test_public_loaders_raise_input_errors_never_library_exceptions(domain, kind, corpus, tmp_path):
    """The Python API: a dataset over a folder with one bad file raises InputError naming it
    (never a raw PIL, soundfile or codec exception); with on_error: skip, it counts the file."""
    path = corpus[domain][kind]
    folder = _folder_with(tmp_path / "data", domain, [path])
    name, kwargs = LOADERS[domain]
    with pytest.raises(torchrig.InputError, match=path.name):
        torchrig.get_dataset(name, root=str(folder), **kwargs)
    dataset = torchrig.get_dataset(name, root=str(folder), on_error="skip", **kwargs)
    assert [Path(p).name for p in dataset.skipped] == [path.name] and len(dataset) == 12


def test_public_file_loaders_name_the_file(corpus, runs, bad_recipes, tmp_path):
    _, broken = runs
    for bad in RECIPE_BAD:
        with pytest.raises(torchrig.TorchrigError, match=bad_recipes[bad].name):
            torchrig.load_recipe(bad_recipes[bad])
    with pytest.raises(torchrig.TorchrigError, match="weights.safetensors.*truncated or corrupt"):
        torchrig.load_weights(broken["truncated_weights"] / "weights.safetensors")
    (tmp_path / "state.pt").write_bytes(BINARY)
    with pytest.raises(torchrig.TorchrigError, match="state.pt"):
        torchrig.load_state(tmp_path / "state.pt")
    from torchrig_audio.sklearn import LogMel
    from torchrig_vision.sklearn import ImagePreprocessor

    for kind in ("wrong_content", "zero_bytes", "truncated", "bomb", "dangling_symlink", "directory"):
        with pytest.raises(torchrig.InputError, match=corpus["vision"][kind].name):
            ImagePreprocessor(size=8).fit_transform([str(corpus["vision"][kind])])
    for kind in ("wrong_content", "zero_bytes", "truncated", "dangling_symlink", "directory"):
        with pytest.raises(torchrig.InputError, match=corpus["audio"][kind].name):
            LogMel(sample_rate=8000).fit_transform([str(corpus["audio"][kind])])


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak RSS from /proc (Linux)")
def test_the_bomb_is_refused_before_decoding_in_bounded_memory(corpus, runs):
    """`torchrig predict` on the 20000 x 20000 PNG (400 MB as greyscale, 1.2 GB as RGB once
    decoded) and the 12000 x 12000 one (which PIL alone would decode), in a subprocess: both
    refused from their header. Its peak RSS grows by less than 100 MB over the same process
    having predicted a good image (importing torch 2.14 alone takes ~500 MB here, so the bound
    is on what the file costs, not on torch). The peak is VmHWM: getrusage's ru_maxrss would
    start at this pytest process's own peak, which Linux carries over to a child at fork."""
    import subprocess

    found, _ = runs
    script = ("import sys\nfrom torchrig._cli import main\n"
              "def peak():\n"
              "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
              "assert main(['predict', sys.argv[1], sys.argv[2]]) == 0\n"
              "before = peak()\n"
              "code = main(['predict', sys.argv[1], sys.argv[3]])\n"
              "print(before, peak())\nsys.exit(code)")
    for bomb, pixels in (("bomb", "400000000 pixels"), ("quiet_bomb", "144,000,000 pixels")):
        result = subprocess.run([sys.executable, "-c", script, str(found["vision"]),
                                 str(corpus["vision"]["awkward_name"]), str(corpus["vision"][bomb])],
                                capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 2, result.stderr
        assert pixels in result.stderr, result.stderr
        before, after = (int(v) / 1024 for v in result.stdout.split()[-2:])  # VmHWM: KiB
        assert after - before < 100, f"{bomb}: peak RSS {before:.0f} MB -> {after:.0f} MB"


def test_max_pixels_is_an_option_and_big_jpegs_decode_in_draft_mode(tmp_path):
    from torchrig_vision._datasets import load_image

    photo = tmp_path / "big.jpg"
    Image.new("RGB", (2400, 1600), (90, 140, 200)).save(photo, quality=90)
    assert load_image(photo, 3, decode_size=None).size == (2400, 1600)
    assert load_image(photo, 3, decode_size=300).size == (600, 400)  # 1/4 scale: the smallest >= 300
    assert load_image(photo, 3).size == (1200, 800)  # default decode_size 512: 1/2 scale
    with pytest.raises(torchrig.InputError, match=r"2400x1600 is 3,840,000 pixels, over the limit of 1,000,000"):
        load_image(photo, 3, max_pixels=1_000_000)
    folder = tmp_path / "photos"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        shutil.copyfile(photo, folder / c / "x.jpg")
    with pytest.raises(torchrig.InputError, match="max_pixels"):
        torchrig.get_dataset("vision/image_folder", root=str(folder), max_pixels=1_000_000)


def test_long_audio_is_decoded_only_around_what_max_duration_keeps(tmp_path):
    import soundfile as sf
    from torchrig_audio._io import decode_clip, read_clip

    rate = 8000
    t = np.arange(60 * rate) / rate
    sf.write(tmp_path / "long.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
    window, _ = decode_clip(tmp_path / "long.wav", seconds=1.0)
    assert window.shape[-1] < 1.1 * rate  # one second and a margin, not the whole minute
    whole = torchrig_whole = read_clip(tmp_path / "long.wav", sample_rate=8000)
    cut = read_clip(tmp_path / "long.wav", sample_rate=16000, max_duration=1.0)
    assert whole.shape[-1] == 60 * rate and cut.shape[-1] == 16000
    from torchrig_audio._io import crop, resample

    reference = crop(resample(torchrig_whole, 8000, 16000), 16000, max_duration=1.0)
    assert torch.allclose(cut, reference, atol=1e-4)  # the same centre second as decoding it all


def test_an_unanticipated_exception_is_one_line_and_a_traceback_file(monkeypatch, capsys):
    """A bug (not bad input): exit 1, one line naming it on stderr, the traceback in a file."""
    from torchrig import _cli

    def broken(args):
        raise RuntimeError("an invariant broke")

    monkeypatch.setitem(_cli.COMMANDS, "list", broken)
    monkeypatch.delenv("TORCHRIG_TRACEBACK")
    code, out, err = cli(capsys, "list")
    assert code == 1 and "Traceback" not in out + err
    assert err.startswith("torchrig: internal error: RuntimeError: an invariant broke\n"), err
    path = err.split("The traceback is in ")[1].split(";")[0]
    assert 'raise RuntimeError("an invariant broke")' in Path(path).read_text()
    os.unlink(path)
    monkeypatch.setenv("TORCHRIG_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="an invariant broke"):
        main(["list"])
