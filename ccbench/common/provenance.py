"""Where a number came from: code version, git state, machine and library versions."""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from pathlib import Path


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
