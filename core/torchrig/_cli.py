"""The ``torchrig`` command line. It imports torch only inside the commands that need it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._version import __version__

DESCRIPTION = """\
torchrig: train, evaluate and predict with PyTorch models from YAML recipes.

The Python API is available now (torchrig.Trainer); the recipe commands
(list, info, plugins, train, evaluate, predict) arrive with the plugin system."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchrig", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"torchrig {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``torchrig`` console script."""
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help(sys.stdout)
    return 0
