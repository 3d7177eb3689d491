"""Progress messages of long commands (stderr, so that stdout keeps only results)."""
from __future__ import annotations

import sys


def say(msg: str) -> None:
    """Print ``[ccbench] msg`` on stderr."""
    print(f"[ccbench] {msg}", file=sys.stderr, flush=True)
