"""The names of a run dir's files, in one place, and the atomic write every file goes through
(nothing heavy imported: `torchrig report` reads and writes a run dir without importing torch)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

RECIPE, META, SUMMARY, FITTED = "recipe.yaml", "meta.json", "summary.json", "fitted.json"
WEIGHTS, STATE, METRICS = "weights.safetensors", "state.pt", "metrics.csv"
TOP_LOSSES, REPORT = "top_losses.json", "report.html"


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"  # os entropy: seeded RNGs untouched
    try:
        # Created inside the try: a Ctrl-C at any point leaves no temp file behind.
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":  # Windows cannot open a directory for fsync
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
