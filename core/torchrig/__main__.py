"""``python -m torchrig`` is the ``torchrig`` command (torchrun launches it this way)."""

from ._cli import main

raise SystemExit(main())
