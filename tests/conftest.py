"""Shared fixtures: fixed seeds, one thread, and scikit-learn's bundled digits as real data."""

from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset


@pytest.fixture(autouse=True)
def seeds_fixed():
    import torchrig

    torchrig.seed_everything(SEED)
    yield


# One intra-op thread everywhere: in this process, in the CLI and torchrun processes the tests
# start, and in joblib's workers (loky passes OMP_NUM_THREADS on when it is set). Float results
# then do not depend on the machine's core count, and pytest-xdist's workers do not oversubscribe.
# TORCHRIG_TEST_THREADS and TORCHRIG_TEST_SEED change both, for audits of how far results move
# (run the suite under other seeds and thread counts and see which floors hold).
THREADS = int(os.environ.get("TORCHRIG_TEST_THREADS", "1"))
SEED = int(os.environ.get("TORCHRIG_TEST_SEED", "0"))
os.environ["OMP_NUM_THREADS"] = str(THREADS)
# Tests never download: a library's named weights that are not in the (test-made) cache fail at
# once with the file, folder and URL, instead of reaching for the network.
os.environ["TORCHRIG_OFFLINE"] = "1"
# An exception no check anticipated is a test failure with its traceback, not the one-line
# "internal error" users get (the bad-input tests call the CLI in this process).
os.environ["TORCHRIG_TRACEBACK"] = "1"


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    torch.set_num_threads(THREADS)


@pytest.fixture(scope="session")
def digits():
    """sklearn's 8x8 handwritten digits: (X float32 in [0, 1], y long), 1797 samples."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return torch.tensor(X, dtype=torch.float32) / 16.0, torch.tensor(y)


@pytest.fixture
def digit_loaders(digits):
    X, y = digits
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    X, y = X[order], y[order]  # the file is ordered by writer; shuffle before splitting
    train = TensorDataset(X[:1400], y[:1400])
    val = TensorDataset(X[1400:], y[1400:])
    return DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=128)


@pytest.fixture
def rig_plugin(monkeypatch):
    """A plugin registered at runtime, like a third party's: digits, an MLP, a reader.

    Installed plugins are hidden, so tests see exactly this one.
    """
    from sklearn.datasets import load_digits

    import torchrig
    from torchrig import _plugins

    monkeypatch.setattr(_plugins, "_entry_points", lambda: [])
    _plugins.reset()
    plugin = torchrig.Plugin("t")

    class Digits(torch.utils.data.Dataset):
        def __init__(self, limit: int) -> None:
            X, y = load_digits(return_X_y=True)
            self.x = torch.tensor(X[:limit], dtype=torch.float32) / 16.0
            self.targets = torch.tensor(y[:limit])
            self.classes = [str(i) for i in range(10)]

        def __len__(self) -> int:
            return len(self.targets)

        def __getitem__(self, i: int):
            return self.x[i], self.targets[i]

    @plugin.dataset
    def digits(*, limit: int = 1797):
        """sklearn's digits as flat 64-feature vectors."""
        return Digits(limit)

    @plugin.model
    def mlp(*, num_classes: int = 10, hidden: int = 64):
        """A one-hidden-layer MLP on 64 features."""
        return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, num_classes))

    @plugin.transform
    def scale(*, factor: float = 1.0):
        return lambda x: x * factor

    @plugin.transform
    def jitter(*, scale: float = 0.05):
        """Gaussian noise on the inputs: a random augmentation, drawn from torch's global RNG."""
        return lambda x: x + scale * torch.randn_like(x)

    class Standardize:
        """Learns per-feature mean and std from the training inputs (a fitted transform)."""

        fits = 0

        def __init__(self) -> None:
            self.mean = self.std = None

        def fit(self, inputs):
            X = torch.stack(list(inputs))
            self.mean, self.std = X.mean(0), X.std(0) + 1e-3
            Standardize.fits += 1
            self.model_kwargs = {"hidden": 32}

        def state_dict(self):
            return {"mean": self.mean.tolist(), "std": self.std.tolist()}

        def load_state_dict(self, state):
            self.mean, self.std = torch.tensor(state["mean"]), torch.tensor(state["std"])

        def __call__(self, x):
            return (x - self.mean) / self.std

    @plugin.transform
    def standardize():
        return Standardize()

    plugin.standardize_class = Standardize

    @plugin.reader(".csv")
    def row(path: str):
        return torch.tensor([float(v) for v in open(path).read().split(",")])

    torchrig.register_plugin(plugin, source="tests")
    yield plugin
    _plugins.reset()


TINY_RECIPE = """\
name: digits-mlp
data:
  dataset: {name: t/digits, limit: 600}
  split: {val: 0.15, test: 0.2}
  batch_size: 32
model: {name: t/mlp, hidden: 32}
optimizer: {name: adamw, lr: 0.005}
metrics: [accuracy, f1]
trainer: {max_epochs: 2}
"""


@pytest.fixture
def tiny_run(rig_plugin, tmp_path):
    """A finished run dir, trained through the CLI in a few seconds: the digits MLP of `rig_plugin`."""
    from torchrig._cli import main

    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    assert main(["train", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    return tmp_path / "run"


@pytest.fixture
def digests():
    """``digests(folder)``: every file under it and its sha256, to show a command changed nothing."""
    import hashlib

    def of(folder):
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    return of


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA; on machines without it they are skipped, not failed."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
