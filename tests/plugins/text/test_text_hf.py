"""text/hf and text/hf_tokenizer on a tiny BERT built here (a WordPiece tokenizer trained on the
fly, a 2-layer config, both saved with save_pretrained): recipes train, resume, evaluate and
predict; the Trainer takes dict batches and output objects; scikit-learn; clear errors."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import torchrig
from torchrig import TorchrigError
from torchrig._cli import main

transformers = pytest.importorskip("transformers")
if not transformers.utils.is_torch_available():  # .ci/run's torch 2.3 venv: transformers 5 wants torch >= 2.6
    pytest.skip(f"transformers {transformers.__version__} cannot use this torch", allow_module_level=True)
from hf_models import make_tiny_bert  # noqa: E402  (after the skip: it imports transformers)

REPO = Path(__file__).resolve().parents[3]
POSITIVE = ["what a great film", "great fun", "a great and fun story", "fun fun fun", "the film was great",
            "i loved it", "a delight", "wonderful and warm"]
NEGATIVE = ["an awful film", "boring and awful", "the film was boring", "awful awful", "a boring story",
            "i hated it", "a dull mess", "terrible and slow"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("hf") / "tiny-bert", POSITIVE + NEGATIVE)


def _csv(path: Path) -> Path:
    rows = [(t, "pos") for t in POSITIVE * 4] + [(t, "neg") for t in NEGATIVE * 4]
    path.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in rows), encoding="utf-8")
    return path


def _train_args(run: Path, data: Path, tiny: Path, epochs: int) -> list[str]:
    return ["train", str(REPO / "recipes/text/hf_csv.yaml"), "--out", str(run), "--quiet",
            "--set", f"data.dataset.path={data}", "--set", f"model.checkpoint={tiny}",
            "--set", f"trainer.max_epochs={epochs}", "--set", "optimizer.lr=0.003",
            "--set", "trainer.finetune=null", "--set", "data.batch_size=8"]


def test_recipe_trains_resumes_evaluates_and_predicts(tmp_path, tiny, monkeypatch, capsys):
    data = _csv(tmp_path / "reviews.csv")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    assert main(_train_args(run, data, tiny, 3)) == 0
    resolved = (run / "recipe.yaml").read_text()
    assert f"checkpoint: {tiny}" in resolved.split("model:")[0]  # the tokenizer took the model's checkpoint
    first = (run / "metrics.csv").read_text().splitlines()
    assert main(_train_args(run, data, tiny, 12) + ["--resume"]) == 0  # continues from epoch 3
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[:4] == first[:4] and len(rows) == 13
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] >= 0.8, summary["test"]
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    monkeypatch.setattr("sys.stdin", io.StringIO("great fun, a delight\nawful and boring\n"))
    assert main(["predict", str(run), "-", "--json"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["top"][0][0] for r in results] == ["pos", "neg"]


def test_build_gives_the_tokenizer_the_models_checkpoint(tmp_path, tiny):
    recipe = torchrig.load_recipe(REPO / "recipes/text/hf_csv.yaml", [f"data.dataset.path={_csv(tmp_path / 'r.csv')}",
                                                                      f"model.checkpoint={tiny}"])
    parts = torchrig.build(recipe)
    assert parts.train_transform.checkpoint == str(tiny) and parts.model.model.config.num_labels == 2
    inputs, _ = next(iter(parts.loaders["train"]))
    assert parts.model(**inputs).shape == (len(inputs["input_ids"]), 2)


def test_trainer_takes_dict_batches_and_output_objects(tiny):
    """A raw Transformers model (returning a ModelOutput) through the Trainer, fed by the tokenizer."""
    from transformers import AutoModelForSequenceClassification

    tok = torchrig.get_transform("text/hf_tokenizer", checkpoint=str(tiny), max_len=16)
    pairs = [(t, 1) for t in POSITIVE * 2] + [(t, 0) for t in NEGATIVE * 2]
    loader = torch.utils.data.DataLoader(pairs, batch_size=8, shuffle=True, collate_fn=tok.collate_fn,
                                         generator=torch.Generator().manual_seed(0))
    inputs, target = next(iter(loader))
    assert set(inputs) == {"input_ids", "attention_mask"} and inputs["input_ids"].shape[1] <= 16
    assert (inputs["attention_mask"].sum(1) < inputs["input_ids"].shape[1]).any()  # padded per batch
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny)
    trainer = torchrig.Trainer(max_epochs=15, progress_bar=False)
    history = trainer.fit(model, loader, torch.nn.CrossEntropyLoss(), torch.optim.AdamW(model.parameters(), lr=3e-3),
                          metrics=["accuracy"])
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert trainer.evaluate(model, loader, torch.nn.CrossEntropyLoss(), metrics=["accuracy"])["accuracy"] >= 0.9


def test_sklearn_pipeline_under_grid_search(tiny):
    pytest.importorskip("skorch")
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    from torchrig.sklearn import RigClassifier
    from torchrig_text.sklearn import HFTextEncoder

    torch.manual_seed(0)
    texts = POSITIVE * 3 + NEGATIVE * 3
    labels = np.array(["pos"] * 24 + ["neg"] * 24)
    pipe = make_pipeline(HFTextEncoder(str(tiny), max_len=12),
                         RigClassifier("text/hf", max_epochs=12, batch_size=8, verbose=0))
    search = GridSearchCV(pipe, {"rigclassifier__lr": [3e-3, 1e-5]}, cv=2).fit(texts, labels)
    assert search.best_params_ == {"rigclassifier__lr": 3e-3}
    assert (search.predict(texts) == labels).mean() >= 0.9
    X = search.best_estimator_[0].transform(["great fun"])
    assert X.model_kwargs["checkpoint"] == str(tiny) and X.shape == (1, 12) and X[0, -1] == X.model_kwargs["pad_id"]


def test_bad_inputs_are_named(tmp_path, tiny, monkeypatch):
    no_tokenizer = make_tiny_bert(tmp_path / "model-only", POSITIVE, tokenizer=False)
    with pytest.raises(TorchrigError, match=r"folder .*model-only' has no tokenizer .*tokenizer\.save_pretrained"):
        torchrig.get_transform("text/hf_tokenizer", checkpoint=str(no_tokenizer))
    with pytest.raises(TorchrigError, match=r"text/hf: no folder at '\./nowhere/model'"):
        torchrig.get_model("text/hf", checkpoint="./nowhere/model")
    # TORCHRIG_OFFLINE=1 (tests/conftest.py): a hub name not cached says how to get it, at once
    with pytest.raises(TorchrigError, match=r"text/hf: the model of 'bert-base-uncasd' is not in the Hugging Face "
                                            r"cache .* \(offline\).*hf download bert-base-uncasd.*checkpoint: DIR"):
        torchrig.get_model("text/hf", checkpoint="bert-base-uncasd")
    from torchrig import hf

    monkeypatch.setattr(hf, "_cached_names", lambda: ["bert-base-uncased", "gpt2"])  # what the cache holds
    with pytest.raises(TorchrigError, match=r"bert-base-uncasd.*Cached models like it: bert-base-uncased\."):
        torchrig.get_model("text/hf", checkpoint="bert-base-uncasd")
    monkeypatch.setitem(sys.modules, "transformers", None)  # not installed
    with pytest.raises(TorchrigError, match=r'text/hf needs Hugging Face Transformers.*pip install "torchrig\[hf\]"'):
        torchrig.get_model("text/hf", checkpoint=str(tiny))


def test_finetune_trains_the_head_first(tiny):
    model = torchrig.get_model("text/hf", checkpoint=str(tiny), num_classes=3)
    assert model.torchrig_head == ["model.classifier"] and model.model.classifier.out_features == 3
    torchrig.FineTune(freeze_epochs=1).apply(model, epoch=0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"model.classifier.weight", "model.classifier.bias"}


@pytest.mark.slow
def test_ddp_fine_tunes_a_transformers_model(tmp_path, tiny):
    """Two processes (torchrun, gloo): dict batches, the head trained alone for an epoch, then
    the whole model (the Trainer re-wraps DDP when the trainable set changes)."""
    import os
    import subprocess

    data = _csv(tmp_path / "reviews.csv")
    args = _train_args(tmp_path / "ddp", data, tiny, 8)
    args[args.index("trainer.finetune=null")] = "trainer.finetune={freeze_epochs: 1, backbone_lr_scale: 1.0}"
    args[args.index("optimizer.lr=0.003")] = "optimizer.lr=0.01"  # a random tiny BERT: no pretrained backbone to spare
    args.remove("--quiet")
    args += ["--set", "data.bucket_by_length=false"]  # DDP shards with a DistributedSampler, not length buckets
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torchrig", *args, "--nproc", "2"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "backbone unfrozen at epoch 2" in result.stdout + result.stderr
    meta = json.loads((tmp_path / "ddp" / "meta.json").read_text())
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert meta["world_size"] == 2 and summary["test"]["accuracy"] >= 0.8, summary["test"]
