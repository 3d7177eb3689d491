"""Atomic file writes: write to a temporary name beside the target, then rename over it, so an
interrupted run never leaves a half-written file behind."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    tmp.replace(path)
    return path
