"""Pretrained weights through core's one loader (run dirs, files; head and input-conv rules; bad
files), and the FineTune callback (frozen head-only phase, discriminative learning rates, resume)."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torchrig
from torchrig import FineTune, Trainer, TorchrigError
from torchrig._cli import main
from torchrig._weights import adapt_input_conv, head_of, load_pretrained

RECIPE = """\
name: pre
data:
  dataset: {name: t/digits}
  split: {val: 0.15, test: 0.2}
  batch_size: 32
model: {name: t/mlp, hidden: 48}
optimizer: {name: adamw, lr: 0.005}
metrics: [accuracy]
trainer: {max_epochs: 4}
"""


@pytest.fixture
def pretrained_run(tmp_path_factory, rig_plugin, monkeypatch):
    """A finished run of t/mlp (hidden 48, 10 classes) to start from."""
    root = tmp_path_factory.mktemp("pre")
    monkeypatch.chdir(root)
    (root / "pre.yaml").write_text(RECIPE)
    assert main(["train", "pre.yaml", "--out", "pre", "--quiet"]) == 0
    return root / "pre"


def test_run_dir_weights_bring_their_model_settings_and_a_new_head(pretrained_run, tmp_path, capsys):
    from safetensors.torch import load_file

    source = load_file(pretrained_run / "weights.safetensors")
    model = torchrig.get_model("t/mlp", num_classes=3, weights=str(pretrained_run))
    assert model[0].out_features == 48  # hidden=48 came from the run's recipe
    assert torch.equal(model[0].weight, source["0.weight"]) and model[2].out_features == 3

    # a recipe fine-tuning from the run dir on 3 classes: one report line, provenance recorded
    (tmp_path / "ft.yaml").write_text(RECIPE.replace("{name: t/digits}", "{name: t/digits, limit: 300}")
                                      .replace("hidden: 48", f"weights: {pretrained_run}"))
    assert main(["train", str(tmp_path / "ft.yaml"), "--out", str(tmp_path / "ft"), "--quiet",
                 "--set", "trainer.max_epochs=1"]) == 0
    out = capsys.readouterr().out
    assert f"weights: loaded 4/4 tensors from run {pretrained_run}" in out
    summary = json.loads((tmp_path / "ft/summary.json").read_text())
    assert summary["weights"]["kind"] == "run" and len(summary["weights"]["sha256"]) == 64
    resolved = (tmp_path / "ft/recipe.yaml").read_text()
    assert "hidden: 48" in resolved and f"weights_sha256: {summary['weights']['sha256']}" in resolved
    # evaluate needs neither the source run nor its weights
    (pretrained_run / "weights.safetensors").rename(pretrained_run / "moved.safetensors")
    assert main(["evaluate", str(tmp_path / "ft"), "--json"]) == 0


def test_files_prefixes_and_nested_checkpoints(tmp_path, rig_plugin):
    ref = torchrig.get_model("t/mlp", hidden=16)
    state = {f"module.{k}": v for k, v in ref.state_dict().items()}  # saved from a DDP wrapper
    torch.save({"epoch": 3, "model_state_dict": state}, tmp_path / "ckpt.pt")
    save_file(ref.state_dict(), tmp_path / "w.safetensors")
    for path in (tmp_path / "ckpt.pt", tmp_path / "w.safetensors"):
        model = torchrig.get_model("t/mlp", hidden=16, weights=str(path))
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))


def test_bad_weights_are_clear_errors(tmp_path, rig_plugin, pretrained_run):
    other = torchrig.get_model("t/mlp", hidden=16)
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(TorchrigError, match=r"do not fit this model \(2 mis-shaped: 0.weight \(file \(16, 64\), "
                                            r"model \(32, 64\)\), 0.bias .*strict: false"):
        torchrig.get_model("t/mlp", hidden=32, weights=str(tmp_path / "other.pt"))
    loose = torchrig.get_model("t/mlp", hidden=32, weights=str(tmp_path / "other.pt"), strict=False)
    assert loose[0].out_features == 32

    (tmp_path / "cut.safetensors").write_bytes((pretrained_run / "weights.safetensors").read_bytes()[:100])
    with pytest.raises(TorchrigError, match=r"cut.safetensors.*not a valid safetensors file"):
        torchrig.get_model("t/mlp", weights=str(tmp_path / "cut.safetensors"))
    (tmp_path / "junk.pt").write_bytes(b"not a pickle at all")
    with pytest.raises(TorchrigError, match=r"junk.pt.*not a PyTorch file.*truncated or corrupt"):
        torchrig.get_model("t/mlp", weights=str(tmp_path / "junk.pt"))

    class Boom:
        def __reduce__(self):
            return (exec, ("open('PWNED', 'w').write('x')",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"0.weight": Boom()}))
    with pytest.raises(TorchrigError, match="Refusing to load"):
        torchrig.get_model("t/mlp", weights=str(tmp_path / "evil.pt"))
    assert not (tmp_path / "PWNED").exists()

    (tmp_path / "empty-run").mkdir()
    with pytest.raises(TorchrigError, match="is a folder without weights.safetensors"):
        torchrig.get_model("t/mlp", weights=str(tmp_path / "empty-run"))
    with pytest.raises(TorchrigError, match="no weights file or run dir at 'nowhere/w.pt'"):
        torchrig.get_model("t/mlp", weights="nowhere/w.pt")
    with pytest.raises(TorchrigError, match="has no named weights"):
        torchrig.get_model("t/mlp", weights="DEFAULT")
    torch.save({"lr": 0.1, "note": "hello"}, tmp_path / "hparams.pt")
    with pytest.raises(TorchrigError, match="not a state_dict"):
        torchrig.get_model("t/mlp", weights=str(tmp_path / "hparams.pt"))


def test_recipe_checks_weights_keys_and_freeze_epochs(tmp_path, rig_plugin, capsys):
    (tmp_path / "r.yaml").write_text(RECIPE.replace("hidden: 48", "hidden: 48, strict: maybe"))
    assert main(["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "r")]) == 2
    assert "r.yaml:6: model.strict: expected true/false, got 'maybe'" in capsys.readouterr().err
    (tmp_path / "r.yaml").write_text(RECIPE.replace("trainer: {max_epochs: 4}",
                                                    "trainer: {max_epochs: 4, finetune: {freeze_epochs: 4}}"))
    assert main(["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "trainer.finetune.freeze_epochs: freeze_epochs (4) must be below trainer.max_epochs (4)" in err
    assert not (tmp_path / "r").exists()


def test_head_rules_and_input_conv_adaptation():
    class Net(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.stem, self.body, self.out = nn.Conv2d(c, 4, 3), nn.Linear(4, 4), nn.Linear(4, 2)

    assert head_of(Net(3)) == ["out"]  # generic: the last Linear
    declared = Net(3)
    declared.torchrig_head = ("body", "out")
    assert head_of(nn.Sequential(declared)) == ["0.body", "0.out"]

    rgb = torch.randn(4, 3, 3, 3)
    grey = adapt_input_conv(rgb, 1)
    x = torch.rand(1, 1, 5, 5)
    # a grey image seen as R=G=B gives the RGB filters' response
    torch.testing.assert_close(nn.functional.conv2d(x, grey), nn.functional.conv2d(x.expand(1, 3, 5, 5), rgb))
    assert adapt_input_conv(rgb, 5).shape == (4, 5, 3, 3)
    target = Net(2)
    report = load_pretrained(target, Net(3).state_dict(), source="net.pt")
    assert report.adapted == ["stem"] and report.loaded == 6 and not report.new_head


# ---------------------------------------------------------------- FineTune


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))


def _fit(model: nn.Module, loaders, epochs: int, finetune: FineTune, **kwargs):
    optimizer = torch.optim.SGD(finetune.param_groups(model), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3)
    trainer = Trainer(max_epochs=epochs, progress_bar=False, callbacks=[finetune], **kwargs)
    trainer.fit(model, loaders[0], nn.CrossEntropyLoss(), optimizer, val_loader=loaders[1], scheduler=scheduler,
                resume=bool(kwargs.get("checkpoint_dir")))
    return trainer, optimizer


def test_finetune_trains_the_head_alone_then_everything_at_a_lower_lr(digit_loaders):
    model = _bn_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    finetune = FineTune(freeze_epochs=1, backbone_lr_scale=0.1)
    trainer, optimizer = _fit(model, digit_loaders, 1, FineTune(freeze_epochs=1, backbone_lr_scale=0.1))
    # epoch 1: backbone (and its BatchNorm statistics) untouched, head trained
    for key in ("0.weight", "1.weight", "1.running_mean", "1.running_var"):
        assert torch.equal(model.state_dict()[key], before[key]), key
    assert not torch.equal(model[3].weight, before["3.weight"])
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01 * 0.75, 0.1 * 0.75])  # cosine, epoch 1
    assert all(p.requires_grad for p in model.parameters())  # handed back trainable
    user_frozen = _bn_net()
    user_frozen[0].bias.requires_grad_(False)  # the user's own choice survives fine-tuning
    _fit(user_frozen, digit_loaders, 2, FineTune(freeze_epochs=1))
    assert not user_frozen[0].bias.requires_grad and user_frozen[0].weight.requires_grad

    net = _bn_net()
    one_group = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(TorchrigError, match=r"one group.*finetune.param_groups\(model\)"):
        Trainer(max_epochs=3, progress_bar=False, callbacks=[finetune]).fit(
            net, digit_loaders[0], nn.CrossEntropyLoss(), one_group)


def test_finetune_resumes_to_the_same_weights_from_either_phase(digit_loaders, tmp_path):
    straight = _bn_net()
    _fit(straight, digit_loaders, 3, FineTune(freeze_epochs=1), checkpoint_dir=tmp_path / "straight")
    for stop in (1, 2):  # killed during the frozen phase, and after unfreezing
        torchrig.seed_everything(0)
        _fit(_bn_net(), digit_loaders, stop, FineTune(freeze_epochs=1), checkpoint_dir=tmp_path / f"s{stop}")
        torchrig.seed_everything(0)
        resumed = _bn_net()
        _fit(resumed, digit_loaders, 3, FineTune(freeze_epochs=1), checkpoint_dir=tmp_path / f"s{stop}")
        for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
            assert torch.equal(a, b), (stop, k)


def test_finetune_in_a_recipe(tmp_path, rig_plugin, pretrained_run, capsys):
    (tmp_path / "ft.yaml").write_text(RECIPE.replace("hidden: 48", f"weights: {pretrained_run}").replace(
        "trainer: {max_epochs: 4}", "trainer: {max_epochs: 3, finetune: {freeze_epochs: 1, backbone_lr_scale: 0.2}}"))
    assert main(["train", str(tmp_path / "ft.yaml"), "--out", str(tmp_path / "ft")]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "finetune: training the head (2) alone, backbone frozen, until epoch 1" in text
    assert "finetune: backbone unfrozen at epoch 2 (learning rate x0.2)" in text
    rows = (tmp_path / "ft/metrics.csv").read_text().splitlines()
    assert len(rows) == 4


def test_weights_that_do_not_fit_stop_the_cli_in_one_line_and_leave_no_run_dir(tmp_path, rig_plugin, capsys):
    torch.save(torchrig.get_model("t/mlp", hidden=16).state_dict(), tmp_path / "other.pt")
    (tmp_path / "r.yaml").write_text(RECIPE.replace("hidden: 48", f"hidden: 48, weights: {tmp_path / 'other.pt'}"))
    assert main(["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "do not fit this model" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_info_shows_the_head(rig_plugin, capsys):
    assert main(["info", "t/mlp"]) == 0
    assert "Head: 2  (re-made for another num_classes" in capsys.readouterr().out  # the last Linear


def test_a_resolved_recipe_refuses_weights_that_changed(tmp_path, rig_plugin, capsys):
    torch.save(torchrig.get_model("t/mlp", hidden=48).state_dict(), tmp_path / "w.pt")
    (tmp_path / "r.yaml").write_text(RECIPE.replace("hidden: 48", f"hidden: 48, weights: {tmp_path / 'w.pt'}"))
    assert main(["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "a"), "--quiet",
                 "--set", "trainer.max_epochs=1"]) == 0
    capsys.readouterr()
    torch.save(torchrig.get_model("t/mlp", hidden=48).state_dict(), tmp_path / "w.pt")  # other tensors
    assert main(["train", str(tmp_path / "a/recipe.yaml"), "--out", str(tmp_path / "b")]) == 2
    assert "changed since this recipe was resolved" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
