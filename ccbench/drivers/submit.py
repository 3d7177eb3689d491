"""``ccbench submit``: bundle records, their samples files, each method's package reference and source hash,
and the environment into one folder ready for a pull request (layout: :mod:`ccbench.reporting.submission`).

The bundle is built under a temporary name beside ``out`` and renamed into place at the end, so an
interrupted submit leaves nothing; an existing ``out`` is never overwritten. See ``SUBMITTING.md``.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
from pathlib import Path

from ccbench.common.errors import UserError
from ccbench.common.method_source import file_sha256, method_source
from ccbench.common.provenance import content_hash, git_state
from ccbench.reporting.records import find_record, read_record, record_dir
from ccbench.reporting.submission import FORMAT, RESULTS, SUBMISSIONS, read_bundle


def _resolve(ref: str, results_dir) -> tuple[Path, dict]:
    """The verified record a command-line reference names: a path to a record file (any kind), or a run
    record's id (6+ leading characters) under ``results_dir``."""
    if ref.endswith(".json") and Path(ref).is_file():
        path = Path(ref)
        return path, read_record(path)
    return find_record(ref, results_dir)


def environment() -> dict:
    """The machine and library versions of the process that makes the bundle
    (:func:`ccbench.common.provenance.hardware` on the CPU, plus numpy and pandas versions)."""
    import numpy
    import pandas

    from ccbench.common.provenance import hardware

    return {**hardware("cpu"), "numpy": numpy.__version__, "pandas": pandas.__version__}


def _samples_file(record_path: Path) -> Path:
    return record_path.with_name(record_path.name[:-len(".json")] + ".samples.npz")


def build_manifest(records: list[tuple[Path, dict]], files: dict[str, str]) -> dict:
    """The manifest of a bundle holding ``records`` (``[(bundle-relative record path, record)]``) and
    ``files`` (``{bundle-relative path: sha256}``); its ``name`` is ``submission-`` and the first 12 hex
    digits of the hash of the sorted record ids, so one set of records always makes one name."""
    import ccbench

    ids = sorted(r["id"] for _, r in records)
    methods = sorted({r["method"]["name"] for _, r in records})
    return {"format": FORMAT, "name": f"submission-{content_hash(ids)[:12]}",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "ccbench": {"version": ccbench.__version__, **git_state()},
            "environment": environment(),
            "methods": {m: method_source(m) for m in methods},
            "records": [{"id": r["id"], "kind": r.get("kind", "run"), "method": r["method"]["name"],
                         "task": r["task"]["name"], "budget": r["budget"]["name"], "record": rel.as_posix(),
                         "samples": _samples_file(rel).as_posix()} for rel, r in records],
            "files": dict(sorted(files.items()))}


def submit(refs: list[str], out: str | os.PathLike, results_dir=None) -> Path:
    """Bundle the records ``refs`` (ids or record paths) into the new folder ``out``; returns the path of
    its manifest. Refuses (``UserError``) an existing ``out``, an unknown record, or a record whose method
    is not registered here (a plug-in must be installed so its source can be hashed)."""
    out = Path(out)
    if out.exists():
        raise UserError(f"{out} exists; a submission is never written over: choose a new --out")
    chosen: dict[str, tuple[Path, dict]] = {}
    for ref in refs:
        path, record = _resolve(ref, results_dir)
        chosen.setdefault(record["id"], (path, record))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        placed, files = [], {}
        for path, record in chosen.values():
            rel = record_dir(Path(RESULTS), record) / path.name
            for src, dst in ((path, rel), (_samples_file(path), _samples_file(rel))):
                (tmp / dst).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, tmp / dst)
                files[dst.as_posix()] = file_sha256(tmp / dst)
            placed.append((rel, record))
        manifest = build_manifest(placed, files)
        (tmp / SUBMISSIONS).mkdir(parents=True)
        (tmp / SUBMISSIONS / f"{manifest['name']}.json").write_text(json.dumps(manifest, indent=1) + "\n")
        read_bundle(tmp)  # the bundle reads back whole before it is put in place
        if out.exists():
            raise UserError(f"{out} appeared while the bundle was built; nothing was written over it")
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / SUBMISSIONS / f"{manifest['name']}.json"
