"""Pretrained word vectors: every file format, alignment and coverage, bad files named by file:line,
and the models, recipes and scikit-learn adapter that use them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import torchrig
from torchrig import TorchrigError
from torchrig._cli import main
from torchrig_text._vectors import load_vectors

REPO = Path(__file__).resolve().parents[3]
WORDS = ["the", "film", "was", "great", "awful", "fun", "boring", "café"]
VECS = np.random.default_rng(0).standard_normal((len(WORDS), 8)).astype(np.float32)
VOCAB = ["<pad>", "<unk>", "<bos>", "<eos>", "great", "awful", "movie", "café", "the"]


def write_text(path: Path, header: bool = False, trailing: str = "") -> Path:
    lines = [f"{len(WORDS)} {VECS.shape[1]}"] if header else []
    lines += [w + " " + " ".join(f"{x:.6f}" for x in v) + trailing for w, v in zip(WORDS, VECS)]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_binary(path: Path) -> Path:
    with open(path, "wb") as f:  # word2vec's C tool: "count dim\n", then word, space, float32s, newline
        f.write(f"{len(WORDS)} {VECS.shape[1]}\n".encode())
        for w, v in zip(WORDS, VECS):
            f.write(w.encode("utf-8") + b" " + v.astype("<f4").tobytes() + b"\n")
    return path


@pytest.mark.parametrize("kind", ["glove.txt", "word2vec.txt", "fasttext.vec", "word2vec.bin", "glove.txt.gz"])
def test_every_format_gives_the_same_aligned_vectors(tmp_path, kind):
    path = tmp_path / kind
    if kind.endswith(".bin"):
        write_binary(path)
    else:
        write_text(path, header=not kind.startswith("glove"), trailing=" " if kind.endswith(".vec") else "")
    aligned = load_vectors(path, VOCAB, dim=8)
    assert aligned.found.tolist() == [False] * 4 + [True, True, False, True, True]
    for token in ("great", "awful", "café", "the"):
        np.testing.assert_allclose(aligned.vectors[VOCAB.index(token)].numpy(), VECS[WORDS.index(token)], atol=1e-6)
    assert aligned.vectors[VOCAB.index("movie")].abs().sum() == 0
    # specials are not counted: 4 of the 5 real tokens ("movie" is missing)
    assert str(aligned).startswith(f"vectors: 4 of 5 vocabulary tokens found in {kind} (80.0%, dim 8)")


def test_gensim_files_read_alike(tmp_path):
    gensim = pytest.importorskip("gensim")
    kv = gensim.models.KeyedVectors(8)
    kv.add_vectors(WORDS, VECS)
    kv.save_word2vec_format(str(tmp_path / "g.bin"), binary=True)
    kv.save_word2vec_format(str(tmp_path / "g.txt"), binary=False)
    binary, text = load_vectors(tmp_path / "g.bin", VOCAB), load_vectors(tmp_path / "g.txt", VOCAB)
    torch.testing.assert_close(binary.vectors, text.vectors, atol=1e-5, rtol=0)
    assert binary.covered == text.covered == 4


def test_bad_files_are_named(tmp_path):
    good = write_text(tmp_path / "v.txt")
    with pytest.raises(TorchrigError, match=r"v\.txt:1: .*dimension 8, but the model's embed_dim is 16.*embed_dim: 8"):
        load_vectors(good, VOCAB, dim=16)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(TorchrigError, match=r"empty\.txt' holds no vectors"):
        load_vectors(tmp_path / "empty.txt", VOCAB)
    (tmp_path / "header-only.vec").write_text("0 300\n")
    with pytest.raises(TorchrigError, match=r"holds no vectors"):
        load_vectors(tmp_path / "header-only.vec", VOCAB)
    lines = good.read_text().splitlines()
    (tmp_path / "short.txt").write_text("\n".join(lines[:3] + ["great 0.1 0.2"] + lines[3:]) + "\n")
    with pytest.raises(TorchrigError, match=r"short\.txt:4: expected a word and 8 numbers, found 2"):
        load_vectors(tmp_path / "short.txt", VOCAB)
    (tmp_path / "nan.txt").write_text("\n".join(lines[:4] + ["great " + " ".join(["0.1x"] * 8)]) + "\n")
    with pytest.raises(TorchrigError, match=r"nan\.txt:5: not a number"):
        load_vectors(tmp_path / "nan.txt", VOCAB)
    (tmp_path / "latin1.txt").write_bytes(good.read_bytes() + "caf\xe9 ".encode("latin-1") + b"0 " * 7 + b"0\n")
    with pytest.raises(TorchrigError, match=r"latin1\.txt:9: the word-vectors file is not UTF-8"):
        load_vectors(tmp_path / "latin1.txt", VOCAB)
    (tmp_path / "model.bin").write_bytes((793712314).to_bytes(4, "little") + b"\0" * 64)
    with pytest.raises(TorchrigError, match=r"fastText \.bin model.*\.vec"):
        load_vectors(tmp_path / "model.bin", VOCAB)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(write_binary(tmp_path / "whole.bin").read_bytes()[:-20])
    with pytest.raises(TorchrigError, match=r"cut\.bin: word 8 of 8 is cut short"):
        load_vectors(cut, VOCAB)
    with pytest.raises(TorchrigError, match=r"None of the 3 vocabulary tokens is in .*basic_english"):
        load_vectors(good, ["<pad>", "<unk>", "GREAT", "Film", "##ing"])
    with pytest.raises(TorchrigError, match=r"No word-vectors file at .*nowhere\.vec"):
        load_vectors(tmp_path / "nowhere.vec", VOCAB)


@pytest.mark.parametrize("name", ["text/embedding_bag", "text/cnn", "text/bigru", "text/bilstm", "text/transformer"])
def test_models_start_from_the_vectors(tmp_path, name):
    path = write_text(tmp_path / "v.txt")
    size = {"dim": 8, "heads": 2} if name == "text/transformer" else {"embed_dim": 8}
    model = torchrig.get_model(name, vocab_size=len(VOCAB), vocab=VOCAB, vectors=str(path), **size)
    weight = model.embedding.weight.detach()
    for token in ("great", "café"):
        np.testing.assert_allclose(weight[VOCAB.index(token)].numpy(), VECS[WORDS.index(token)], atol=1e-6)
    assert weight[0].abs().sum() == 0  # padding stays zero
    missing = weight[VOCAB.index("movie")]
    assert 0 < missing.abs().sum() and missing.std() < 3 * float(VECS.std())  # small random, not zero
    assert model.torchrig_init_report["found"] == 4 and model.embedding.weight.requires_grad
    frozen = torchrig.get_model(name, vocab_size=len(VOCAB), vocab=VOCAB, vectors=str(path), freeze_embeddings=True,
                                **size)
    assert not frozen.embedding.weight.requires_grad
    with pytest.raises(TorchrigError, match=r"need the vocabulary to align to: pass vocab="):
        torchrig.get_model(name, vocab_size=len(VOCAB), vectors=str(path), **size)


POSITIVE = ["what a great film", "great fun", "a great and fun story", "fun fun fun", "the film was great"]
NEGATIVE = ["an awful film", "boring and awful", "the film was boring", "awful awful", "a boring story"]


def _write_reviews(path: Path) -> Path:
    rows = [(t, "pos") for t in POSITIVE * 6] + [(t, "neg") for t in NEGATIVE * 6]
    path.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in rows), encoding="utf-8")
    return path


def test_recipe_records_coverage_and_runs_without_the_file_later(tmp_path, monkeypatch, capsys):
    """Vectors only initialise: the trained run dir evaluates and predicts after the file is gone;
    fine-tuning's release keeps a frozen embedding frozen."""
    vectors = write_text(tmp_path / "v.vec", header=True)
    data = _write_reviews(tmp_path / "reviews.csv")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    args = ["train", str(REPO / "recipes/text/text_csv.yaml"), "--out", str(run), "--quiet",
            "--set", f"data.dataset.path={data}", "--set", "model.name=text/cnn", "--set", "model.embed_dim=8",
            "--set", f"model.vectors={vectors}", "--set", "model.freeze_embeddings=true",
            "--set", "trainer.max_epochs=3", "--set", "data.train_transform.min_freq=1",
            "--set", "data.eval_transform.min_freq=1", "--set", "trainer.finetune={freeze_epochs: 1}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    # the vocabulary: specials + the 12 words of the reviews; WORDS holds 7 of them
    assert summary["init"]["found"] == 7 and summary["init"]["total"] == 12 and summary["init"]["frozen"]
    assert "vectors: 7 of 12 vocabulary tokens found in v.vec (58.3%, dim 8), frozen" in out
    assert summary["test"]["accuracy"] == 1.0
    assert "vocab:" not in (run / "recipe.yaml").read_text()  # the vocabulary is never written into the recipe
    from safetensors.torch import load_file

    weights = load_file(run / "weights.safetensors")
    itos = json.loads((run / "fitted.json").read_text())["train_transform"]["vocab"]["itos"]
    np.testing.assert_allclose(weights["embedding.weight"][itos.index("great")].numpy(), VECS[WORDS.index("great")],
                               atol=1e-6)  # frozen through fine-tuning's release
    vectors.unlink()
    assert main(["evaluate", str(run)]) == 0
    note = tmp_path / "note.txt"
    note.write_text("great fun")
    capsys.readouterr()
    assert main(["predict", str(run), str(note)]) == 0
    assert "pos" in capsys.readouterr().out.split(":", 1)[1].split()[0]


def test_sklearn_pipeline_with_vectors(tmp_path):
    pytest.importorskip("skorch")
    from sklearn.pipeline import make_pipeline

    from torchrig.sklearn import RigClassifier
    from torchrig_text.sklearn import TextEncoder

    vectors = write_binary(tmp_path / "v.bin")
    texts = POSITIVE * 4 + NEGATIVE * 4
    labels = ["pos"] * 20 + ["neg"] * 20
    pipe = make_pipeline(TextEncoder("basic_english", max_len=8),
                         RigClassifier("text/embedding_bag", module__embed_dim=8, module__vectors=str(vectors),
                                       module__freeze_embeddings=True, max_epochs=30, lr=0.05, batch_size=8,
                                       verbose=0))
    pipe.fit(texts, labels)
    module = pipe[-1].module_
    assert module.torchrig_init_report["found"] == 7 and not module.embedding.weight.requires_grad
    assert (pipe.predict(texts) == np.array(labels)).mean() == 1.0
