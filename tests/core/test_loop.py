"""Trainer: parity with the hand-written loop, features, and errors on bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torchrig
from torchrig import Trainer, TorchrigError


def mlp(dropout: float = 0.0) -> nn.Module:
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, 10))


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(16 * 4 * 4, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.view(-1, 1, 8, 8)))


def plain_loop(model, loader, loss_fn, optimizer, epochs, scheduler=None):
    """The tutorial loop, verbatim."""
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()


def assert_same_parameters(a: nn.Module, b: nn.Module) -> None:
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), f"{name} differs"


def build(make_model, make_opt, dataset, batch_size, *, generator=False):
    torchrig.seed_everything(0)
    model = make_model()
    opt = make_opt(model.parameters())
    gen = torch.Generator().manual_seed(1) if generator else None
    return model, opt, DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=gen)


def test_parity_mlp_regression_mse_sgd(digits):
    X, _ = digits
    target = X[:, :8].sum(1, keepdim=True)  # a real-valued target from the same images
    ds = TensorDataset(X[:1000], target[:1000])
    make_model = lambda: nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 1))  # noqa: E731
    make_opt = lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)  # noqa: E731

    ref, opt, loader = build(make_model, make_opt, ds, 32)
    plain_loop(ref, loader, nn.MSELoss(), opt, epochs=4)

    model, opt, loader = build(make_model, make_opt, ds, 32)
    val = DataLoader(TensorDataset(X[1000:], target[1000:]), batch_size=100, shuffle=True)
    history = Trainer(max_epochs=4, progress_bar=False).fit(
        model, loader, nn.MSELoss(), opt, val_loader=val, metrics=["mse", "mae", "r2"]
    )
    assert_same_parameters(ref, model)
    assert history["val_r2"][-1] > 0.8
    assert history["val_mse"][-1] == pytest.approx(history["val_loss"][-1], rel=1e-5)


@pytest.mark.parametrize("generator", [False, True])
def test_parity_cnn_classifier_crossentropy_adamw(digits, generator):
    X, y = digits
    ds = TensorDataset(X[:1400], y[:1400])
    make_opt = lambda p: torch.optim.AdamW(p, lr=3e-3)  # noqa: E731

    ref, opt, loader = build(SmallCNN, make_opt, ds, 64, generator=generator)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    plain_loop(ref, loader, nn.CrossEntropyLoss(), opt, epochs=3, scheduler=sched)

    model, opt, loader = build(SmallCNN, make_opt, ds, 64, generator=generator)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    val = DataLoader(TensorDataset(X[1400:], y[1400:]), batch_size=100, shuffle=True)
    history = Trainer(max_epochs=3, progress_bar=False).fit(
        model, loader, nn.CrossEntropyLoss(), opt, val_loader=val, scheduler=sched,
        metrics=["accuracy", "f1"],
    )
    assert_same_parameters(ref, model)
    assert history["val_accuracy"][-1] > 0.85
    assert history["lr"] == pytest.approx([3e-3, 3e-3 * 0.7, 3e-3 * 0.49])


def test_fit_learns_and_reports(digit_loaders, capsys):
    train, val = digit_loaders
    model = mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = Trainer(max_epochs=15).fit(model, train, nn.CrossEntropyLoss(), opt, val_loader=val,
                                         metrics=["accuracy", "f1", "precision", "recall", "auroc"])
    assert len(history) == 15
    assert history["val_accuracy"][-1] > 0.93
    assert history["val_auroc"][-1] > 0.99
    assert history["train_loss"][-1] < history["train_loss"][0]
    err = capsys.readouterr().err
    assert "epoch 15/15" in err and "val_accuracy" in err  # one summary line per epoch

    trainer = Trainer(progress_bar=False)
    scores = trainer.evaluate(model, val, nn.CrossEntropyLoss(), metrics=["accuracy"])
    assert set(scores) == {"loss", "accuracy"}
    assert scores["accuracy"] == pytest.approx(history["val_accuracy"][-1])
    preds = trainer.predict(model, val)
    assert preds.shape == (397, 10) and preds.device.type == "cpu"
    labels = torch.cat([y for _, y in val])
    assert (preds.argmax(1) == labels).float().mean().item() == pytest.approx(scores["accuracy"])


def test_accuracy_is_computed_over_the_whole_epoch(digits):
    """Uneven batches: the epoch accuracy is not the mean of per-batch accuracies."""
    X, y = digits
    model = mlp()
    loader = DataLoader(TensorDataset(X[:101], y[:101]), batch_size=100)  # batches of 100 and 1
    scores = Trainer(progress_bar=False).evaluate(model, loader, nn.CrossEntropyLoss(), metrics=["accuracy"])
    with torch.no_grad():
        model.eval()
        expected = (model(X[:101]).argmax(1) == y[:101]).float().mean().item()
        expected_loss = nn.functional.cross_entropy(model(X[:101]), y[:101]).item()
    assert scores["accuracy"] == pytest.approx(expected)
    assert scores["loss"] == pytest.approx(expected_loss, rel=1e-5)


class TupleModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(32, 10), nn.Linear(32, 10)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.a(left) + self.b(right)


class DictDataset(torch.utils.data.Dataset):
    def __init__(self, X: torch.Tensor, y: torch.Tensor) -> None:
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return {"left": self.X[i, :32], "right": self.X[i, 32:]}, self.y[i]


def test_tuple_and_dict_inputs(digits):
    X, y = digits
    tuple_loader = DataLoader(TensorDataset(X[:512, :32], X[:512, 32:], y[:512]), batch_size=64,
                              collate_fn=lambda b: ((torch.stack([s[0] for s in b]), torch.stack([s[1] for s in b])),
                                                    torch.stack([s[2] for s in b])))
    dict_loader = DataLoader(DictDataset(X[:512], y[:512]), batch_size=64)
    for loader in (tuple_loader, dict_loader):
        torchrig.seed_everything(0)
        model = TupleModel()
        h = Trainer(max_epochs=5, progress_bar=False).fit(
            model, loader, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-2),
            val_loader=loader, metrics=["accuracy"])
        assert h["val_accuracy"][-1] > 0.9


def test_gradient_accumulation_matches_big_batch(digits):
    """Two accumulated batches of 32 make the same update as one batch of 64 (mean loss)."""
    X, y = digits
    ds = TensorDataset(X[:512], y[:512])
    results = []
    for batch_size, accumulate in ((64, 1), (32, 2)):
        torchrig.seed_everything(0)
        model = nn.Linear(64, 10)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        Trainer(max_epochs=2, accumulate_grad_batches=accumulate, progress_bar=False).fit(
            model, DataLoader(ds, batch_size=batch_size), nn.CrossEntropyLoss(), opt)
        results.append(model.weight.detach().clone())
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_gradient_clipping_bounds_each_update(digits):
    X, y = digits
    for algorithm in ("norm", "value"):
        model = nn.Linear(64, 10)
        before = model.weight.detach().clone()
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        Trainer(max_epochs=1, gradient_clip_val=1e-3, gradient_clip_algorithm=algorithm,
                progress_bar=False).fit(model, DataLoader(TensorDataset(X[:32] * 100, y[:32]), batch_size=32),
                                        nn.CrossEntropyLoss(), opt)
        step = (model.weight.detach() - before)
        if algorithm == "norm":
            assert step.norm() <= 1e-3 * 1.001  # the bias shares the norm budget
        else:
            assert step.abs().max() <= 1e-3 * 1.001


def test_scheduler_stepped_per_step(digit_loaders):
    train, _ = digit_loaders
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
    trainer = Trainer(max_epochs=2, scheduler_interval="step", progress_bar=False)
    trainer.fit(model, train, nn.CrossEntropyLoss(), opt, scheduler=sched)
    assert trainer.global_step == 2 * len(train)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 / (1 + 2 * len(train)))


def test_reduce_lr_on_plateau_steps_on_val_loss(digit_loaders):
    """The plateau scheduler gets each epoch's val_loss (not train_loss), after that epoch."""
    train, val = digit_loaders
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    seen = []

    class Recording(torch.optim.lr_scheduler.ReduceLROnPlateau):
        def step(self, metrics, *args, **kwargs):
            seen.append(float(metrics))
            return super().step(metrics, *args, **kwargs)

    sched = Recording(opt, patience=0, factor=0.5)
    history = Trainer(max_epochs=3, progress_bar=False).fit(model, train, nn.CrossEntropyLoss(), opt,
                                                            val_loader=val, scheduler=sched)
    assert seen == pytest.approx(history["val_loss"], rel=1e-12)
    assert seen != pytest.approx(history["train_loss"], rel=1e-3)


def test_bf16_mixed_on_cpu_trains(digit_loaders):
    train, val = digit_loaders
    model = mlp()
    trainer = Trainer(max_epochs=10, precision="bf16-mixed", device="cpu", progress_bar=False)
    assert trainer.precision == "bf16-mixed"
    h = trainer.fit(model, train, nn.CrossEntropyLoss(), torch.optim.AdamW(model.parameters(), lr=3e-3),
                    val_loader=val, metrics=["accuracy"])
    assert h["val_accuracy"][-1] > 0.9
    assert trainer.predict(model, val).dtype == torch.float32


def test_auto_device_and_precision_on_cpu():
    trainer = Trainer()
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if expected == "cpu" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        expected = "mps"
    assert trainer.device.type == expected
    if expected == "cpu":
        assert trainer.precision == "32"


# ---------------------------------------------------------------- bad input


def test_nan_loss_raises_with_epoch_and_step(digits):
    X, y = digits
    X = X[:256].clone()
    X[100] = float("nan")
    model = nn.Linear(64, 10)
    with pytest.raises(TorchrigError, match=r"loss became nan at epoch 1, step 4\b.*on_nan='skip'"):
        Trainer(progress_bar=False).fit(model, DataLoader(TensorDataset(X, y[:256]), batch_size=32),
                                        nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1))


def test_nan_loss_skip_leaves_weights_finite(digits):
    X, y = digits
    X = X[:256].clone()
    X[100] = float("inf")
    model = nn.Linear(64, 10)
    h = Trainer(max_epochs=2, on_nan="skip", progress_bar=False).fit(
        model, DataLoader(TensorDataset(X, y[:256]), batch_size=32), nn.CrossEntropyLoss(),
        torch.optim.SGD(model.parameters(), lr=0.1))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert math.isfinite(h["train_loss"][-1])


def test_wrong_batch_structure(digits):
    X, _ = digits
    model = nn.Linear(64, 10)
    loader = DataLoader(TensorDataset(X[:64]), batch_size=32)  # yields [x] only
    with pytest.raises(TorchrigError, match=r"Batch 1 is a list of length 1; expected a pair \(inputs, target\)"):
        Trainer(progress_bar=False).fit(model, loader, nn.CrossEntropyLoss(),
                                        torch.optim.SGD(model.parameters(), lr=0.1))


def test_wrong_input_shape_names_shapes(digits):
    X, y = digits
    model = nn.Linear(32, 10)
    with pytest.raises(TorchrigError, match=r"Linear failed on the first batch, whose inputs are tensor of shape \(32, 64\)"):
        Trainer(progress_bar=False).fit(model, DataLoader(TensorDataset(X[:64], y[:64]), batch_size=32),
                                        nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1))


def test_output_does_not_fit_loss(digits):
    X, y = digits
    model = nn.Linear(64, 10)
    with pytest.raises(TorchrigError, match=r"loss MSELoss does not fit the model's output tensor of shape \(32, 10\).*target tensor of shape \(32,\)"):
        Trainer(progress_bar=False).fit(model, DataLoader(TensorDataset(X[:64], y[:64].float()), batch_size=32),
                                        nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(TorchrigError, match=r"CrossEntropyLoss does not fit.*class indices"):
        Trainer(progress_bar=False).fit(model, DataLoader(TensorDataset(X[:64], y[:64] + 20), batch_size=32),
                                        nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1))


def test_empty_loader(digits):
    X, y = digits
    model = nn.Linear(64, 10)
    empty = DataLoader(TensorDataset(X[:0], y[:0]), batch_size=32)
    with pytest.raises(TorchrigError, match=r"train_loader is empty \(len 0\)"):
        Trainer(progress_bar=False).fit(model, empty, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1))
    dropped = DataLoader(TensorDataset(X[:10], y[:10]), batch_size=32, drop_last=True)
    with pytest.raises(TorchrigError, match=r"train_loader is empty"):
        Trainer(progress_bar=False).fit(model, dropped, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1))


def test_dataset_instead_of_loader(digits):
    X, y = digits
    model = nn.Linear(64, 10)
    with pytest.raises(TorchrigError, match=r"train_loader is a TensorDataset; pass a DataLoader"):
        Trainer(progress_bar=False).fit(model, TensorDataset(X, y), nn.CrossEntropyLoss(),
                                        torch.optim.SGD(model.parameters(), lr=0.1))


def test_unknown_metric_suggests(digit_loaders):
    train, val = digit_loaders
    model = mlp()
    with pytest.raises(TorchrigError, match=r"Unknown metric 'acuracy'\. Available: .*Did you mean 'accuracy'"):
        Trainer(progress_bar=False).fit(model, train, nn.CrossEntropyLoss(),
                                        torch.optim.SGD(model.parameters(), lr=0.1), metrics=["acuracy"])


def test_missing_checkpoint_path(digit_loaders, tmp_path):
    train, _ = digit_loaders
    model = mlp()
    with pytest.raises(TorchrigError, match=r"No checkpoint at '.*nope\.pt'"):
        Trainer(progress_bar=False).fit(model, train, nn.CrossEntropyLoss(),
                                        torch.optim.SGD(model.parameters(), lr=0.1), resume=tmp_path / "nope.pt")
    with pytest.raises(TorchrigError, match=r"resume=True\) needs to know where checkpoints are"):
        Trainer(progress_bar=False).fit(model, train, nn.CrossEntropyLoss(),
                                        torch.optim.SGD(model.parameters(), lr=0.1), resume=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": "tpu9"}, r"Unknown device 'tpu9'"),
        ({"precision": "8"}, r"Unknown precision '8'\. Choose one of 'auto', '32', 'bf16-mixed', '16-mixed'"),
        ({"on_nan": "ignore"}, r"on_nan must be one of 'raise', 'skip'; got 'ignore'"),
        ({"max_epochs": 0}, r"max_epochs must be >= 1"),
        ({"gradient_clip_val": -1.0}, r"gradient_clip_val must be above 0 \(or None: no clipping\), got -1\.0"),
        ({"gradient_clip_val": 0}, r"gradient_clip_val must be above 0"),
        ({"callbacks": [print]}, r"callbacks must be torchrig\.Callback objects"),
    ],
)
def test_bad_trainer_arguments(kwargs, message):
    with pytest.raises(TorchrigError, match=message):
        Trainer(**kwargs)


def test_a_loss_setting_torch_checks_late_is_named_not_blamed_on_the_shapes():
    """CrossEntropyLoss checks label_smoothing only when it runs: the message names the setting
    (it said the loss "does not fit" the output's shape)."""
    model = nn.Linear(4, 3)
    data = DataLoader(TensorDataset(torch.randn(8, 4), torch.arange(8) % 3), batch_size=4)
    with pytest.raises(TorchrigError, match=r"The loss CrossEntropyLoss refused its setting label_smoothing: "
                                            r"label_smoothing must be between 0\.0 and 1\.0") as raised:
        Trainer(progress_bar=False).fit(model, data, nn.CrossEntropyLoss(label_smoothing=3.0),
                                        torch.optim.SGD(model.parameters(), lr=0.1))
    assert "does not fit" not in str(raised.value)


def test_early_stopping_refuses_negative_patience():
    with pytest.raises(TorchrigError, match=r"patience and min_delta must be at least 0, got -1 and 0\.0"):
        torchrig.EarlyStopping(patience=-1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_requested_without_gpu():
    with pytest.raises(TorchrigError, match=r"CUDA is not available here\. Use device='auto'"):
        Trainer(device="cuda")


def test_too_few_outputs_for_the_classes_says_where_num_classes_comes_from(digit_loaders):
    import torchrig

    train_loader, _ = digit_loaders
    model = torch.nn.Linear(64, 3)
    with pytest.raises(torchrig.TorchrigError) as caught:
        torchrig.Trainer(max_epochs=1, progress_bar=False).fit(
            model, train_loader, torch.nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1))
    message = str(caught.value)
    assert "The model has 3 outputs, and the targets reach class 9: build it with num_classes=10 or more" in message
    assert "give the dataset a `classes` attribute" in message and ".." not in message
