"""Carved splits: seeded and stratified, or group-aware (`data.split.group_by`, a dataset field or
a regular expression on file names): no group in two splits, recomputed identically."""

from __future__ import annotations

import warnings

import pytest
import torch
from PIL import Image

import torchrig
from torchrig._data import build_splits


def _recipe(tmp_path, dataset, split, *, seed=0, model="t/mlp"):
    path = tmp_path / "r.yaml"
    path.write_text(f"seed: {seed}\ndata:\n  dataset: {dataset}\n  split: {split}\nmodel: {model}\n")
    return torchrig.load_recipe(path)


@pytest.fixture
def grouped(rig_plugin):
    plugin = torchrig.Plugin("g")

    class Writers(torch.utils.data.Dataset):
        """Digits, each attributed to one of 60 writers (30 consecutive samples each)."""

        def __init__(self, size):
            from sklearn.datasets import load_digits

            X, y = load_digits(return_X_y=True)
            self.x, self.targets = torch.tensor(X[:size], dtype=torch.float32) / 16, torch.tensor(y[:size])
            self.writer = [f"w{i // size_of_group}" for i in range(size)]
            self.classes = [str(i) for i in range(10)]

        def __len__(self):
            return len(self.targets)

        def __getitem__(self, i):
            return self.x[i], self.targets[i]

    size_of_group = 30

    @plugin.dataset
    def writers(*, size: int = 1800):
        return Writers(min(size, 1797))

    torchrig.register_plugin(plugin, source="tests")
    return plugin


def test_group_by_a_field_keeps_each_group_in_one_split(grouped, tmp_path):
    recipe = _recipe(tmp_path, "g/writers", "{val: 0.15, test: 0.2, group_by: writer}")
    splits, info = build_splits(recipe)
    writer = splits["train"].dataset.writer
    seen = {name: {writer[i] for i in part.indices} for name, part in splits.items()}
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"]) and not (seen["val"] & seen["test"])
    assert sum(len(s) for s in seen.values()) == 60 and info["groups"] == {k: len(v) for k, v in seen.items()}
    n = 1797
    assert abs(len(splits["val"]) - 0.15 * n) <= 30 and abs(len(splits["test"]) - 0.2 * n) <= 30  # one group's size
    again, _ = build_splits(_recipe(tmp_path, "g/writers", "{val: 0.15, test: 0.2, group_by: writer}"))
    assert all(again[k].indices == splits[k].indices for k in splits)  # evaluate recomputes the same split
    other, _ = build_splits(_recipe(tmp_path, "g/writers", "{val: 0.15, test: 0.2, group_by: writer}", seed=1))
    assert other["test"].indices != splits["test"].indices  # another seed, other groups


def _images(root, names):
    for cls, name in names:
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), color=len(name) * 7 % 255).save(root / cls / name)


def test_group_by_a_regex_on_file_names(tmp_path):
    speakers = ["jackson", "nicolas", "theo", "yweweler", "george", "lucas"]
    _images(tmp_path / "photos", [(str(d), f"{d}_{s}_{k}.png") for d in range(3) for s in speakers for k in range(4)])
    recipe = _recipe(tmp_path, f"{{name: vision/image_folder, root: '{tmp_path / 'photos'}', channels: 1}}",
                     "{val: 0.17, test: 0.17, group_by: '^[^_]+_([^_]+)_'}", model="vision/small_cnn")
    splits, info = build_splits(recipe)
    base = splits["train"].dataset
    spoken = {name: {base.describe(i).rsplit("/", 1)[1].split("_")[1] for i in part.indices}
              for name, part in splits.items()}
    assert info["groups"] == {"train": 4, "val": 1, "test": 1}
    assert set().union(*spoken.values()) == set(speakers) and sum(map(len, spoken.values())) == 6


def test_a_regex_that_matches_no_file_name_shows_one(tmp_path):
    _images(tmp_path / "photos", [("a", "a1.png"), ("a", "a2.png"), ("b", "b1.png"), ("b", "b2.png")])
    folder = f"{{name: vision/image_folder, root: '{tmp_path / 'photos'}', channels: 1}}"
    with pytest.raises(torchrig.TorchrigError, match=r"'\^\(x\)_' matches no group in the file name 'a1\.png'"):
        build_splits(_recipe(tmp_path, folder, "{val: 0.25, test: 0.25, group_by: '^(x)_'}", model="vision/small_cnn"))


def test_group_by_errors_say_what_to_do(grouped, tmp_path):
    with pytest.raises(torchrig.TorchrigError, match=r"neither a field of the dataset \(Writers\) nor a valid regular"):
        build_splits(_recipe(tmp_path, "g/writers", "{val: 0.25, test: 0.25, group_by: 'writer('}"))
    with pytest.raises(torchrig.TorchrigError, match=r"Writers has no field 'speaker' and does not name its samples"):
        build_splits(_recipe(tmp_path, "g/writers", "{val: 0.25, test: 0.25, group_by: speaker}"))


def test_a_group_larger_than_a_share_is_announced(grouped, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits, _ = build_splits(_recipe(tmp_path, "{name: g/writers, size: 200}", "{val: 0.1, test: 0.1, group_by: writer}"))
    messages = [str(w.message) for w in caught]
    assert any("has 30 samples, more than the val share (20 of 200)" in m for m in messages), messages
    assert len(splits["val"]) == 30


def test_folds_over_a_datasets_own_train_and_val_keep_what_it_carries(rig_plugin, tmp_path):
    """`torchrig cv` pools a dataset's own train and val splits: the pool still batches with the
    dataset's collate_fn (variable-length clips, padded), names each sample and gives its groups."""
    from torchrig._data import collate_of

    class Clips(torch.utils.data.Dataset):
        def __init__(self, first, n):
            self.lengths = [3 + (first + i) % 5 for i in range(n)]
            self.targets = [(first + i) % 2 for i in range(n)]
            self.speaker = [f"s{(first + i) // 4}" for i in range(n)]
            self.classes = ["no", "yes"]

        def __len__(self):
            return len(self.targets)

        def __getitem__(self, i):
            return torch.ones(self.lengths[i]), self.targets[i]

        def describe(self, i):
            return f"clip_{self.speaker[i]}_{i}.wav"

        @staticmethod
        def collate_fn(batch):
            x = torch.nn.utils.rnn.pad_sequence([b[0] for b in batch], batch_first=True)
            return x, torch.tensor([b[1] for b in batch])

    plugin = torchrig.Plugin("c")

    @plugin.dataset
    def clips(*, split: str = "train"):
        return {"train": Clips(0, 40), "val": Clips(40, 16), "test": Clips(56, 8)}[split]

    torchrig.register_plugin(plugin, source="tests")

    splits, _ = build_splits(_recipe(tmp_path, "c/clips", "{folds: 4, fold: 2, group_by: speaker}"))
    assert len(splits["train"]) + len(splits["val"]) == 56 and len(splits["test"]) == 8
    assert collate_of(splits["train"]) is Clips.collate_fn
    pool = splits["val"].dataset
    assert [pool.describe(i) for i in (0, 40)] == ["clip_s0_0.wav", "clip_s10_0.wav"]
    assert pool.lengths[40] == Clips(40, 1).lengths[0] and pool.classes == ["no", "yes"]
    speakers = {s: {pool.describe(i).split("_")[1] for i in part.indices} for s, part in splits.items() if s != "test"}
    assert not speakers["train"] & speakers["val"]
    x, _ = next(iter(torch.utils.data.DataLoader(splits["train"], batch_size=8, collate_fn=collate_of(splits["train"]))))
    assert x.shape == (8, max(pool.lengths[i] for i in splits["train"].indices[:8]))
