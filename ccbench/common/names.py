"""Safe names: what a method, task, budget, backbone or knob may be called.

Names become folder names (``results/<budget>/<task>/<method>/``, the model cache) and table cells, so
they are restricted to letters, digits and ``_ . -`` (no path separators, no ``..``, no markup).
"""
from __future__ import annotations

import hashlib
import re

from .errors import UserError

NAME_RULE = "1-64 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def is_safe_name(name) -> bool:
    """Whether ``name`` is a string that follows :data:`NAME_RULE`.

    >>> is_safe_name("moe-topk"), is_safe_name("keep_ratio"), is_safe_name("../../escaped"), is_safe_name("..")
    (True, True, False, False)
    >>> is_safe_name("<img src=x>"), is_safe_name(""), is_safe_name(3)
    (False, False, False)
    """
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_name(kind: str, name, source: str) -> str:
    """``name`` when it is safe, else a one-line ``UserError`` naming it, where it came from and the rule.

    >>> check_name("method", "avit", "builtin")
    'avit'
    >>> check_name("method", "../x", "plugin evil")
    Traceback (most recent call last):
    ...
    ccbench.common.errors.UserError: method name '../x' from plugin evil is not allowed: use 1-64 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit
    """
    if not is_safe_name(name):
        raise UserError(f"{kind} name {name!r} from {source} is not allowed: use {NAME_RULE}")
    return name


def file_stem(*parts: str) -> str:
    """``parts`` joined by ``-`` as a file name stem when each is a safe name, else ``name-<hash>``
    (a crafted record must not steer where a file is written).

    >>> file_stem("cpu", "imagenette"), file_stem("cpu", "../../x")
    ('cpu-imagenette', 'name-73473529d80b')
    """
    if all(is_safe_name(p) for p in parts):
        return "-".join(parts)
    return "name-" + hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:12]
