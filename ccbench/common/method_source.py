"""Where a registered method's code comes from: its package reference and a hash of its source files.

A built-in method is identified by the ccbench commit it ran from (its file is hashed too); a plug-in
(entry point group ``ccbench.methods``) by its distribution's name and version and a hash of the
distribution's Python files (listed in its ``RECORD``; without one, the method's own package folder or
module file). ``ccbench submit`` puts this reference into a submission's manifest so a reviewer can
install the same code and re-run it. No module of the method is imported.
"""
from __future__ import annotations

import hashlib
import importlib.util
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from .errors import UserError
from .provenance import content_hash, git_state

PLUGIN_PREFIX = "plugin "  # how catalog marks an entry point's source: "plugin <distribution name>"


def file_sha256(path: Path) -> str:
    """sha256 hex of the bytes of ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _module_files(module: str, whole_package: bool) -> dict[str, Path]:
    """``{relative path: file}`` of ``module``'s Python source: its own file, or with ``whole_package``
    every ``.py`` file of the top-level package that holds it (paths relative to the folder on
    ``sys.path`` that holds that package)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise UserError(f"method module {module} has no Python source file to hash; install it from source")
    origin = Path(spec.origin)
    levels = module.count(".") + (origin.name == "__init__.py")
    base = origin.parents[levels]  # the folder on sys.path holding the top-level package (or the module)
    if whole_package and levels:
        files = sorted(p for p in (base / module.split(".")[0]).rglob("*.py") if "__pycache__" not in p.parts)
    else:
        files = [origin]
    return {p.relative_to(base).as_posix(): p for p in files}


def _distribution_files(dist_name: str) -> dict[str, Path]:
    """``{path as in RECORD: file}`` of the installed distribution's ``.py`` files (empty without a
    RECORD)."""
    dist = distribution(dist_name)
    out = {}
    for f in dist.files or []:
        if f.suffix == ".py" and "__pycache__" not in f.parts:
            path = Path(f.locate())
            if path.is_file():
                out[f.as_posix()] = path
    return out


def method_source(name: str) -> dict:
    """The package reference of the registered method ``name``: ``{"method", "module", "kind"
    ("builtin" | "plugin"), "distribution", "version", "commit", "dirty", "files" ({relative path:
    sha256}), "source_sha256"}`` (``distribution``/``version`` are None for built-ins, ``commit``/``dirty``
    those of the ccbench checkout, None after a plain install). ``source_sha256`` is
    :func:`ccbench.common.provenance.content_hash` of ``files``."""
    from . import catalog

    entry = catalog.methods().entry(name)
    module = entry.loader if isinstance(entry.loader, str) else ""
    module = module.partition(":")[0]
    ref = {"method": name, "module": module, "kind": "builtin", "distribution": None, "version": None,
           **git_state()}
    files: dict[str, Path] = {}
    if entry.source.startswith(PLUGIN_PREFIX):
        dist_name = entry.source[len(PLUGIN_PREFIX):]
        try:
            ref.update(kind="plugin", distribution=dist_name, version=distribution(dist_name).version)
            files = _distribution_files(dist_name)
        except PackageNotFoundError:
            raise UserError(f"method {name!r} comes from distribution {dist_name!r}, which is not installed "
                            f"(pip install it, then rerun)") from None
    if not files:
        files = _module_files(module, whole_package=ref["kind"] == "plugin")
    ref["files"] = {rel: file_sha256(p) for rel, p in sorted(files.items())}
    ref["source_sha256"] = content_hash(ref["files"])
    return ref
