"""Model, cache and checkpoint files that can be read without executing anything: safetensors.

A safetensors file is an 8-byte little-endian header length ``n``, ``n`` bytes of JSON (tensor
names, dtypes, shapes, byte offsets, and an optional ``__metadata__`` map of str -> str), then the
raw tensor bytes. ccbench keeps its own metadata (config, meta, ids...) as one JSON string under the
``ccbench`` key of ``__metadata__``.

:func:`read_header` and :func:`read_meta` use only the standard library (no torch), so e.g. the
leaderboard can read a checkpoint's stated hash cheaply. Every failure to read is a one-line
:class:`~ccbench.common.errors.UserError` naming the file and ``fix``; nothing here unpickles.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from .errors import UserError

META_KEY = "ccbench"
MAX_HEADER_BYTES = 64 * 1024 * 1024  # a header (tensor index + metadata) larger than 64 MiB is malformed


def _unreadable(path, reason: str, fix: str) -> UserError:
    return UserError(f"{path} is not a readable safetensors file ({reason}); {fix}")


def read_header(path: str | os.PathLike, fix: str) -> dict:
    """The JSON header of the safetensors file ``path`` (tensor index plus ``__metadata__``).

    Raises a one-line ``UserError`` naming ``path`` and ``fix`` when the file is missing, is not
    safetensors (e.g. a pickled ``.pt``), or its header is truncated, oversized or not a JSON object."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _unreadable(path, "shorter than 8 bytes", fix)
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                raise _unreadable(path, f"its header length {n} is over the {MAX_HEADER_BYTES >> 20} MiB cap: "
                                        "a pickled .pt or another format?", fix)
            raw = f.read(n)
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror or type(err).__name__}); {fix}") from None
    if len(raw) < n:
        raise _unreadable(path, f"truncated header ({len(raw)} of {n} bytes)", fix)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _unreadable(path, "header is not JSON", fix) from None
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _unreadable(path, "header is not a JSON object with a str -> str __metadata__", fix)
    return header


def read_meta(path: str | os.PathLike, fix: str) -> dict:
    """ccbench's metadata of ``path``: the JSON object stored under ``__metadata__["ccbench"]``."""
    text = read_header(path, fix).get("__metadata__", {}).get(META_KEY)
    if text is None:
        raise _unreadable(path, f"no {META_KEY!r} metadata: not written by ccbench", fix)
    try:
        meta = json.loads(text)
    except ValueError:
        raise _unreadable(path, f"{META_KEY!r} metadata is not JSON", fix) from None
    if not isinstance(meta, dict):
        raise _unreadable(path, f"{META_KEY!r} metadata is not a JSON object", fix)
    return meta


def load_tensors(path: str | os.PathLike, fix: str) -> tuple[dict, dict]:
    """``(tensors by name on the CPU, ccbench metadata)`` of the safetensors file ``path``; any
    unreadable or malformed file is a one-line ``UserError`` naming ``path`` and ``fix``."""
    from safetensors.torch import load_file

    meta = read_meta(path, fix)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as err:  # safetensors reports bad offsets, dtypes, sizes as several error types
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise _unreadable(path, reason, fix) from None
    return tensors, meta


def save_tensors(tensors: dict, meta: dict, path: str | os.PathLike) -> Path:
    """Write ``tensors`` (name -> tensor) and the JSON-able ``meta`` to ``path`` as safetensors,
    atomically (temporary name, then rename). Aliased entries of a ``state_dict`` (several tensors
    on one storage, e.g. tied weights) are stored as separate copies."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file(_owned(tensors), str(tmp), metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    tmp.replace(path)
    return path


def _owned(tensors: dict) -> dict:
    """``tensors`` on the CPU, each owning its whole storage: a tensor sharing storage with an
    earlier one, or viewing part of a larger one, is copied (safetensors refuses shared storage)."""
    seen, out = set(), {}
    for name, value in tensors.items():
        t = value.detach().to("cpu").contiguous()
        storage = t.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != t.nbytes:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def load_cache(path: str | os.PathLike, want: tuple[str, ...]) -> tuple[dict, dict] | None:
    """``(tensors, metadata)`` of the cache file ``path``, or ``None`` (a miss) when it is absent,
    unreadable, not safetensors (e.g. a planted pickle) or lacks a tensor named in ``want``; an
    unusable file is reported in one message and left to be overwritten by the rebuilt cache."""
    from .messages import say

    path = Path(path)
    if not path.exists():
        return None
    try:
        tensors, meta = load_tensors(path, "rebuilding it")
    except UserError as err:
        say(f"ignoring cache file: {err}")
        return None
    missing = [k for k in want if k not in tensors]
    if missing:
        say(f"ignoring cache file {path}: no tensor {missing[0]!r}; rebuilding it")
        return None
    return tensors, meta
