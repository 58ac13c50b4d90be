"""``torchrig report RUN``: one self-contained HTML page of a run (images inline, no scripts, no
outside resources): the recipe, metrics per split and per class, the plots, the top losses, the
weights' source and the versions."""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path
from typing import Any

from ._errors import TorchrigError
from ._files import METRICS, RECIPE, REPORT, SUMMARY, TOP_LOSSES, atomic_write, check_run, read_text
PLOTS = (("learning_curves.png", "Learning curves"), ("confusion_matrix.png", "Confusion matrix"),
         ("predicted_vs_true.png", "Predicted vs true"), ("residuals.png", "Residuals"),
         ("top_losses.png", "Highest loss"), ("train_batch.png", "First training batch"))

_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#222}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.sub{color:#666}table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}img{max-width:100%;border:1px solid #eee}
pre{background:#f7f7f7;padding:.8rem;overflow:auto;font-size:13px}figure{margin:1rem 0}figcaption{color:#555}
"""


def write_report(run_dir: str | Path) -> Path:
    """Write ``RUN/report.html`` (atomically) from what the run dir holds, and return its path.

    Raises:
        TorchrigError: ``run_dir`` is not a run dir, or its run never finished an epoch (then
            nothing in it is changed).
    """
    run_dir = Path(run_dir)
    if not (run_dir / RECIPE).is_file():
        raise TorchrigError(f"{str(run_dir)!r} is not a torchrig run dir (no {RECIPE}). "
                            "Pass the folder that `torchrig train` printed as 'run dir'.")
    check_run(run_dir)
    epochs = _epochs(run_dir / METRICS)
    if not epochs:
        raise TorchrigError(f"The run in {str(run_dir)!r} never finished an epoch ({METRICS} has no rows), so there "
                            "is nothing to report. Resume it (torchrig train RECIPE --out DIR --resume) or train again.")
    summary = _json(run_dir / SUMMARY)
    recipe_text = read_text(run_dir / RECIPE, "the run's recipe")
    name = run_dir.resolve().name
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>torchrig run: {_e(name)}</title>",
             f"<meta name='viewport' content='width=device-width'><style>{_STYLE}</style></head><body>",
             f"<h1>{_e(name)}</h1>", _subtitle(summary, epochs, finished=bool(summary))]
    parts += _scores(summary)
    parts += _per_class(summary.get("per_class") or {})
    figures = [(f, title) for f, title in PLOTS if (run_dir / "plots" / f).is_file()]
    if figures:
        parts.append("<h2>Plots</h2>")
        for file, title in figures:
            data = base64.b64encode((run_dir / "plots" / file).read_bytes()).decode("ascii")
            parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{_e(title)}'>"
                         f"<figcaption>{_e(title)} (plots/{_e(file)})</figcaption></figure>")
    parts += _top_losses(_json(run_dir / TOP_LOSSES))
    parts += _epoch_table(epochs)
    parts += _provenance(summary)
    parts.append(f"<h2>Recipe (resolved)</h2><pre>{_e(recipe_text)}</pre></body></html>\n")
    path = run_dir / REPORT
    atomic_write(path, "".join(parts).encode("utf-8"))
    return path


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise TorchrigError(f"{str(path)!r} is not valid JSON ({exc}); the run dir is damaged. "
                            "Run `torchrig evaluate RUN` to write it again.") from None


def _epochs(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    try:
        return f"{float(value):.4g}" if value not in ("", None) else "-"
    except (TypeError, ValueError):
        return _e(value)


def _table(header: list[str], rows: list[list[Any]], left: int = 1) -> str:
    head = "".join(f"<th class='{'l' if i < left else ''}'>{_e(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td class='{'l' if i < left else ''}'>{v}</td>" for i, v in enumerate(row))
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _subtitle(summary: dict[str, Any], epochs: list[dict[str, str]], *, finished: bool) -> str:
    bits = [f"{len(epochs)} epoch(s)"]
    if summary.get("best_epoch") is not None:
        bits.append(f"best epoch {summary['best_epoch']}")
    for key in ("device", "precision"):
        if summary.get(key):
            bits.append(f"{key} {summary[key]}")
    if summary.get("wall_time_s") is not None:
        bits.append(f"{summary['wall_time_s']:.0f} s")
    note = "" if finished else " &middot; <b>unfinished</b>: no final scores (summary.json) yet"
    return f"<p class='sub'>{_e(' · '.join(bits))}{note}</p>"


def _scores(summary: dict[str, Any]) -> list[str]:
    splits = [s for s in ("train", "val", "test") if isinstance(summary.get(s), dict)]
    if not splits:
        return []
    columns = list(dict.fromkeys(k for s in splits for k in summary[s]))
    rows = [[_e(s)] + [_number(summary[s].get(c)) for c in columns] for s in splits]
    return ["<h2>Metrics</h2>", _table(["split", *columns], rows)]


def _per_class(per_class: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    out = []
    for split, rows in per_class.items():
        out.append(f"<h2>Per class ({_e(split)})</h2>")
        out.append(_table(["class", "precision", "recall", "f1", "support"],
                          [[_e(c)] + [_number(r[k]) for k in ("precision", "recall", "f1")] + [_e(r["support"])]
                           for c, r in rows.items()]))
    return out


def _top_losses(found: dict[str, Any]) -> list[str]:
    samples = found.get("samples") or []
    if not samples:
        return []
    rows = []
    for s in samples:
        source = s.get("input")
        text = "" if source is None else (source if len(source) <= 160 else source[:159] + "…")
        prob = f" ({s['probability']:.3f})" if "probability" in s else ""
        rows.append([_e(s["index"]), f"<span title='{_e(source or '')}'>{_e(text)}</span>", _e(s["target"]),
                     _e(s["prediction"]) + prob, _number(s["loss"])])
    return [f"<h2>Highest loss ({_e(found.get('split', ''))})</h2>",
            _table(["sample", "input", "true", "predicted", "loss"], rows, left=2)]


def _epoch_table(epochs: list[dict[str, str]]) -> list[str]:
    columns = [c for c in epochs[0] if c != "epoch"]
    rows = [[_e(r.get("epoch", i + 1))] + [_number(r.get(c)) for c in columns] for i, r in enumerate(epochs)]
    return ["<h2>Per epoch (metrics.csv)</h2>", _table(["epoch", *columns], rows)]


def _provenance(summary: dict[str, Any]) -> list[str]:
    out = []
    weights = summary.get("weights")
    if weights:
        rows = [[_e(k), _e(weights.get(k, ""))] for k in ("source", "kind", "file", "sha256", "report")]
        out += ["<h2>Pretrained weights</h2>", _table(["", ""], rows, left=2)]
    init = summary.get("init")
    if init and init.get("message"):
        out += ["<h2>Initialisation</h2>", f"<p>{_e(init['message'])}</p>"]
    if summary.get("skipped"):
        out += ["<h2>Skipped samples</h2>", f"<pre>{_e(json.dumps(summary['skipped'], indent=1))}</pre>"]
    versions = summary.get("versions") or {}
    if versions:
        out += ["<h2>Versions</h2>", _table(["package", "version"], [[_e(k), _e(v)] for k, v in versions.items()], left=2)]
    return out
