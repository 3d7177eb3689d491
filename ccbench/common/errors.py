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


MAX_SEED = 2**32 - 1  # numpy's and torch's generators both take seeds in [0, 2**32)


def check_seed(seed: int) -> int:
    """``seed`` if it is an integer in ``[0, 2**32)``, else ``UserError``.

    >>> check_seed(3)
    3
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    ccbench.common.errors.UserError: --seed -1: seeds are integers from 0 to 4294967295
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed {seed}: seeds are integers from 0 to {MAX_SEED}")
    return seed
