"""``torchrig export RUN --format onnx|pt2``: a run's model for serving without torchrig.

ONNX goes through ``torch.onnx.export`` (the ``torch.export``-based exporter), pt2 through
``torch.export.export`` and ``torch.export.save``. The batch axis is dynamic, and so is the time
axis of a model that takes lengths (text ids, audio clips). Next to the model, ``model.json``
says what a caller must know: the classes, the inputs' names, dtypes and shapes, and the
preprocessing to do first (the eval transform's own ``preprocessing``: resize, crop and mean/std;
a vocabulary and the tokenizer's rules; a sample rate).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import protocols
from ._errors import TorchrigError
from ._version import __version__

FORMATS = {"onnx": "model.onnx", "pt2": "model.pt2"}
SPEC = "model.json"
TOLERANCE = 1e-4  # max abs difference between the exported model and torch eager on the example batch


class Flat(nn.Module):
    """A model called with positional tensors (the inputs flattened in ``names`` order),
    returning a tensor (a Transformers output's ``logits``): what exporters and runtimes take."""

    def __init__(self, model: nn.Module, kind: str, names: list[str]) -> None:
        super().__init__()
        self.model, self.kind, self.names = model, kind, names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        if self.kind == "dict":
            out = self.model(**dict(zip(self.names, args)))
        else:
            out = self.model(*args)
        return out if isinstance(out, torch.Tensor) else out.logits


def flatten(inputs: Any) -> tuple[str, list[str], list[torch.Tensor]]:
    """A batch's inputs as (kind, names, tensors): a tensor is ``input``; a pair (x, lengths) is
    ``input``, ``lengths``; a dict keeps its keys."""
    if isinstance(inputs, torch.Tensor):
        return "tensor", ["input"], [inputs]
    if isinstance(inputs, Mapping):
        names = list(inputs)
        return "dict", names, [torch.as_tensor(inputs[k]) for k in names]
    if isinstance(inputs, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in inputs):
        names = ["input", "lengths"] if len(inputs) == 2 and _is_lengths(inputs[1], inputs[0]) else \
            [f"input_{i}" for i in range(len(inputs))]
        return "tuple", names, list(inputs)
    raise TorchrigError(f"Cannot export a model whose inputs are {type(inputs).__name__}: export takes a tensor, "
                        "a tuple of tensors or a dict of tensors.")


def _is_lengths(t: torch.Tensor, x: torch.Tensor) -> bool:
    return t.ndim == 1 and not t.is_floating_point() and len(t) == len(x)


def _dims(kind: str, names: list[str], tensors: list[torch.Tensor]) -> tuple[list[dict[int, Any]], list[list[Any]]]:
    """Dynamic axes (torch.export's) and the symbolic shapes for model.json: axis 0 is the
    batch; with lengths (or an attention mask), the input's last axis is time."""
    batch, time = _dim("batch"), _dim("time")
    timed = "lengths" in names or "attention_mask" in names
    dynamic, shapes = [], []
    for name, t in zip(names, tensors):
        axes: dict[int, Any] = {0: batch} if t.ndim else {}
        shape: list[Any] = list(t.shape)
        if t.ndim:
            shape[0] = "batch"
        if timed and name != "lengths" and t.ndim >= 2:
            axes[t.ndim - 1] = time
            shape[-1] = "time"
        dynamic.append(axes)
        shapes.append(shape)
    return dynamic, shapes


def _dim(name: str) -> Any:
    auto = getattr(torch.export.Dim, "DYNAMIC", None) or getattr(torch.export.Dim, "AUTO", None)
    return auto if auto is not None else torch.export.Dim(name)


_CAUSES = ("GuardOnDataDependentSymNode", "Could not extract specialized integer", "data-dependent", "Unsupported",
           "not supported", "No decomposition", "unsupported", "Could not find an implementation")


def _problem(exc: BaseException, names: list[str]) -> str:
    """The cause an exporter failed on, from its (long) message: the line that names it, the
    operator, and the model code's line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", f"{type(exc).__name__}: {exc}")
    for cause in (exc.__cause__, exc.__context__):  # the ONNX exporter wraps torch.export's error
        if cause is not None:
            text += "\n" + re.sub(r"\x1b\[[0-9;]*m", "", f"{type(cause).__name__}: {cause}")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    fixed = re.search(r"L\['args'\]\[0\]\[(\d+)\]\.size\(\)\[(\d+)\]|L\['args'\]\[(\d+)\]\.size\(\)\[(\d+)\]", text)
    if fixed and "specialized it to be a constant" in text:
        i, axis = (int(g) for g in (fixed.group(1) or fixed.group(3), fixed.group(2) or fixed.group(4)))
        constant = re.search(r"specialized it to be a constant \((\d+)\)", text)
        head = (f"the model's code fixes axis {axis} of input {names[i]!r} to the example's size"
                f"{f' ({constant.group(1)})' if constant else ''}, so that axis cannot stay dynamic")
    else:
        head = next((line for line in lines if any(c in line for c in _CAUSES)), lines[0] if lines else text)
    bits = [head[:300]]
    found = []
    for pattern in (r"aten[.:]{1,2}[A-Za-z_0-9.]+", r"torch\.ops\.[A-Za-z_0-9.]+", r"prim::[A-Za-z_0-9]+"):
        found += re.findall(pattern, text)
    if found:
        bits.append("operator: " + ", ".join(dict.fromkeys(found[:3])))
    where = re.findall(r'File "([^"]+)", line (\d+), in (\w+)', text)
    where += re.findall(r"Caused by: \(([^()\s]+):(\d+) in (\w+)\)", text)
    user = [w for w in where if "/torch/" not in w[0] and "/onnx" not in w[0] and "_export.py" not in w[0]]
    if user:
        path, line, func = user[-1]
        bits.append(f"in {func}() at {path}:{line}")
    return "; ".join(bits)


def _culprit(model: nn.Module, flat: nn.Module, tensors: list[torch.Tensor]) -> str | None:
    """The deepest submodule that fails ``torch.export`` on its own inputs (recorded in one eager
    pass), descending from the model through the failing child: ``'encoder.layers.0' (GRU)``."""
    captured: dict[str, tuple[Any, Any]] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, kwargs, name=name: captured.setdefault(name, (args, kwargs)),
                                         with_kwargs=True) for name, m in model.named_modules() if name]
    try:
        with torch.no_grad():
            flat(*tensors)
    except Exception:
        return None
    finally:
        for hook in hooks:
            hook.remove()
    found, parent = None, model
    prefix = ""
    while True:
        failing = None
        for child_name, child in parent.named_children():
            name = prefix + child_name
            if name not in captured:
                continue
            args, kwargs = captured[name]
            try:
                torch.export.export(child, tuple(args), dict(kwargs))
            except Exception:
                failing = (name, child)
                break
        if failing is None:
            return found
        found = f"{failing[0]!r} ({type(failing[1]).__name__})"
        parent, prefix = failing[1], failing[0] + "."


def export_model(model: nn.Module, inputs: Any, path: str | Path, *, format: str = "onnx") -> dict[str, Any]:
    """Export any ``nn.Module`` (in eval mode, on the CPU), traced on an example batch, and check
    the file against torch on that batch and on one of another size (and length).

    Args:
        model: the model; its output may be a tensor or an object with ``logits``.
        inputs: an example batch's inputs: a tensor, a tuple ``(x, lengths)`` (then the time
            axis is dynamic too), or a dict of tensors (``input_ids``, ``attention_mask``).
        path: the file to write (``.onnx`` or ``.pt2``).
        format: ``"onnx"`` (``torch.onnx.export``, needs ``torchrig[onnx]``) or ``"pt2"``
            (``torch.export.save``).

    Returns:
        The inputs' and output's names, dtypes and symbolic shapes (``"batch"``, ``"time"``), and
        the max abs difference found on the example batch.

    Raises:
        TorchrigError: the model cannot be exported (naming the cause, the operator and the
            innermost module that fails alone), or the file's outputs differ from torch's.

    Example::

        spec = torchrig.export_model(model.eval(), torch.rand(2, 3, 224, 224), "model.onnx")
    """
    path = Path(path)
    if format not in FORMATS:
        raise TorchrigError(f"Unknown export format {format!r}; choose one of {', '.join(FORMATS)}.")
    kind, names, tensors = flatten(inputs)
    flat = Flat(model, kind, names).eval()
    dynamic, shapes = _dims(kind, names, tensors)
    with torch.no_grad():
        expected = flat(*tensors)
    checked = float("nan")
    try:
        if format == "pt2":
            program = torch.export.export(flat, tuple(tensors), dynamic_shapes={"args": tuple(dynamic)})
            torch.export.save(program, str(path))
        else:
            _onnx_export(flat, tensors, names, dynamic, path)
    except TorchrigError:
        raise
    except Exception as exc:  # exporters raise many types, with pages of trace: keep what names the cause
        where = _culprit(model, flat, tensors)
        raise TorchrigError(f"Cannot export {type(model).__name__} to {format}: {_problem(exc, names)}"
                            + (f"; the innermost module that fails alone: {where}" if where else "")) from None
    # the traced batch, then one of another size (and length): a file that only takes the traced
    # shape (an axis the model's code fixed) is refused here, not found out when serving
    for label, batch in (("the traced batch", tensors), ("a batch of another size and length", _variant(names, tensors))):
        with torch.no_grad():
            want = flat(*batch).float()
        try:
            got = run_exported(path, format, names, batch)
        except Exception as exc:
            raise TorchrigError(f"Cannot export {type(model).__name__} to {format} with dynamic axes: the exported model "
                                f"fails on {label} ({_problem(exc, names)}). Export to the other format, or serve "
                                "this model with torch.") from None
        diff = float((got - want).abs().max()) if got.shape == want.shape else float("inf")
        if not diff <= TOLERANCE:
            raise TorchrigError(f"The exported {format} model differs from torch on {label} (max abs difference "
                                f"{diff:.3g} > {TOLERANCE}); it was not kept. Please report this with the model's name.")
        if batch is tensors:
            checked = diff
    return {"inputs": [{"name": n, "dtype": str(t.dtype).replace("torch.", ""), "shape": s}
                       for n, t, s in zip(names, tensors, shapes)],
            "outputs": [{"name": "output", "dtype": "float32", "shape": ["batch", *expected.shape[1:]]}],
            "checked": {"max_abs_diff": checked, "batch": len(tensors[0])}}


def _variant(names: list[str], tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The example batch twice over, and with lengths (or a mask) its time axis 3/4 as long."""
    out = [torch.cat([t, t]) if t.ndim else t for t in tensors]
    if "lengths" in names or "attention_mask" in names:
        full = next(t.shape[-1] for n, t in zip(names, out) if n != "lengths" and t.ndim >= 2)
        keep = max(1, full * 3 // 4)
        out = [t.clamp(max=keep) if n == "lengths" else (t[..., :keep].contiguous() if t.ndim >= 2 else t)
               for n, t in zip(names, out)]
    return out


def _onnx_export(flat: nn.Module, tensors: list[torch.Tensor], names: list[str], dynamic: list[dict[int, Any]],
                 path: Path) -> None:
    import inspect

    if "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        raise TorchrigError(f"ONNX export needs torch >= 2.5 (this is {torch.__version__}); "
                            "upgrade torch, or export with --format pt2.")
    import logging

    _require("onnxscript", "ONNX export")
    quiet = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [log.level for log in quiet]
    for log in quiet:  # the optimizer's notes on each folded constant are not the user's business
        log.setLevel(logging.ERROR)
    try:
        program = torch.onnx.export(flat, tuple(tensors), dynamo=True, input_names=names, output_names=["output"],
                                    dynamic_shapes={"args": tuple(dynamic)}, verbose=False, optimize=True)
        program.save(str(path))
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)


def _require(module: str, what: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise TorchrigError(f"{what} needs the {module} package: pip install 'torchrig[onnx]'.") from None


def run_exported(path: Path, format: str, names: list[str], tensors: list[torch.Tensor]) -> torch.Tensor:
    """Run an exported file on ``tensors``: onnxruntime for ONNX, the loaded ExportedProgram for pt2."""
    if format == "pt2":
        program = torch.export.load(str(path))
        with torch.no_grad():
            return program.module()(*tensors).float()
    session = onnx_session(path)
    feed = {n: t.numpy() for n, t in zip(names, tensors) if n in {i.name for i in session.get_inputs()}}
    return torch.from_numpy(session.run(None, feed)[0]).float()


def onnx_session(path: Path) -> Any:
    ort = _require("onnxruntime", "Running an ONNX model")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no warnings about unused initializers
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export(run_dir: str | Path, *, format: str = "onnx", out: str | Path | None = None, force: bool = False) -> Path:
    """Export a run dir's model (its best weights) to ``out`` (default ``RUN/export/<format>/``):
    ``model.onnx`` or ``model.pt2``, and ``model.json``. Refuses to replace an earlier export
    unless ``force``. Returns the folder.

    Raises:
        TorchrigError: not a run dir; the model cannot be exported (naming the operator or the
            line); the export exists (without ``force``).
    """
    from ._build import WEIGHTS, build
    from ._run import _own_weights, held_out, open_run

    if format not in FORMATS:
        raise TorchrigError(f"Unknown export format {format!r}; choose one of {', '.join(FORMATS)}.")
    run_dir = Path(run_dir)
    recipe, meta = open_run(run_dir)
    folder = Path(out) if out is not None else run_dir / "export" / format
    if folder.exists() and any(folder.iterdir()) and not force:
        raise TorchrigError(f"{str(folder)!r} already holds an export; pass --force to replace it, or --out DIR.")
    parts = build(recipe, run_dir, pretrained=False)
    model = _own_weights(parts, run_dir, torch.device("cpu"))
    loader = parts.loader(held_out(parts))
    inputs, sample = _example(loader), loader.dataset[0][0]
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        spec = export_model(model, inputs, staging / FORMATS[format], format=format)
        document = {
            "format": format, "file": FORMATS[format], "task": recipe["task"], "classes": meta.get("classes"),
            **spec,
            "output": ("logits: softmax over classes" if recipe["task"] == "classification" else "predicted values"),
            "preprocessing": {**protocols.preprocessing(protocols.base_dataset(parts.splits["train"]), sample),
                              **protocols.preprocessing(parts.eval_transform, sample)},
            "model": recipe["model"], "dataset": recipe["data"]["dataset"],
            "weights_sha256": file_sha256(run_dir / WEIGHTS),
            "versions": {"torchrig": __version__, "torch": torch.__version__},
        }
        (staging / SPEC).write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _example(loader: Any, size: int = 4) -> Any:
    """The first batch's inputs, cut to ``size`` samples (and, with lengths, to the longest kept)."""
    inputs = next(iter(loader))[0]
    kind, names, tensors = flatten(inputs)
    n = min(size, len(tensors[0]))
    if n < 2:
        raise TorchrigError("Export traces the model on a batch of at least 2 samples; the held-out split has fewer.")
    cut = [t[:n] for t in tensors]
    if "lengths" in names:  # no column of padding alone: the traced model sees what a caller sends
        longest = int(cut[names.index("lengths")].max())
        cut = [t[..., :longest] if name != "lengths" and t.ndim >= 2 else t for name, t in zip(names, cut)]
    cut = [t.contiguous() for t in cut]  # strides of a slice would become symbols in the export
    if kind == "tensor":
        return cut[0]
    if kind == "dict":
        return dict(zip(names, cut))
    return tuple(cut)


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class OnnxEngine:
    """A run dir's exported ONNX model behind ``engine(inputs) -> output``, as ``predict
    --engine onnxruntime`` uses it; refuses an export older than the run's weights."""

    def __init__(self, run_dir: Path) -> None:
        from ._build import WEIGHTS

        folder = run_dir / "export" / "onnx"
        if not (folder / FORMATS["onnx"]).is_file() or not (folder / SPEC).is_file():
            raise TorchrigError(f"{str(run_dir)!r} has no ONNX export ({folder / FORMATS['onnx']}). "
                                f"Run `torchrig export {run_dir} --format onnx` first.")
        spec = json.loads((folder / SPEC).read_text(encoding="utf-8"))
        if spec.get("weights_sha256") != file_sha256(run_dir / WEIGHTS):
            raise TorchrigError(f"The ONNX export in {str(folder)!r} was made from other weights than the run's "
                                f"own (trained on since?). Export again: torchrig export {run_dir} --format onnx --force")
        self.session = onnx_session(folder / FORMATS["onnx"])
        self.names = {i.name for i in self.session.get_inputs()}

    def __call__(self, inputs: Any) -> torch.Tensor:
        _, names, tensors = flatten(inputs)
        feed = {n: t.cpu().numpy() for n, t in zip(names, tensors) if n in self.names}
        return torch.from_numpy(self.session.run(None, feed)[0]).float()
