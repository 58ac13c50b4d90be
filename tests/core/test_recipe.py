"""Recipes: safe YAML, defaults, --set overrides, and errors with file, line, key and choices."""

from __future__ import annotations

import pytest

from torchrig import TorchrigError, load_recipe

RECIPE = """\
name: demo
seed: 3
data:
  dataset: {name: t/digits}
  split: {val: 0.1, test: 0.2}
  batch_size: 32
model: {name: t/mlp, hidden: 16}
optimizer: {name: adamw, lr: 0.01}
scheduler: {name: cosine}
metrics: [accuracy]
trainer: {max_epochs: 2}
"""


def write(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_and_overrides(tmp_path, rig_plugin):
    recipe = load_recipe(write(tmp_path, RECIPE), ["data.batch_size=128", "trainer.max_epochs=5",
                                                   "model.hidden=8", "trainer.gradient_clip_val=null"])
    assert recipe["data"]["batch_size"] == 128 and recipe["trainer"]["max_epochs"] == 5
    assert recipe["model"] == {"name": "t/mlp", "hidden": 8}
    assert recipe["loss"] == "cross_entropy" and recipe["task"] == "classification"
    assert recipe["trainer"]["device"] == "auto" and recipe["trainer"]["gradient_clip_val"] is None
    again = load_recipe(write(tmp_path, recipe.to_yaml(), "resolved.yaml"))
    assert again.data == recipe.data  # the resolved recipe round-trips


def test_override_turns_a_component_name_into_a_mapping(tmp_path, rig_plugin):
    text = RECIPE.replace("model: {name: t/mlp, hidden: 16}", "model: t/mlp")
    recipe = load_recipe(write(tmp_path, text), ["model.hidden=4"])
    assert recipe["model"] == {"name": "t/mlp", "hidden": 4}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("batch_size: 32", "batchsize: 32"),
         r"r\.yaml:6: data\.batchsize: unknown key\. Did you mean 'batch_size'.*Valid keys here: dataset, split"),
        (("model: {name: t/mlp, hidden: 16}", "model: {name: t/mpl, hidden: 16}"),
         r"r\.yaml:7: model\.name: Unknown model 't/mpl'\. Did you mean 't/mlp'\?"),
        (("hidden: 16", "hiden: 16"),
         r"r\.yaml:7: model\.hiden: 't/mlp' takes no argument 'hiden'\. Did you mean 'hidden'\? It takes: num_classes, hidden"),
        (("lr: 0.01", "learning_rate: 0.01"),
         r"r\.yaml:8: optimizer\.learning_rate: optimizer 'adamw' \(AdamW\) takes no argument 'learning_rate'\."),
        (("name: adamw", "name: adamm"),
         r"r\.yaml:8: optimizer\.name: Unknown optimizer 'adamm'\. Did you mean 'adam'.* Available \(torch\.optim, lower case\): adadelta"),
        (("name: cosine", "name: cosin"),
         r"r\.yaml:9: scheduler\.name: Unknown scheduler 'cosin'\. Did you mean 'cosine'"),
        (("[accuracy]", "[acuracy]"),
         r"r\.yaml:10: metrics\.0: unknown metric 'acuracy'\. Did you mean 'accuracy'"),
        (("max_epochs: 2", "max_epochs: two"),
         r"r\.yaml:11: trainer\.max_epochs: expected an integer, got 'two' \(str\)"),
        (("seed: 3", "seed: 3\ntask: clasification"),
         r"r\.yaml:3: task: 'clasification' is not one of 'classification', 'regression'\. Did you mean 'classification'"),
        (("seed: 3", "sed: 3"), r"r\.yaml:2: sed: unknown key\. Did you mean 'seed'\?"),
        (("split: {val: 0.1, test: 0.2}", "split: {val: 0.6, test: 0.5}"),
         r"r\.yaml:5: data\.split: val and test are fractions in \[0, 1\) that sum to less than 1"),
    ],
)
def test_errors_name_file_line_key_and_choices(tmp_path, rig_plugin, edit, message):
    path = write(tmp_path, RECIPE.replace(*edit))
    with pytest.raises(TorchrigError, match=message):
        load_recipe(path)


def test_override_errors(tmp_path, rig_plugin):
    path = write(tmp_path, RECIPE)
    with pytest.raises(TorchrigError, match=r"r\.yaml \(--set\): data\.batchsize: unknown key\. Did you mean 'batch_size'"):
        load_recipe(path, ["data.batchsize=3"])
    with pytest.raises(TorchrigError, match=r"--set 'trainer\.max_epochs': expected KEY=VALUE"):
        load_recipe(path, ["trainer.max_epochs"])
    with pytest.raises(TorchrigError, match=r"\(--set\): trainer\.max_epochs: expected an integer, got 'x'"):
        load_recipe(path, ["trainer.max_epochs=x"])


def test_bad_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "name: x\ndata:\n  dataset: [unclosed\nmodel: y\n")
    with pytest.raises(TorchrigError, match=r"r\.yaml:4: invalid YAML"):
        load_recipe(path)


def test_python_tags_are_never_loaded(tmp_path):
    path = write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned > pwned.txt']\n")
    with pytest.raises(TorchrigError, match=r"r\.yaml:1: invalid YAML: .*Python tags are never loaded"):
        load_recipe(path)
    assert not (tmp_path / "pwned.txt").exists()


def test_missing_file_suggests_a_neighbour(tmp_path):
    write(tmp_path, RECIPE, "digits.yaml")
    with pytest.raises(TorchrigError, match=r"No recipe file at '.*digit\.yaml'\. Did you mean 'digits\.yaml'"):
        load_recipe(tmp_path / "digit.yaml")


def test_builder_may_not_receive_split_from_recipe(tmp_path, rig_plugin):
    text = RECIPE.replace("dataset: {name: t/digits}", "dataset: {name: t/digits, split: train}")
    with pytest.raises(TorchrigError, match=r"data\.dataset\.split: 't/digits' takes no argument 'split'"):
        load_recipe(write(tmp_path, text))


def test_every_shipped_recipe_is_valid():
    """Each recipes/**.yaml parses and validates against the installed plugins (names, keys, the
    builders' arguments), so a recipe cannot rot unnoticed."""
    from pathlib import Path

    from torchrig import load_recipe

    recipes = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*/*.yaml"))
    assert len(recipes) >= 8
    for path in recipes:
        load_recipe(path)
