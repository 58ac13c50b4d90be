"""text/csv, text/folder and text/fortunes on real files; train + predict from stdin."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch

import torchrig
from torchrig import TorchrigError
from torchrig._cli import main

REPO = Path(__file__).resolve().parents[3]
POSITIVE = ["what a wonderful film", "great acting and a great story", "i loved it", "superb and moving",
            "a delight from start to end", "brilliant, funny and warm"]
NEGATIVE = ["a dull boring mess", "terrible acting and a weak plot", "i hated it", "awful and slow",
            "a waste of time", "bad, boring and far too long"]


def write_csv(path: Path, rows: list[tuple[str, str]], sep: str = ",") -> Path:
    lines = [f"review{sep}stars"] + [f'"{t}"{sep}{label}' if sep == "," else f"{t}{sep}{label}" for t, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def reviews(n: int = 4) -> list[tuple[str, str]]:
    return [(t, "pos") for t in POSITIVE * n] + [(t, "neg") for t in NEGATIVE * n]


def test_csv_tsv_jsonl(tmp_path):
    csv = torchrig.get_dataset("text/csv", path=str(write_csv(tmp_path / "r.csv", reviews(1))),
                               text_column="review", label_column="stars")
    assert len(csv) == 12 and csv.classes == ["neg", "pos"] and csv[0] == ("what a wonderful film", 1)
    tsv = torchrig.get_dataset("text/csv", path=str(write_csv(tmp_path / "r.tsv", reviews(1), sep="\t")),
                               text_column="review", label_column="stars")
    assert len(tsv) == 12
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in reviews(1)))
    assert len(torchrig.get_dataset("text/csv", path=str(jsonl))) == 12


def test_bad_rows_are_named_or_skipped(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b'text,label\n"fine text",a\n"",b\n"caf\xe9 au lait",a\n"ok again",b\n')
    with pytest.raises(TorchrigError, match=r"bad\.csv:3: the 'text' value is empty\..*on_error: skip"):
        torchrig.get_dataset("text/csv", path=str(path))
    path.write_bytes(b'text,label\n"fine text",a\n"caf\xe9 au lait",a\n')
    with pytest.raises(TorchrigError, match=r"bad\.csv:3: bytes that are not valid.*encoding: latin-1"):
        torchrig.get_dataset("text/csv", path=str(path))
    assert torchrig.get_dataset("text/csv", path=str(path), encoding="latin-1")[1][0] == "café au lait"
    path.write_bytes(b'text,label\n"fine text",a\n"",b\n"caf\xe9",a\n"more",b\n')
    ds = torchrig.get_dataset("text/csv", path=str(path), on_error="skip")
    assert [t for t, _ in ds] == ["fine text", "more"] and len(ds.skipped) == 2
    with pytest.raises(TorchrigError, match=r"has no column 'body' or 'label'; its columns are: text, label"):
        torchrig.get_dataset("text/csv", path=str(path), text_column="body")
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"text": "ok", "label": "a"}\n{"text": 42, "label": "b"}\n')
    with pytest.raises(TorchrigError, match=r"bad\.jsonl:2: the 'text' value is a int, not text"):
        torchrig.get_dataset("text/csv", path=str(jsonl))


def test_folder_of_txt_files(tmp_path):
    for cls, texts in (("neg", NEGATIVE), ("pos", POSITIVE)):
        (tmp_path / "train" / cls).mkdir(parents=True)
        (tmp_path / "test" / cls).mkdir(parents=True)
        for i, t in enumerate(texts):
            (tmp_path / ("train" if i < 4 else "test") / cls / f"{i}.txt").write_text(t)
    (tmp_path / "train" / "pos" / "latin.txt").write_bytes(b"caf\xe9")
    with pytest.raises(TorchrigError, match=r"latin\.txt: not utf-8 text"):
        torchrig.get_dataset("text/folder", root=str(tmp_path))
    train = torchrig.get_dataset("text/folder", root=str(tmp_path), on_error="skip")
    assert len(train) == 8 and train.classes == ["neg", "pos"] and len(train.skipped) == 1
    assert len(torchrig.get_dataset("text/folder", root=str(tmp_path), split="test")) == 4
    assert torchrig.get_dataset("text/folder", root=str(tmp_path), split="val") is None


def test_fortunes(tmp_path):
    if not Path("/usr/share/games/fortunes/computers").is_file():
        pytest.skip("Debian's fortunes package is not installed (.ci/run installs it)")
    ds = torchrig.get_dataset("text/fortunes", categories=["computers", "food"])
    assert ds.classes == ["computers", "food"] and len(ds) > 900
    with pytest.raises(TorchrigError, match=r"no category 'compters'.*Did you mean 'computers'"):
        torchrig.get_dataset("text/fortunes", categories=["compters"])
    with pytest.raises(TorchrigError, match=r"apt-get install fortunes"):
        torchrig.get_dataset("text/fortunes", root=str(tmp_path / "none"))


@pytest.mark.parametrize("model", ["text/embedding_bag", "text/cnn"])
def test_csv_recipe_trains_and_predicts_from_stdin(tmp_path, monkeypatch, capsys, model):
    data = write_csv(tmp_path / "reviews.csv", reviews(5))
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    assert main(["train", str(REPO / "recipes/text/text_csv.yaml"), "--out", str(run), "--quiet",
                 "--set", f"data.dataset.path={data}", "--set", "data.dataset.text_column=review",
                 "--set", "data.dataset.label_column=stars", "--set", f"model.name={model}",
                 "--set", "trainer.max_epochs=1", "--set", "data.train_transform.min_freq=1",
                 "--set", "data.eval_transform.min_freq=1"]) == 0
    fitted = json.loads((run / "fitted.json").read_text())
    assert "<pad>" in fitted["train_transform"]["vocab"]["itos"]
    texts = set(read_csv_texts(data))  # top losses name each held-out sample by its text
    assert all(s["input"] in texts for s in json.loads((run / "top_losses.json").read_text())["samples"])
    assert "vocab_size:" in (run / "recipe.yaml").read_text()
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("what a wonderful story\n\na boring waste\n"))
    assert main(["predict", str(run), "-", "--json"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in results] == ["what a wonderful story", "a boring waste"]
    assert all({n for n, _ in r["top"]} == {"neg", "pos"} for r in results)
    note = tmp_path / "note.txt"
    note.write_text("i loved it, brilliant")
    assert main(["predict", str(run), str(note)]) == 0
    assert capsys.readouterr().out.startswith(f"{note}: ")


def read_csv_texts(path):
    import csv

    return [row["review"] for row in csv.DictReader(open(path, encoding="utf-8"))]


@pytest.mark.slow
def test_fortunes_recipe_beats_tfidf_baseline(tmp_path):
    if not Path("/usr/share/games/fortunes/computers").is_file():
        pytest.skip("Debian's fortunes package is not installed (.ci/run installs it)")
    import subprocess
    import sys

    run = tmp_path / "fortunes"
    result = subprocess.run([sys.executable, "-m", "torchrig", "train", str(REPO / "recipes/text/fortunes.yaml"),
                             "--out", str(run), "--quiet"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())

    # TF-IDF + logistic regression on the same (seeded, stratified) split, in the same run
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score

    from torchrig._data import carve

    ds = torchrig.get_dataset("text/fortunes")
    parts = carve(ds, {"val": 0.1, "test": 0.2}, seed=0, stratify=True)
    train, test = [ds[i] for i in parts["train"].indices], [ds[i] for i in parts["test"].indices]
    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2))
    clf = LogisticRegression(C=10, max_iter=2000).fit(vec.fit_transform([t for t, _ in train]), [y for _, y in train])
    baseline = accuracy_score([y for _, y in test], clf.predict(vec.transform([t for t, _ in test])))
    # `python benchmarks/spread.py --cases fortunes` (seeds 0-4; 1 and 2 threads give the same):
    # accuracy 0.600-0.663, median 0.653, against TF-IDF+LR's 0.644 here; macro-F1 0.435-0.579,
    # median 0.537. So the recipe is at the baseline's level, not reliably above it. The floors sit
    # at the median minus twice its distance to the lowest seed: 0.547 (baseline - 0.10) and 0.33.
    assert summary["test"]["accuracy"] >= baseline - 0.10, (summary["test"], baseline)
    assert summary["test"]["f1"] > 0.33


def test_bucketed_training_resumes_exactly(tmp_path, monkeypatch):
    """data.bucket_by_length: the bucket sampler's RNG is part of the checkpoint, so 1 epoch +
    resume to 2 equals 2 epochs straight."""
    data = write_csv(tmp_path / "reviews.csv", reviews(6) + [("a far longer review " * k, "pos") for k in range(2, 9)])
    monkeypatch.chdir(tmp_path)
    common = ["--quiet", "--set", f"data.dataset.path={data}", "--set", "data.dataset.text_column=review",
              "--set", "data.dataset.label_column=stars", "--set", "data.bucket_by_length=true",
              "--set", "data.batch_size=4", "--set", "data.train_transform.min_freq=1",
              "--set", "data.eval_transform.min_freq=1", "--set", "trainer.early_stopping=null",
              "--set", "scheduler=null"]  # a cosine schedule would be sized by the first run's max_epochs
    recipe = str(REPO / "recipes/text/text_csv.yaml")
    assert main(["train", recipe, "--out", str(tmp_path / "straight"), "--set", "trainer.max_epochs=2", *common]) == 0
    assert main(["train", recipe, "--out", str(tmp_path / "resumed"), "--set", "trainer.max_epochs=1", *common]) == 0
    assert main(["train", recipe, "--out", str(tmp_path / "resumed"), "--resume", "--set", "trainer.max_epochs=2",
                 *common]) == 0
    straight, resumed = [torchrig.load_state(tmp_path / d / "state.pt")["model"] for d in ("straight", "resumed")]
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    rows = [[{k: v for k, v in r.items() if k != "time"} for r in csv.DictReader((tmp_path / d / "metrics.csv").open())]
            for d in ("straight", "resumed")]
    assert rows[0] == rows[1] and len(rows[0]) == 2
