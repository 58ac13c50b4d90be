"""The plugin's own test: its components are registered and build."""

import torch

import torchrig


def test_components_are_registered():
    assert "acme/wide_mlp" in torchrig.list_models(plugin="acme")
    assert torchrig.list_datasets(plugin="acme") == ["acme/blobs"]


def test_model_and_dataset_build():
    ds = torchrig.get_dataset("acme/blobs", n=30, num_classes=3)
    x, y = ds[0]
    model = torchrig.get_model("acme/wide_mlp", num_classes=3, width=16)
    assert model(x[None]).shape == (1, 3) and 0 <= int(y) < 3
    assert torch.isclose(torchrig.get_transform("acme/standardize")(x).norm(), torch.tensor(1.0))


def test_follows_the_plugin_protocol():
    """Every component builds, the dataset batches, the model runs a batch of it, the reader has
    suffixes (torchrig check-plugin acme prints the same report)."""
    from torchrig.testing import check_plugin

    report = check_plugin("acme")
    assert ("ok", "acme/wide_mlp", "one batch -> (2, 3); head 2") in report.lines
