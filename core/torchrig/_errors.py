"""The exceptions torchrig raises on purpose, and the helpers plugins use to word them."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["InputError", "TorchrigError", "check_on_error", "did_you_mean"]


class TorchrigError(Exception):
    """Base class of every error torchrig raises on purpose.

    The message always names the offending value and says what to do next.
    """


class InputError(TorchrigError, ValueError):
    """Bad user data (an unreadable file, a sample of the wrong shape or type): a
    :class:`TorchrigError`, and a ``ValueError`` as scikit-learn's checks expect of estimators.
    Every plugin, and every scikit-learn preprocessor, raises this one for bad data."""


ON_ERROR = ("raise", "skip")


def check_on_error(on_error: str, owner: str) -> bool:
    """Check a dataset's ``on_error`` argument; True means skip bad samples (and count them).

    Example::

        skip = torchrig.check_on_error(on_error, "acme/folder")

    Raises:
        TorchrigError: anything but ``"raise"`` or ``"skip"``.
    """
    if on_error not in ON_ERROR:
        raise TorchrigError(f"{owner}: on_error must be 'raise' or 'skip', got {on_error!r} ('raise' stops at the "
                            "first bad sample and names it; 'skip' leaves bad samples out and counts them).")
    return on_error == "skip"


def did_you_mean(name: str, choices: Iterable[str], *, n: int = 3) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest match of ``name`` (``" Close: y, z."`` after
    it for the next ones), or ``""``.

    Example::

        raise TorchrigError(f"Unknown category {name!r}.{torchrig.did_you_mean(name, known)}")
    """
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)
    if not close:
        return ""
    others = f" Close: {', '.join(close[1:])}." if len(close) > 1 else ""
    return f" Did you mean {close[0]!r}?{others}"
