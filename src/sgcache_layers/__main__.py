"""``python -m sgcache_layers``: the ``sgcache-layers`` command (see :mod:`sgcache_layers.cli`)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
