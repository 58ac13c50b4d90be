"""torchvision's named weights through core's loader: a test-made cache file (nothing downloads),
the offline message, preprocessing that follows the weights, a new head, grey inputs, fine-tuning."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
import yaml

import torchrig
from torchrig import TorchrigError
from torchrig._cli import main

FILE = "resnet18-f37072fd.pth"  # the name torchvision's ResNet18_Weights.IMAGENET1K_V1 is cached under


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """A TORCH_HOME whose cache holds ResNet-18 'pretrained' weights: a random state_dict saved
    where torchvision looks, so its own loader finds it and nothing is fetched."""
    home = tmp_path / "torch-home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(1)
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), home / "hub" / "checkpoints" / FILE)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home, reference


def test_named_weights_load_with_a_new_head(torch_home):
    home, reference = torch_home
    model = torchrig.get_model("vision/resnet18", num_classes=2, weights="DEFAULT")
    assert torch.equal(model.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert model.fc.out_features == 2
    for name in ("IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1"):
        same = torchrig.get_model("vision/resnet18", weights=name)
        assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), reference.state_dict().values()))
    grey = torchrig.get_model("vision/resnet18", num_classes=2, in_channels=1, weights="DEFAULT")
    torch.testing.assert_close(grey.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))


def test_named_weights_errors(torch_home, tmp_path, monkeypatch):
    with pytest.raises(TorchrigError, match=r"unknown weights 'IMAGENET1K_V2'\. Did you mean 'IMAGENET1K_V1'\?"):
        torchrig.get_model("vision/resnet18", weights="IMAGENET1K_V2")
    empty = tmp_path / "empty-home"
    monkeypatch.setenv("TORCH_HOME", str(empty))
    message = (f"ResNet18_Weights.IMAGENET1K_V1: {FILE} is not in {empty}/hub/checkpoints/ and cannot be "
               "downloaded (TORCHRIG_OFFLINE is set). On a machine with internet, fetch "
               f"https://download.pytorch.org/models/{FILE} and put it in that folder, then run again.")
    with pytest.raises(TorchrigError) as info:
        torchrig.get_model("vision/resnet18", weights="DEFAULT")
    assert str(info.value) == message


def test_offline_weights_fail_before_any_data_is_read(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "nothing-cached"))
    (tmp_path / "r.yaml").write_text(
        "data: {dataset: {name: vision/image_folder, root: does-not-exist}}\n"
        "model: {name: vision/resnet18, weights: DEFAULT}\n")
    assert main(["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{FILE} is not in" in err and "does-not-exist" not in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_fine_tune_recipe_on_grey_digits(torch_home, tmp_path, capsys):
    """DEFAULT weights on 1-channel digits: the input conv is adapted, a 10-class head is made,
    the weights' mean/std/interpolation reach both presets (the recipe keeps its own size), the
    head trains alone for an epoch, and the run records where its weights came from."""
    recipe = tmp_path / "ft.yaml"
    recipe.write_text("""\
name: ft
data:
  dataset: {name: vision/digits, size: 32}
  split: {val: 0.1, test: 0.2}
  train_transform: {name: vision/train_preset, size: 32, crop_scale: [0.8, 1.0], hflip: 0.0}
  eval_transform: {name: vision/eval_preset, size: 32, crop_ratio: 1.0}
  batch_size: 64
model: {name: vision/resnet18, weights: DEFAULT}
optimizer: {name: adamw, lr: 0.003}
metrics: [accuracy]
trainer: {max_epochs: 2, device: cpu, finetune: {freeze_epochs: 1, backbone_lr_scale: 0.3}}
""")
    assert main(["train", str(recipe), "--out", str(tmp_path / "ft")]) == 0
    captured = capsys.readouterr()
    assert ("weights: loaded 120/122 tensors from resnet18-f37072fd.pth; new head fc (10 classes); input conv "
            "conv1 adapted from the pretrained filters") in captured.out
    assert "backbone unfrozen at epoch 2" in captured.err
    resolved = yaml.safe_load((tmp_path / "ft/recipe.yaml").read_text())
    weights = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    for key in ("train_transform", "eval_transform"):
        t = resolved["data"][key]
        assert t["size"] == 32 and t["mean"] == list(weights.mean) and t["std"] == list(weights.std)
        assert t["interpolation"] == "bilinear"
    assert resolved["data"]["eval_transform"]["crop_ratio"] == 1.0  # the recipe's own value stays
    assert resolved["model"]["in_channels"] == 1 and resolved["model"]["num_classes"] == 10
    summary = json.loads((tmp_path / "ft/summary.json").read_text())
    assert summary["weights"]["kind"] == "named" and summary["weights"]["source"] == "DEFAULT"
    assert summary["test"]["accuracy"] > 0.5  # random 'pretrained' filters: the point is that it trains
    # evaluate and predict rebuild the model from the run dir alone, without the weights file
    (torch_home[0] / "hub" / "checkpoints" / FILE).unlink()
    assert main(["evaluate", str(tmp_path / "ft"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(summary["test"]["accuracy"])


def test_eval_preset_follows_named_weights_by_default(torch_home, tmp_path):
    """Without sizes in the recipe, the eval preset is the weights' own transforms()."""
    from PIL import Image

    from torchrig._recipe import load_recipe
    from torchrig._build import build_transforms, prepare_weights

    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text("data: {dataset: {name: vision/fake}, eval_transform: vision/eval_preset}\n"
                           "model: {name: vision/resnet18, weights: DEFAULT}\n")
    recipe = load_recipe(recipe_file)
    prepare_weights(recipe)
    _, ours = build_transforms(recipe)
    theirs = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    img = Image.fromarray(torch.randint(0, 255, (300, 400, 3), dtype=torch.uint8).numpy())
    a, b = ours(img), theirs(img)
    assert a.shape == b.shape == (3, 224, 224)
    # torchvision resizes the PIL image, we the uint8 tensor: at most one grey level apart (1/255/std)
    torch.testing.assert_close(a, b, atol=1 / 255 / min(theirs.std) + 1e-5, rtol=0)
    assert (a - b).abs().mean() < 1e-3


def test_info_shows_head_and_named_weights(capsys):
    assert main(["info", "vision/resnet18"]) == 0
    out = capsys.readouterr().out
    assert "Head: fc" in out and "Named weights (torchvision's" in out and "DEFAULT, IMAGENET1K_V1" in out
    assert main(["info", "vision/small_cnn"]) == 0
    assert "Head: head" in capsys.readouterr().out


@pytest.mark.slow
def test_shipped_finetune_photos_recipe_runs(torch_home, tmp_path, capsys):
    """recipes/vision/finetune_photos.yaml as a user runs it, on a small folder of photos (made
    here) at 64 px instead of 224 so that it is quick on a CPU."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, channel in (("ants", 0), ("bees", 2)):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 90, (80, 96, 3), dtype=np.uint8)
            pixels[20:60, 30:70, channel] = 230  # a coloured blob tells the classes apart
            Image.fromarray(pixels).save(tmp_path / "photos" / label / f"{i}.jpg")
    recipe = Path(__file__).resolve().parents[3] / "recipes/vision/finetune_photos.yaml"
    assert main(["train", str(recipe), "--out", str(tmp_path / "run"), "--quiet",
                 "--set", f"data.dataset.root={tmp_path / 'photos'}", "--set", "data.num_workers=0",
                 "--set", "data.train_transform.size=64", "--set", "data.eval_transform.size=64",
                 "--set", "trainer.max_epochs=3", "--set", "trainer.device=cpu"]) == 0
    assert "new head fc (2 classes)" in capsys.readouterr().out
    resolved = yaml.safe_load((tmp_path / "run/recipe.yaml").read_text())
    assert resolved["data"]["eval_transform"]["crop_ratio"] == pytest.approx(224 / 256)
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "photos/bees/0.jpg"), "--json"]) == 0
