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


def not_a_file(path: str | os.PathLike) -> str | None:
    """Why ``path`` is no readable file (a dangling link, a folder, nothing there), or None."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return f"{str(path)!r} is a symbolic link to {os.readlink(path)!r}, which does not exist"
    if path.is_dir():
        return f"{str(path)!r} is a folder, not a file"
    if not path.exists():
        return f"there is no file at {str(path)!r}"
    if not path.is_file():
        return f"{str(path)!r} is not a regular file"
    return None


def not_text(data: bytes) -> str | None:
    """Why ``data`` is not UTF-8 text (NUL bytes: a binary file; bytes UTF-8 cannot decode), or
    None: for a reader that must refuse binary input, e.g. ``torchrig_text``'s.

    Example::

        problem = torchrig.not_text(Path(path).read_bytes())
        if problem is not None:
            raise torchrig.InputError(f"{path!r} is not text: {problem}.")
    """
    nul = data.count(b"\x00")
    if nul:
        return f"it holds {nul} NUL byte(s): a binary file, not text"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"it is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
    return None


def read_text(path: str | os.PathLike, what: str) -> str:
    """A UTF-8 text file's contents, or an InputError naming it and saying what is wrong with it."""
    from ._errors import InputError

    problem = not_a_file(path)
    if problem is not None:
        raise InputError(f"Cannot read {what}: {problem}.")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"Cannot read {what} {str(path)!r}: {exc.strerror or exc}.") from None
    problem = not_text(data)
    if problem is not None:
        raise InputError(f"Cannot read {what} {str(path)!r}: {problem}. It must be UTF-8 text; re-save it as "
                         "UTF-8 (e.g. iconv -f latin1 -t utf-8), or point at the right file.")
    return data.decode("utf-8")


def read_json(path: str | os.PathLike, what: str) -> object:
    """A JSON file's contents, or an InputError naming the file (a run dir's damaged metadata)."""
    import json

    from ._errors import InputError

    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} {str(path)!r} is damaged (line {exc.lineno}: {exc.msg}): the run dir is "
                         "incomplete or was edited. Restore the file, or train the run again.") from None


def check_run(run_dir: str | os.PathLike) -> None:
    """Refuse a damaged run dir before anything reads it: its recipe must be UTF-8 text, its
    metadata JSON, and its weights a whole safetensors file (the header covers the file)."""
    from ._errors import InputError

    run_dir = Path(run_dir)
    read_text(run_dir / RECIPE, "the run's recipe")
    if (run_dir / META).is_file():
        read_json(run_dir / META, "the run's metadata")
    if (run_dir / WEIGHTS).is_file():
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(run_dir / WEIGHTS), framework="numpy"):
                pass
        except (SafetensorError, OSError) as exc:
            raise InputError(f"Cannot read weights file {str(run_dir / WEIGHTS)!r}: {exc}. It is truncated or "
                             "corrupt: restore it, or train the run again.") from None


LOCK = ".lock"


class RunLock:
    """One writer per run dir: an exclusive ``fcntl.flock`` on ``RUN/.lock`` (created atomically
    by ``open(O_CREAT)``), held while a run trains. The kernel releases it when the process ends,
    however it ends, so a killed run never leaves a stale lock behind. Readers (evaluate,
    predict, report, export) take no lock: every file is replaced atomically, so they read the
    last complete one. (Without ``fcntl``, on Windows, there is no lock.)

    Example::

        with RunLock("runs/digits"):
            ...  # train into runs/digits
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir, self.fd = Path(run_dir), None

    def acquire(self) -> RunLock:
        """Take the lock, or raise TorchrigError naming the process that holds it."""
        from ._errors import TorchrigError

        try:
            import fcntl
        except ImportError:  # not POSIX
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 512, 0).decode("utf-8", errors="replace").strip() or "another process"
            os.close(fd)
            raise TorchrigError(f"{self.run_dir} is in use by {holder}. Wait for that run to end (or stop it), "
                                "or train into another --out.") from None
        import socket
        import time

        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} (started {time.strftime('%Y-%m-%d %H:%M:%S')} on "
                      f"{socket.gethostname()})\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
