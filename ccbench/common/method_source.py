"""Where a registered method's code comes from, for a submission: its package reference and its source files.

Built on :func:`ccbench.common.provenance.method_provenance` (what ``ccbench run`` stores in a record as
``method.provenance``), so a submission's manifest and its records name the same source hash: a built-in
method is identified by the ccbench commit it runs from; a plug-in (entry point group ``ccbench.methods``)
by its distribution's name and version and the hash over the ``.py`` files of the package that holds it.
The manifest also lists each of those files with its own sha256, so a reviewer sees which file differs.
No module of the method is imported.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from .errors import UserError
from .provenance import git_state, method_provenance


def file_sha256(path: Path) -> str:
    """sha256 hex of the bytes of ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_files(module: str, whole_package: bool) -> dict[str, Path]:
    """``{relative path: file}`` of ``module``'s Python source: its own file, or with ``whole_package`` every
    ``.py`` file of the top-level package that holds it (the files a plug-in's ``source_sha256`` covers);
    paths are relative to the folder on ``sys.path`` that holds the package or module."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise UserError(f"method module {module} has no Python source file to hash; install it from source")
    origin = Path(spec.origin)
    levels = module.count(".") + (origin.name == "__init__.py")
    base = origin.parents[levels]
    if whole_package and levels:
        files = sorted(p for p in (base / module.split(".")[0]).rglob("*.py") if "__pycache__" not in p.parts)
    else:  # named by the module, not the folder: built-ins live in baselines/ but import as ccbench.baselines
        return {module.replace(".", "/") + ("/__init__.py" if origin.name == "__init__.py" else ".py"): origin}
    return {p.relative_to(base).as_posix(): p for p in files}


def method_source(name: str) -> dict:
    """The package reference of the registered method ``name``: ``{"method", "module", "origin" ("builtin"
    | "plugin"), "distribution", "version", "source_sha256"`` (plug-ins; as in a record's
    ``method.provenance``), ``"commit", "dirty"`` (the ccbench checkout; None after a plain install),
    ``"files"`` ({relative path: sha256}: a built-in's own file, a plug-in's package)}``."""
    from . import catalog

    entry = catalog.methods().entry(name)
    module = entry.loader.partition(":")[0] if isinstance(entry.loader, str) else ""
    ref = {"method": name, "module": module, "distribution": None, "version": None, "source_sha256": None,
           **method_provenance(entry.source, module), **git_state()}
    plugin = ref["origin"] == "plugin"
    if plugin and ref["version"] is None:
        raise UserError(f"method {name!r} comes from distribution {ref['distribution']!r}, which is not installed "
                        f"(pip install it, then rerun)")
    ref["files"] = {rel: file_sha256(p) for rel, p in sorted(source_files(module, whole_package=plugin).items())}
    return ref
