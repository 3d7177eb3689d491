"""User-facing errors: one line, a fix, exit code 2, never a traceback."""
from __future__ import annotations

import difflib
from typing import Iterable


class UserError(Exception):
    """A mistake in the user's input or environment. The CLI prints ``str(err)`` on one line and
    exits with code 2."""

    exit_code = 2


def unknown_name_error(kind: str, name: str, known: Iterable[str]) -> UserError:
    """``UserError`` for an unknown ``kind`` name with the closest known names suggested.

    >>> str(unknown_name_error("method", "avitt", ["avit", "dense"]))
    "unknown method 'avitt'; did you mean 'avit'? (known: avit, dense)"
    """
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return UserError(f"unknown {kind} {name!r}{hint} (known: {', '.join(known) or 'none'})")
