"""`torchrig export RUN --format onnx|pt2` and `predict --engine onnxruntime`: every built-in model
family that can be exported gives the same outputs as torch (max abs difference <= 1e-4) on a
batch of another size and length than it was traced on; model.json carries what a caller needs;
bad input gets one clear line and leaves the run dir as it was."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

import torchrig
from torchrig._cli import main

if not hasattr(torch.export.Dim, "DYNAMIC") or "dynamo" not in inspect.signature(torch.onnx.export).parameters:
    pytest.skip(f"export needs torch >= 2.6 (this is {torch.__version__})", allow_module_level=True)
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from torchrig._export import TOLERANCE, export_model, run_exported  # noqa: E402


def _clips(batch, samples):
    lengths = torch.linspace(samples, samples // 3, batch).long()
    x = torch.randn(batch, 1, samples) * 0.1
    for i, n in enumerate(lengths):
        x[i, :, n:] = 0
    return x, lengths


def _ids(batch, time):
    lengths = torch.linspace(time, 1, batch).long()
    ids = torch.randint(4, 60, (batch, time))
    for i, n in enumerate(lengths):
        ids[i, n:] = 0
    return ids, lengths


# family: (builder kwargs, traced example, another batch: other size, other length)
CASES = {
    "vision/small_cnn": ({"in_channels": 1}, lambda: torch.rand(3, 1, 16, 16), lambda: torch.rand(5, 1, 16, 16)),
    "vision/resnet18": ({}, lambda: torch.rand(2, 3, 32, 32), lambda: torch.rand(3, 3, 32, 32)),
    "audio/mel_cnn": ({"sample_rate": 8000}, lambda: _clips(3, 4000), lambda: _clips(5, 6400)),
    "audio/m5": ({}, lambda: _clips(3, 4000), lambda: _clips(4, 7000)),
    "text/embedding_bag": ({"vocab_size": 60}, lambda: _ids(3, 9), lambda: _ids(5, 17)),
    "text/cnn": ({"vocab_size": 60}, lambda: _ids(3, 9), lambda: _ids(5, 17)),
    "text/transformer": ({"vocab_size": 60}, lambda: _ids(3, 9), lambda: _ids(5, 17)),
    "text/bilstm": ({"vocab_size": 60, "layers": 2}, lambda: _ids(3, 9), lambda: _ids(5, 17)),
    "text/bigru": ({"vocab_size": 60}, lambda: _ids(3, 9), lambda: _ids(5, 17)),
}
# torch.export fixes the time axis of these (it unrolls a recurrent layer over the example's
# steps; M5's ceil-mode pooling pins the length): their pt2 file would take only the traced
# length, so export refuses them (test below). ONNX keeps the time axis of all of them.
FIXED_TIME = ("text/bilstm", "text/bigru", "audio/m5")
# Every family is checked through ONNX; through pt2 one of each domain's kinds (text/hf's pt2 is in
# tests/plugins/text), since the two formats share torch.export's capture.
PT2 = ["vision/small_cnn", "vision/resnet18", "audio/mel_cnn", "text/transformer"]


def _flat(inputs):
    return list(inputs) if isinstance(inputs, tuple) else [inputs]


@pytest.mark.slow
@pytest.mark.parametrize("name, format", [(n, "onnx") for n in CASES] + [(n, "pt2") for n in PT2])
def test_export_matches_torch_on_another_batch(name, format, tmp_path):
    kwargs, example, other = CASES[name]
    torch.manual_seed(0)
    model = torchrig.get_model(name, num_classes=4, **kwargs).eval()
    path = tmp_path / f"model.{format}"
    spec = export_model(model, example(), path, format=format)
    assert spec["checked"]["max_abs_diff"] <= TOLERANCE
    inputs = other()
    with torch.no_grad():
        expected = model(*_flat(inputs))
    names = [i["name"] for i in spec["inputs"]]
    got = run_exported(path, format, names, _flat(inputs))
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= TOLERANCE
    assert spec["inputs"][0]["shape"][0] == "batch"
    if len(names) == 2:  # lengths: the time axis stays open
        assert names == ["input", "lengths"] and spec["inputs"][0]["shape"][-1] == "time"


def test_models_that_cannot_be_exported_name_the_cause(tmp_path):
    model = torchrig.get_model("text/bigru", vocab_size=60, num_classes=3).eval()
    with pytest.raises(torchrig.TorchrigError, match=r"^Cannot export RNNClassifier to pt2: the model's code fixes axis 1 "
                                                     r"of input 'input' to the example's size \(9\)"):
        export_model(model, _ids(3, 9), tmp_path / "m.pt2", format="pt2")

    model = torchrig.get_model("audio/m5", num_classes=3).eval()
    with pytest.raises(torchrig.TorchrigError, match=r"^Cannot export M5 to pt2 with dynamic axes: the exported model "
                                                     r"fails on a batch of another size and length \(.*Guard failed"):
        export_model(model, _clips(3, 4000), tmp_path / "m5.pt2", format="pt2")

    class Eig(torch.nn.Module):  # data-dependent control flow: the output depends on a value
        def forward(self, x):
            return x * 2 if x.sum().item() > 0 else x

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Sequential(torch.nn.ReLU(), Eig()))
    with pytest.raises(torchrig.TorchrigError, match=r"^Cannot export Sequential to pt2: .*data-dependent.*; the innermost "
                                                     r"module that fails alone: '1\.1' \(Eig\)$"):
        export_model(model, torch.rand(3, 4), tmp_path / "e.pt2", format="pt2")
    assert not (tmp_path / "e.pt2").exists()


@pytest.fixture
def run(tiny_run):
    return tiny_run


def test_export_then_predict_with_onnxruntime(run, tmp_path, capsys, digests):
    (tmp_path / "x.csv").write_text(",".join(["0.5"] * 64))
    assert main(["predict", str(run), str(tmp_path / "x.csv"), "--engine", "onnxruntime"]) == 2
    err = capsys.readouterr().err
    assert "has no ONNX export" in err and f"Run `torchrig export {run} --format onnx` first" in err

    assert main(["export", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"exported: {run / 'export' / 'onnx' / 'model.onnx'}" in out and "max abs difference" in out
    spec = json.loads((run / "export" / "onnx" / "model.json").read_text())
    assert spec["classes"] == [str(i) for i in range(10)] and spec["task"] == "classification"
    assert spec["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 64]}]
    assert spec["outputs"][0]["shape"] == ["batch", 10] and spec["checked"]["max_abs_diff"] <= TOLERANCE

    rows = tmp_path / "rows"
    rows.mkdir()
    from sklearn.datasets import load_digits

    X = load_digits().data[-5:] / 16.0
    files = []
    for i, x in enumerate(X):
        (rows / f"{i}.csv").write_text(",".join(map(str, x)))
        files.append(str(rows / f"{i}.csv"))
    assert main(["predict", str(run), *files, "--json", "--top", "10"]) == 0
    eager = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["predict", str(run), *files, "--json", "--top", "10", "--engine", "onnxruntime"]) == 0
    onnx = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(eager) == len(onnx) == 5
    for a, b in zip(eager, onnx):
        assert [n for n, _ in a["top"]] == [n for n, _ in b["top"]]
        assert max(abs(p - q) for (_, p), (_, q) in zip(a["top"], b["top"])) <= 1e-5

    # an export is never replaced silently; --force does
    before = digests(run)
    assert main(["export", str(run)]) == 2
    assert "already holds an export; pass --force" in capsys.readouterr().err
    assert digests(run) == before
    assert main(["export", str(run), "--format", "pt2"]) == 0
    assert main(["export", str(run), "--force"]) == 0
    assert sorted(p.name for p in (run / "export").iterdir()) == ["onnx", "pt2"]  # no staging folder left

    # weights trained on after the export: the old export is refused
    weights = torchrig.load_weights(run / "weights.safetensors")
    torchrig.save_weights(run / "weights.safetensors", {k: v + 1 for k, v in weights.items()})
    assert main(["predict", str(run), files[0], "--engine", "onnxruntime"]) == 2
    assert "made from other weights" in capsys.readouterr().err


def test_export_refuses_what_is_not_a_run(rig_plugin, tmp_path, capsys, digests):
    (tmp_path / "a.txt").write_text("x")
    before = digests(tmp_path)
    assert main(["export", str(tmp_path), "--format", "pt2"]) == 2
    assert "is not a torchrig run dir" in capsys.readouterr().err
    assert digests(tmp_path) == before
