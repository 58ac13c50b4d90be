"""audio/hf on a tiny wav2vec 2.0 classifier built here (random weights, its feature extractor,
both saved with save_pretrained): a recipe trains it on real sound files at several sample rates,
then evaluates and predicts; padding never reaches the feature extractor; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from audio_files import fill, tone, write

import torchrig
from torchrig import TorchrigError
from torchrig._cli import main

transformers = pytest.importorskip("transformers")
if not transformers.utils.is_torch_available():  # .ci/run's torch 2.3 venv: transformers 5 wants torch >= 2.6
    pytest.skip(f"transformers {transformers.__version__} cannot use this torch", allow_module_level=True)
REPO = Path(__file__).resolve().parents[3]


def make_tiny_wav2vec2(folder: Path, *, extractor: bool = True) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16, 16), conv_kernel=(10, 4, 4), conv_stride=(5, 4, 4),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, classifier_proj_size=16,
                            feat_extract_norm="layer", do_stable_layer_norm=True, mask_time_prob=0.0, num_labels=2)
    Wav2Vec2ForSequenceClassification(config).save_pretrained(folder)
    if extractor:  # "layer" norm models take an attention mask, so padding is masked
        Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                 return_attention_mask=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_wav2vec2(tmp_path_factory.mktemp("hf") / "tiny-wav2vec2")


def test_padding_never_reaches_the_extractor(tiny):
    model = torchrig.get_model("audio/hf", checkpoint=str(tiny), num_classes=3, sample_rate=8000).eval()
    assert model.torchrig_head == ["model.projector", "model.classifier"] and model.target_rate == 16000
    clips = [torch.from_numpy(tone(f, s, 8000).T.copy()) for f, s in ((300, 0.4), (900, 0.7))]
    lengths = torch.tensor([c.shape[-1] for c in clips])
    padded = torch.nn.utils.rnn.pad_sequence([c[0] for c in clips], batch_first=True)[:, None, :]
    with torch.no_grad():
        together = model(padded, lengths)
        alone = torch.cat([model(c[None], torch.tensor([c.shape[-1]])) for c in clips])
    assert together.shape == (2, 3)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)


def test_recipe_trains_evaluates_and_predicts(tmp_path, tiny, capsys):
    root = tmp_path / "clips"
    fill(root, per_class=10)  # tones at 300 Hz or 2 kHz, 8-48 kHz files, mono and stereo
    run = tmp_path / "run"
    args = ["train", str(REPO / "recipes/audio/audio_folder.yaml"), "--out", str(run), "--quiet",
            "--set", f"data.dataset.root={root}", "--set", "model={name: audio/hf, checkpoint: " + str(tiny) + "}",
            "--set", "trainer.max_epochs=12", "--set", "data.batch_size=4", "--set", "optimizer.lr=0.003",
            "--set", "trainer.early_stopping=null", "--set", "data.train_transform=null", "--set", "seed=1"]
    assert main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val"]["accuracy"] >= 0.75 and summary["test"]["accuracy"] >= 0.75, summary
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    clip = write(tmp_path / "new.flac", tone(2000, 0.5, 22050), 22050, "FLAC")
    assert main(["predict", str(run), str(clip)]) == 0
    assert capsys.readouterr().out.split(": ", 1)[1].split()[0] == "high"


def test_bad_inputs_are_named(tmp_path, tiny, monkeypatch):
    bare = make_tiny_wav2vec2(tmp_path / "model-only", extractor=False)
    with pytest.raises(TorchrigError, match=r"audio/hf: the folder .*model-only' has no feature extractor"):
        torchrig.get_model("audio/hf", checkpoint=str(bare))
    with pytest.raises(TorchrigError, match=r"audio/hf: the feature extractor of 'superb/wav2vec2-base-superb-kss' is "
                                            r"not in the Hugging Face cache .*hf download"):
        torchrig.get_model("audio/hf", checkpoint="superb/wav2vec2-base-superb-kss")
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)
    with pytest.raises(TorchrigError, match=r'audio/hf needs Hugging Face Transformers.*pip install "torchrig\[hf\]"'):
        torchrig.get_model("audio/hf", checkpoint=str(tiny))


def test_sklearn_on_raw_waveforms(tiny):
    pytest.importorskip("skorch")
    import numpy as np

    from torchrig.sklearn import RigClassifier

    rng = np.random.default_rng(0)
    X = np.stack([tone(f * rng.uniform(0.9, 1.1), 0.5, 16000, seed=i)[:, 0] for i, f in enumerate([300, 2000] * 12)])
    y = np.array(["low", "high"] * 12)
    torch.manual_seed(0)
    clf = RigClassifier("audio/hf", module__checkpoint=str(tiny), max_epochs=10, lr=3e-3, batch_size=4, verbose=0)
    assert (clf.fit(X, y).predict(X) == y).mean() >= 0.9
