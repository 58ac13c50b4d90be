"""The one exception type torchrig raises for bad input, and the "did you mean" helper."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["TorchrigError", "did_you_mean"]


class TorchrigError(Exception):
    """Base class of every error torchrig raises on purpose.

    The message always names the offending value and says what to do next.
    """


def did_you_mean(name: str, choices: Iterable[str], *, n: int = 3) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest matches of ``name``, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
