"""Weight averaging (`trainer.ema`, `trainer.swa`, `torchrig.WeightAveraging`): the average is what
torch.optim.swa_utils computes by hand, validation and the kept weights use it, training goes on
from the live weights, and resume is exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import torchrig
from torchrig._cli import main


def _mlp():
    return nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))


@pytest.mark.slow
def test_ema_is_the_hand_written_average(digit_loaders):
    train, val = digit_loaders
    torch.manual_seed(0)
    model = _mlp()
    reference = _mlp()
    reference.load_state_dict(model.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    trainer = torchrig.Trainer(max_epochs=2, progress_bar=False, callbacks=[torchrig.WeightAveraging("ema", decay=0.9)])
    torch.manual_seed(1)
    history = trainer.fit(model, train, nn.CrossEntropyLoss(), optimizer, val_loader=val)

    # the hand-written loop: the same steps, AveragedModel updated after each
    torch.manual_seed(1)
    opt = torch.optim.AdamW(reference.parameters(), lr=3e-3)
    ema = AveragedModel(reference, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    for _ in range(2):
        reference.train()
        for x, y in train:
            opt.zero_grad()
            nn.functional.cross_entropy(reference(x), y).backward()
            opt.step()
            ema.update_parameters(reference)
    for key, value in ema.module.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key  # the fit leaves the average in the model
    # the last epoch's validation ran on the average
    again = trainer.evaluate(model, val, nn.CrossEntropyLoss())
    assert history[-1]["val_loss"] == pytest.approx(again["loss"], rel=1e-6)


@pytest.mark.slow
def test_swa_averages_each_epoch_from_its_start_at_its_lr(digit_loaders):
    train, val = digit_loaders
    torch.manual_seed(0)
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    seen, lrs = [], []

    class Record(torchrig.Callback):  # the live weights at the end of each training epoch
        order = 0

        def on_train_epoch_end(self, trainer, epoch, **kwargs):
            lrs.append(trainer.optimizer.param_groups[0]["lr"])
            if epoch >= 3:
                seen.append({k: v.clone() for k, v in trainer.model.state_dict().items()})

    averaging = torchrig.WeightAveraging("swa", start_epoch=3, lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    trainer = torchrig.Trainer(max_epochs=5, progress_bar=False, callbacks=[Record(), averaging])
    trainer.fit(model, train, nn.CrossEntropyLoss(), optimizer, val_loader=val, scheduler=scheduler)
    # StepLR halves the rate each epoch until SWA starts; then SWALR anneals it (over one epoch,
    # from where it was) to SWA's rate and holds it
    assert lrs[:3] == [0.05, 0.025, 0.0125] and lrs[3:] == pytest.approx([0.01] * 2)
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        mean = torch.stack([s[key].float() for s in seen]).mean(0)
        assert torch.allclose(value.float(), mean, atol=1e-6), key


RECIPE = """\
seed: 0
data:
  dataset: {{name: t/digits, limit: 600}}
  split: {{val: 0.15, test: 0.2}}
  batch_size: 32
model: {{name: t/mlp, hidden: 32}}
optimizer: {{name: adamw, lr: 0.005}}
metrics: [accuracy]
trainer: {{max_epochs: 4, {averaging}}}
"""


# (no scheduler: a cosine's length depends on max_epochs, which the first part here shortens)
@pytest.mark.parametrize("averaging, stop", [("ema: {decay: 0.95}", 2), ("swa: {start_epoch: 3, lr: 0.001}", 2),
                                             ("swa: {start_epoch: 2, lr: 0.001}", 3)],
                         ids=["ema", "swa-resumed-before-start", "swa-resumed-after-start"])
@pytest.mark.slow
def test_recipe_averaging_resumes_exactly(rig_plugin, tmp_path, averaging, stop):
    (tmp_path / "r.yaml").write_text(RECIPE.format(averaging=averaging))
    assert main(["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "straight"), "--quiet"]) == 0
    assert main(["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "split"), "--quiet",
                 "--set", f"trainer.max_epochs={stop}"]) == 0
    assert main(["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "split"), "--quiet", "--resume"]) == 0
    a = torchrig.load_weights(tmp_path / "straight" / "weights.safetensors")
    b = torchrig.load_weights(tmp_path / "split" / "weights.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    import csv

    rows = [[{k: v for k, v in row.items() if k != "time"} for row in csv.DictReader(open(tmp_path / d / "metrics.csv"))]
            for d in ("straight", "split")]
    assert rows[0] == rows[1] and len(rows[0]) == 4  # every epoch's losses, bit for bit


def test_bad_averaging_settings(rig_plugin, tmp_path, capsys):
    for averaging, message in [("ema: {decay: 1.5}", "trainer.ema.decay must be between 0 and 1"),
                               ("swa: {start_epoch: 0}", "trainer.swa: start_epoch and anneal_epochs must be >= 1"),
                               ("ema: {decay: 0.9}, swa: {start_epoch: 2}", "trainer.ema and trainer.swa both")]:
        (tmp_path / "r.yaml").write_text(RECIPE.format(averaging=averaging))
        assert main(["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "bad"), "--quiet"]) == 2
        assert message in capsys.readouterr().err
