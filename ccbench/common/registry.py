"""Name -> object registries with lazy entries.

An entry is registered with a loader (a ``"module"`` or ``"module:attr"`` string, or a callable)
and metadata available without loading it, so ``ccbench ls`` never imports torch-heavy code.
Duplicate names are rejected, and an unknown name fails with the closest known names.

>>> r = Registry("method")
>>> r.add("dense", "math:sqrt", {"family": "none"})
>>> r.metadata("dense")["family"]
'none'
>>> r.get("dense")(16.0)
4.0
>>> r.add("dense", "math:floor")
Traceback (most recent call last):
...
ccbench.common.registry.DuplicateNameError: method 'dense' is registered twice (builtin and builtin)
>>> r.get("dens")
Traceback (most recent call last):
...
ccbench.common.errors.UserError: unknown method 'dens'; did you mean 'dense'? (known: dense)
>>> r.add("../../escaped", "math:floor", source="plugin evil")
Traceback (most recent call last):
...
ccbench.common.errors.UserError: method name '../../escaped' from plugin evil is not allowed: use 1-64 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import UserError, unknown_name_error
from .names import check_name


class DuplicateNameError(UserError):
    """Two entries claim the same name (for example a plugin shadowing a built-in method)."""


@dataclass
class Entry:
    """One registered name: its loader, metadata and where it came from."""

    name: str
    loader: str | Callable[[], Any]
    metadata: dict = field(default_factory=dict)
    source: str = "builtin"


def load_target(target: str) -> Any:
    """Import ``"pkg.module"`` (the module) or ``"pkg.module:attr"`` (an attribute of it)."""
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj


class Registry:
    """Lazy registry of one kind of thing (methods, tasks, budgets, backbones)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._loaded: dict[str, Any] = {}

    def add(self, name: str, loader: str | Callable[[], Any], metadata: dict | None = None,
            source: str = "builtin") -> None:
        """Register ``name``; raises :class:`DuplicateNameError` if it exists and ``UserError`` when it
        is not a safe name (:mod:`ccbench.common.names`: names become folders and table cells)."""
        check_name(self.kind, name, source)
        if name in self._entries:
            raise DuplicateNameError(f"{self.kind} {name!r} is registered twice "
                                     f"({self._entries[name].source} and {source})")
        self._entries[name] = Entry(name, loader, dict(metadata or {}), source)

    def entry(self, name: str) -> Entry:
        """The entry for ``name``; unknown names raise ``UserError`` with suggestions."""
        if name not in self._entries:
            raise unknown_name_error(self.kind, name, self._entries)
        return self._entries[name]

    def metadata(self, name: str) -> dict:
        """Metadata of ``name`` (no import)."""
        return self.entry(name).metadata

    def get(self, name: str) -> Any:
        """The loaded object for ``name`` (imported on first use, then cached)."""
        entry = self.entry(name)
        if name not in self._loaded:
            loader = entry.loader
            self._loaded[name] = load_target(loader) if isinstance(loader, str) else loader()
        return self._loaded[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
