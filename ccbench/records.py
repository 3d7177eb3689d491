"""Result records: one JSON per run, content-addressed, never overwritten, with a per-sample file.

Layout: ``results/<budget>/<task>/<method>/<id[:12]>.json`` and beside it ``<id[:12]>.samples.npz``
(compressed: example ids, label, prediction and every trace field, row-aligned). The record's ``id``
is the sha256 of its canonical JSON without the ``id`` field, so any edit is detectable
(:func:`verify_record`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .provenance import content_hash
from .trace import Trace

SCHEMA_VERSION = 1
DEFAULT_RESULTS = "results"


def results_root(results_dir: str | os.PathLike | None) -> Path:
    """``results_dir`` or ``./results``."""
    return Path(results_dir) if results_dir else Path(DEFAULT_RESULTS)


def finalize(body: dict) -> dict:
    """Stamp the schema version and the content id onto a record body.

    >>> r = finalize({"a": 1})
    >>> r["id"] == finalize({"a": 1})["id"], verify_record(r)
    (True, True)
    >>> import json
    >>> verify_record(json.loads(json.dumps(finalize({"hist": {0: 5, 10: 2, 2: 1}}))))   # int keys, as JSON has them
    True
    """
    # the id must hash what the JSON file will hold: int dict keys become strings, tuples lists
    body = json.loads(json.dumps({**body, "schema_version": SCHEMA_VERSION}))
    body.pop("id", None)
    return {"id": content_hash(body), **body}


def verify_record(record: dict) -> bool:
    """True when ``record['id']`` matches its content."""
    body = {k: v for k, v in record.items() if k != "id"}
    return record.get("id") == content_hash(body)


def record_dir(root: Path, record: dict) -> Path:
    """``root/<budget>/<task>/<method>``."""
    return root / record["budget"]["name"] / record["task"]["name"] / record["method"]["name"]


def write_record(record: dict, ids: list[str], labels: torch.Tensor, preds: torch.Tensor, trace: Trace,
                 results_dir: str | os.PathLike | None = None) -> Path:
    """Write the per-sample file, then the record (the record's rename is the commit point). Refuses
    to overwrite an existing record. Returns the record path."""
    # class indices fit int16; regression targets and outputs (STS-B) stay float32
    kind = np.float32 if labels.is_floating_point() or preds.is_floating_point() else np.int16
    arrays = {"ids": np.asarray(ids), "label": labels.numpy().astype(kind), "pred": preds.numpy().astype(kind)}
    for k, v in trace.items():
        v = v.cpu()
        # ints fit int16 (token/block/expert indices); floats (combine weights) are kept at half precision
        arrays[f"trace.{k}"] = v.numpy().astype(np.int16) if not v.is_floating_point() else v.numpy().astype(np.float16)
    return commit_record(record, arrays, results_dir)


def commit_record(record: dict, arrays: dict[str, np.ndarray], results_dir: str | os.PathLike | None = None,
                  prefix: str = "") -> Path:
    """Write ``arrays`` as ``<prefix><id12>.samples.npz`` and the record as ``<prefix><id12>.json`` under
    ``record_dir``, each to a temporary name first; the record's rename is the commit point. Refuses to
    overwrite an existing record. Returns the record path."""
    folder = record_dir(results_root(results_dir), record)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{prefix}{record['id'][:12]}"
    path, samples = folder / f"{stem}.json", folder / f"{stem}.samples.npz"
    if path.exists():
        raise FileExistsError(f"record {path} exists; records are never overwritten")
    tmp_samples = folder / f".{stem}.samples.tmp.npz"
    np.savez_compressed(tmp_samples, **arrays)
    tmp = folder / f".{stem}.json.tmp"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
    tmp_samples.replace(samples)
    tmp.replace(path)
    return path


def load_samples(record_path: Path) -> dict[str, np.ndarray]:
    """The per-sample arrays stored beside a record."""
    with np.load(_samples_path(record_path), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _samples_path(record_path: Path) -> Path:
    p = Path(record_path)
    return p.with_name(p.name[:-len(".json")] + ".samples.npz")


def load_records(results_dir: str | os.PathLike | None = None, kind: str | None = "run") -> list[tuple[Path, dict]]:
    """Every ``(path, record)`` of ``kind`` under the results folder (``run``: ``ccbench run``'s;
    ``shift``, ``transfer``; ``None``: all), verified (a record whose id does not match its content
    raises ``ValueError``: records are never edited by hand)."""
    out = []
    for path in sorted(results_root(results_dir).rglob("*.json")):
        record = json.loads(path.read_text())
        if not verify_record(record):
            raise ValueError(f"{path}: id does not match content (edited by hand?)")
        if kind is None or record.get("kind", "run") == kind:
            out.append((path, record))
    return out


