"""Class imbalance: `loss.class_weights` (balanced, a list, a mapping), `data.sampler: balanced`
(seeded, resumable, sharded for DDP), class counts in summary.json, and scikit-learn's
`class_weight="balanced"` in RigClassifier; on real digits made 1:20 imbalanced."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import torchrig
from torchrig._cli import main
from torchrig._data import BalancedSampler

RECIPE = """\
seed: 0
data:
  dataset: {{name: i/skewed}}
  split: {{val: 0.2, test: 0.3}}
  batch_size: 16
model: {{name: t/mlp, hidden: 16}}
optimizer: {{name: adamw, lr: 0.003}}
metrics: [accuracy, f1]
loss: {loss}
trainer: {{max_epochs: {epochs}}}
{extra}"""


@pytest.fixture
def skewed(rig_plugin):
    """scikit-learn's digits 3 and 8, every 8 but one 3 in 20: a 1:20 imbalance on real images."""
    plugin = torchrig.Plugin("i")

    class Skewed(torch.utils.data.Dataset):
        def __init__(self):
            from sklearn.datasets import load_digits

            X, y = load_digits(return_X_y=True)
            threes = np.flatnonzero(y == 3)[::20]
            keep = np.sort(np.concatenate([threes, np.flatnonzero(y == 8)]))
            self.x = torch.tensor(X[keep], dtype=torch.float32) / 16
            self.targets = torch.tensor((y[keep] == 8).astype(np.int64))
            self.classes = ["three", "eight"]

        def __len__(self):
            return len(self.targets)

        def __getitem__(self, i):
            return self.x[i], self.targets[i]

    @plugin.dataset
    def skewed():
        return Skewed()

    torchrig.register_plugin(plugin, source="tests")
    return Skewed


def _train(tmp_path, out, loss="cross_entropy", epochs=3, extra="", *args):
    (tmp_path / f"{out}.yaml").write_text(RECIPE.format(loss=loss, epochs=epochs, extra=extra))
    assert main(["train", str(tmp_path / f"{out}.yaml"), "--out", str(tmp_path / out), "--quiet", *args]) == 0
    return json.loads((tmp_path / out / "summary.json").read_text())


@pytest.mark.slow
def test_balanced_class_weights_are_sklearns_and_recorded(skewed, tmp_path):
    summary = _train(tmp_path, "w", "{name: cross_entropy, class_weights: balanced}")
    counts = summary["class_counts"]
    train = counts["train"]
    assert train["eight"] >= 15 * train["three"] > 0  # the 1:20 imbalance survives the stratified split
    n = train["three"] + train["eight"]
    assert summary["class_weights"] == pytest.approx({c: n / (2 * k) for c, k in train.items()})
    assert set(counts) == {"train", "val", "test"}
    assert sum(sum(c.values()) for c in counts.values()) == len(skewed())
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * train["three"] + [1] * train["eight"])
    assert list(summary["class_weights"].values()) == pytest.approx(
        compute_class_weight("balanced", classes=np.array([0, 1]), y=y).tolist())


@pytest.mark.slow
def test_class_weights_as_a_list_or_mapping_and_their_errors(skewed, tmp_path, capsys):
    assert _train(tmp_path, "l", "{name: cross_entropy, class_weights: [3.0, 1.0]}")["class_weights"] == \
        {"three": 3.0, "eight": 1.0}
    assert _train(tmp_path, "m", "{name: cross_entropy, class_weights: {three: 5}}")["class_weights"] == \
        {"three": 5.0, "eight": 1.0}
    capsys.readouterr()
    (tmp_path / "bad.yaml").write_text(RECIPE.format(loss="{name: cross_entropy, class_weights: [1, 2, 3]}",
                                                     epochs=1, extra=""))
    assert main(["train", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "bad")]) == 2
    assert "loss.class_weights has 3 weights for 2 classes (three, eight)" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text(RECIPE.format(loss="{name: cross_entropy, class_weights: {thre: 2}}",
                                                     epochs=1, extra=""))
    assert main(["train", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "bad")]) == 2
    assert "names 'thre', which is not a class. Did you mean 'three'?" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text(RECIPE.format(loss="{name: mse, class_weights: balanced}", epochs=1, extra=""))
    assert main(["train", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "bad")]) == 2
    assert "loss 'mse' (MSELoss) takes no class weights" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def _recall_on_unseen_threes(run):
    """The share of the 3s the skewed set left out (19 in 20: 173 real images none of the runs
    saw) that a run's model calls a three."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    threes = np.flatnonzero(y == 3)
    unseen = np.setdiff1d(threes, threes[::20])
    model = torchrig.get_model("t/mlp", hidden=16, num_classes=2)
    model.load_state_dict(torchrig.load_weights(run / "weights.safetensors"))
    with torch.no_grad():
        predicted = model.eval()(torch.tensor(X[unseen], dtype=torch.float32) / 16).argmax(1)
    return float((predicted == 0).float().mean())


@pytest.mark.slow
def test_balanced_weights_lift_the_minority_class(skewed, tmp_path):
    _train(tmp_path, "plain", epochs=12)
    _train(tmp_path, "weighted", "{name: cross_entropy, class_weights: balanced}", epochs=12)
    plain, weighted = (_recall_on_unseen_threes(tmp_path / run) for run in ("plain", "weighted"))
    print(f"recall of unseen threes: plain {plain:.3f}, balanced weights {weighted:.3f}")
    assert weighted > plain + 0.1


def test_balanced_sampler_draws_classes_evenly_seeded_and_sharded():
    targets = [0] * 950 + [1] * 50
    sampler = BalancedSampler(targets, seed=3)
    sampler.set_epoch(1)
    first = list(sampler)
    share = sum(targets[i] for i in first) / len(first)
    assert len(first) == 1000 and 0.44 < share < 0.56  # about half from the 5% class
    assert list(sampler) == first  # the same (seed, epoch): the same draw, so resume is exact
    sampler.set_epoch(2)
    assert list(sampler) != first
    sampler.set_epoch(1)
    shards = [sampler.shard(2, r) for r in range(2)]
    merged = [i for pair in zip(*map(list, shards)) for i in pair]
    assert merged == first  # under DDP the ranks' k-th samples together are one process's draw


@pytest.mark.slow
def test_balanced_sampler_trains_and_resumes_exactly(skewed, tmp_path):
    extra = "  sampler: balanced\n"
    recipe = RECIPE.format(loss="cross_entropy", epochs=4, extra="").replace("  batch_size: 16\n",
                                                                               "  batch_size: 16\n" + extra)
    (tmp_path / "s.yaml").write_text(recipe)
    assert main(["train", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "straight"), "--quiet"]) == 0
    assert main(["train", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "split"), "--quiet",
                 "--set", "trainer.max_epochs=2"]) == 0
    assert main(["train", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "split"), "--quiet", "--resume"]) == 0
    a = torchrig.load_weights(tmp_path / "straight" / "weights.safetensors")
    b = torchrig.load_weights(tmp_path / "split" / "weights.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rig_classifier_class_weight_balanced(rig_plugin):
    from sklearn.base import clone
    from sklearn.datasets import load_digits
    from sklearn.utils.class_weight import compute_class_weight

    from torchrig.sklearn import RigClassifier

    X, y = load_digits(return_X_y=True)
    keep = np.concatenate([np.flatnonzero(y == 3)[::20], np.flatnonzero(y == 8)])
    X, y = X[keep].astype(np.float32) / 16, np.where(y[keep] == 8, "eight", "three")
    clf = RigClassifier("t/mlp", module__hidden=16, max_epochs=2, class_weight="balanced", random_state=0)
    assert clone(clf).get_params()["class_weight"] == "balanced"
    clf.fit(X, y)
    expected = compute_class_weight("balanced", classes=np.array(["eight", "three"]), y=y)
    assert clf.criterion_.weight.tolist() == pytest.approx(expected.tolist())
    weighted = RigClassifier("t/mlp", module__hidden=16, max_epochs=2, class_weight={"three": 4.0}, random_state=0)
    assert weighted.fit(X, y).criterion_.weight.tolist() == [1.0, 4.0]
    with pytest.raises(torchrig.TorchrigError, match="class_weight names 'four', which is not a class"):
        RigClassifier("t/mlp", max_epochs=1, class_weight={"four": 2.0}).fit(X, y)
