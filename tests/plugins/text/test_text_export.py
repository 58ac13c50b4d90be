"""model.json's text preprocessing is complete as data: a caller with only the JSON (no torchrig)
turns a text into the ids the encoder gives, for rule-based and trained tokenizers."""

from __future__ import annotations

import json
import re

import pytest
import torch

import torchrig

TRAIN = ["The cat sat on the mat.", "Dogs (and cats!) don't like baths; really?", "A mat, a hat: that's all.",
         "<br />HTML breaks stay out", "Numbers like 42 and 7 count too"] * 3
TEXTS = ["The dog sat on a hat!", "Unseen words: zebra, quokka.", "don't (ever) stop", ""]


def _ids_from_json(spec, text):
    """Tokenize and look up exactly as model.json says, with the standard library (and, for a
    trained tokenizer, the `tokenizers` package that reads its JSON)."""
    rules = spec["tokenizer"]
    if "tokenizers_json" in rules:
        from tokenizers import Tokenizer

        tokens = Tokenizer.from_str(rules["tokenizers_json"]).encode(text, add_special_tokens=False).tokens
    elif rules["name"] == "basic_english":
        text = text.lower() if rules["lowercase"] else text
        for pattern, replacement in rules["replace"]:
            text = re.sub(pattern, replacement, text)
        tokens = text.split()
    else:
        tokens = text.split() if rules["split"] == "whitespace" else list(text)
    index = {t: i for i, t in enumerate(spec["vocab"])}
    ids = [index.get(t, spec["unk_id"]) for t in tokens][: spec["max_len"]]
    return ids or [spec["unk_id"]]


@pytest.mark.parametrize("tokenizer", ["basic_english", "whitespace", "char", {"name": "bpe", "vocab_size": 120}])
def test_preprocessing_reproduces_the_encoder(tokenizer):
    encoder = torchrig.get_transform("text/encode", tokenizer=tokenizer, max_len=12)
    encoder.fit(TRAIN)
    spec = json.loads(json.dumps(encoder.preprocessing()))  # plain JSON data, nothing else
    assert spec["kind"] == "text" and spec["pad_id"] == encoder.pad_id
    for text in TEXTS:
        assert _ids_from_json(spec, text) == encoder(text).tolist(), text
    assert any(spec["unk_id"] in encoder(t).tolist() for t in TEXTS)  # unknown words were in play


def test_encoder_draws_the_tokens_the_model_sees():
    from torchrig._plots import _pyplot

    encoder = torchrig.get_transform("text/encode")
    encoder.fit(TRAIN)
    fig, ax = _pyplot().subplots()
    ids = encoder("the zebra sat")
    encoder.show((torch.cat([ids, torch.zeros(3, dtype=torch.long)]), torch.tensor(len(ids))), ax)
    assert [t.get_text() for t in ax.texts] == ["the <unk> sat"]
    _pyplot().close(fig)


@pytest.mark.parametrize("format", ["onnx", "pt2"])
def test_transformers_model_exports_with_dynamic_batch_and_time(tmp_path, format):
    """text/hf (a tiny BERT saved here) takes input_ids and attention_mask: both axes stay open."""
    transformers = pytest.importorskip("transformers")
    if not transformers.utils.is_torch_available() or not hasattr(torch.export.Dim, "DYNAMIC"):
        pytest.skip(f"needs torch >= 2.6 for transformers and torch.export (this is {torch.__version__})")
    pytest.importorskip("onnxruntime" if format == "onnx" else "torch")
    from hf_models import make_tiny_bert

    from torchrig._export import run_exported

    folder = make_tiny_bert(tmp_path / "bert", TRAIN)
    model = torchrig.get_model("text/hf", checkpoint=str(folder), num_classes=3).eval()
    tok = torchrig.get_transform("text/hf_tokenizer", checkpoint=str(folder))
    spec = torchrig.export_model(model, tok.encode_padded(TRAIN[:3]), tmp_path / f"m.{format}", format=format)
    assert [(i["name"], i["shape"]) for i in spec["inputs"]] == [("input_ids", ["batch", "time"]),
                                                                 ("attention_mask", ["batch", "time"])]
    other = tok.encode_padded(TEXTS[:3] + TRAIN[3:5])
    with torch.no_grad():
        expected = model(**other)
    got = run_exported(tmp_path / f"m.{format}", format, ["input_ids", "attention_mask"], list(other.values()))
    assert (got - expected).abs().max() <= 1e-4
