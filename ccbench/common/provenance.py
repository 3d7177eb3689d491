"""Where a number came from: code version, git state, machine and library versions."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

# the code a result depends on: a change in any of these changes the code version
RESULTS_AFFECTING = ("core", "data", "measurement", "training", "baselines")


def canonical_json(obj) -> str:
    """Deterministic JSON (sorted keys, no spaces) used for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_hash(obj) -> str:
    """sha256 hex of :func:`canonical_json` of ``obj``.

    >>> content_hash({"b": 1, "a": [1, 2]}) == content_hash({"a": [1, 2], "b": 1})
    True
    """
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def repo_root() -> Path | None:
    """The git checkout ccbench runs from, or ``None`` after a plain install."""
    import ccbench  # the package's folder sits in the checkout's root, wherever this module lives

    here = Path(ccbench.__file__).resolve().parent.parent
    return here if (here / ".git").exists() else None


def git_state() -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout ccbench runs from."""
    root = repo_root()
    if root is None:
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, check=True).stdout
        return {"commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def source_hash(files: list[Path], root: Path) -> str:
    """sha256 hex over ``files`` (their paths relative to ``root``, then their bytes), in path order."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.relative_to(root).as_posix()):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def _python_files(folder: Path) -> list[Path]:
    """Every ``.py`` file under ``folder`` (symlinked folders followed), caches left out."""
    return [f for f in folder.rglob("*.py") if "__pycache__" not in f.parts]


@lru_cache(maxsize=None)
def code_hash() -> str:
    """sha256 hex over the sources of :data:`RESULTS_AFFECTING` (``ccbench/{core,data,measurement,training}``
    and the built-in methods, ``ccbench.baselines``), wherever ccbench is installed; computed once per
    process (a few milliseconds)."""
    import ccbench

    pkg = Path(ccbench.__file__).resolve().parent
    h = hashlib.sha256()
    for part in RESULTS_AFFECTING:
        if part == "baselines":
            spec = importlib.util.find_spec("ccbench.baselines")
            folder = Path(next(iter(spec.submodule_search_locations))).resolve()
        else:
            folder = pkg / part
        h.update(part.encode() + b"\0" + source_hash(_python_files(folder), folder).encode())
    return h.hexdigest()


def code_version() -> str:
    r"""``<release>+<12 hex of code_hash()>``: names the results-affecting code, so two records with one
    code version were computed by the same code whatever the release number says.

    >>> import ccbench, re
    >>> bool(re.fullmatch(re.escape(ccbench.__version__) + r"\+[0-9a-f]{12}", code_version()))
    True
    """
    from ccbench import __version__

    return f"{__version__}+{code_hash()[:12]}"


def method_provenance(source: str, module: str) -> dict:
    """Where a method's code comes from: ``{"origin": "builtin"}`` or, for a plug-in (``source`` as the
    method registry states it, ``"plugin <distribution>"``), ``{"origin": "plugin", "distribution",
    "version", "source_sha256"}``, the hash over the ``.py`` files of the package that holds ``module``
    (:func:`source_hash`)."""
    if not source.startswith("plugin"):
        return {"origin": "builtin"}
    from importlib.metadata import PackageNotFoundError, version

    dist = source.partition(" ")[2] or None
    try:
        dist_version = version(dist) if dist else None
    except PackageNotFoundError:
        dist_version = None
    spec = importlib.util.find_spec(module)
    origin = Path(spec.origin).resolve() if spec and spec.origin else None
    if origin is None:
        sha = None
    else:
        top = importlib.util.find_spec(module.partition(".")[0])
        folder = (Path(next(iter(top.submodule_search_locations))).resolve()
                  if top and top.submodule_search_locations else origin.parent)
        files = _python_files(folder) if origin.is_relative_to(folder) else [origin]
        sha = source_hash(files, folder if origin.is_relative_to(folder) else origin.parent)
    return {"origin": "plugin", "distribution": dist, "version": dist_version, "source_sha256": sha}


def cpu_model() -> str:
    """The CPU's model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str) -> dict:
    """CPU model, torch threads, device name, OS and library versions."""
    import timm
    import torch

    info = {"cpu": cpu_model(), "threads": torch.get_num_threads(), "device": device,
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "timm": timm.__version__}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info
