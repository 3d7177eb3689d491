"""``checkpoints/manifest.json``: the published backbones as data, so reporting never opens a checkpoint.

One entry per ``checkpoints/*.safetensors`` file, copied from its header (read without torch,
:func:`ccbench.common.safefile.read_meta`): file name, budget, task, tier version, weights hash, recipe hash
and validation top-1 (%). ``ccbench manifest`` (or :func:`write_manifest`) regenerates it after a
backbone is published; ``ccbench manifest --check`` and the test suite say when it disagrees with the
headers. A file named ``<budget>-<task>.safetensors`` is the tier's published backbone for the task;
other files are variants (e.g. ``*-scratch``).
"""
from __future__ import annotations

import json
from pathlib import Path

from ccbench.common.errors import UserError

MANIFEST = "manifest.json"
FIELDS = ("file", "budget", "task", "budget_version", "backbone_sha256", "recipe_hash", "eval_top1")
REGENERATE = "run `ccbench manifest` to regenerate it (then commit checkpoints/manifest.json)"


def manifest_from_headers(folder: str | Path) -> list[dict]:
    """The manifest entries (:data:`FIELDS`) of every ``*.safetensors`` in ``folder``, in file-name order,
    from their headers (no weights are read). A file whose header states no budget, task or hash is a
    one-line :class:`UserError` naming it."""
    from ccbench.common.safefile import read_meta

    fix = "restore it from git (`git checkout -- checkpoints/`)"
    out = []
    for path in sorted(Path(folder).glob("*.safetensors")):
        meta = read_meta(path, fix).get("meta") or {}
        if not all(isinstance(meta.get(k), str) for k in ("budget", "task", "backbone_sha256")):
            raise UserError(f"{path} states no budget/task/backbone_sha256 in its header; {fix}")
        out.append({"file": path.name, "budget": meta["budget"], "task": meta["task"],
                    "budget_version": meta.get("budget_version"), "backbone_sha256": meta["backbone_sha256"],
                    "recipe_hash": meta.get("recipe_hash"), "eval_top1": meta.get("eval_top1")})
    return out


def write_manifest(folder: str | Path) -> Path:
    """Write ``folder/manifest.json`` from the checkpoint headers (:func:`manifest_from_headers`);
    returns its path."""
    path = Path(folder) / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest_from_headers(folder), indent=1) + "\n")
    tmp.replace(path)
    return path


def read_manifest(folder: str | Path) -> list[dict]:
    """The entries of ``folder/manifest.json`` (``[]`` when the folder has neither a manifest nor a
    checkpoint); a missing or malformed manifest is a one-line :class:`UserError` with the fix."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        if any(Path(folder).glob("*.safetensors")):
            raise UserError(f"{path} is missing; {REGENERATE}")
        return []
    try:
        entries = json.loads(path.read_text())
        assert isinstance(entries, list) and all(isinstance(e, dict) and set(FIELDS) <= set(e) for e in entries)
        assert all(isinstance(e[k], str) for e in entries for k in ("file", "budget", "task", "backbone_sha256"))
    except (ValueError, AssertionError):
        raise UserError(f"{path} is not a list of checkpoints with fields {', '.join(FIELDS)}; "
                        f"{REGENERATE}") from None
    return entries


def manifest_problem(folder: str | Path) -> str | None:
    """One line saying how ``folder/manifest.json`` disagrees with the checkpoint headers (missing,
    stale or extra entries), with the fix; ``None`` when they agree."""
    path = Path(folder) / MANIFEST
    want = {e["file"]: e for e in manifest_from_headers(folder)}
    try:
        have = {e["file"]: e for e in read_manifest(folder)}
    except UserError as err:
        return str(err)
    differ = sorted(f for f in want.keys() | have.keys() if want.get(f) != have.get(f))
    if differ:
        return f"{path} disagrees with the checkpoint headers for {', '.join(differ)}; {REGENERATE}"
    return None


def published_hashes(folder: str | Path) -> dict[tuple[str, str], str]:
    """``{(budget, task): backbone sha256}`` of the tier backbones listed in ``folder/manifest.json``
    (files named ``<budget>-<task>.safetensors``; variants are left out)."""
    return {(e["budget"], e["task"]): e["backbone_sha256"] for e in read_manifest(folder)
            if e["file"] == f"{e['budget']}-{e['task']}.safetensors"}
