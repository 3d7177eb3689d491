"""Result records: one JSON per run, content-addressed, never overwritten, with a per-sample file.

Layout: ``results/<budget>/<task>/<method>/<id[:12]>.json`` and beside it ``<id[:12]>.samples.npz``
(compressed: example ids, label, prediction and every trace field, row-aligned); shift records are
``shift-<id[:12]>.json``. The record's ``id`` is the sha256 of its canonical JSON without the ``id``
field, and the record holds ``samples_sha256``, a hash of its per-sample arrays (:func:`samples_hash`),
so an edit of either is detectable (:func:`record_problem`). Records written before that field existed
stay readable; their samples cannot be verified.

A bad record file (unparseable, edited, renamed, of an unsupported schema, lacking fields, with missing
or altered samples) is reported on one line naming the file and skipped by :func:`load_records`, or
refused by :func:`require_valid_records` (``--strict``).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import zipfile
from numbers import Real
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from .errors import UserError
from .names import NAME_RULE, is_safe_name
from .provenance import content_hash

if TYPE_CHECKING:  # reading records needs neither torch nor the trace module
    import torch

    from .trace import Trace

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
DEFAULT_RESULTS = "results"
# file-name prefix of each record kind (transfer records were written without one, later ones may have it)
KIND_PREFIXES = {"run": ("",), "shift": ("shift-",), "transfer": ("", "transfer-")}
# dotted field -> type every record needs (its folder, name and table row are built from these)
REQUIRED_FIELDS = {"id": str, "task.name": str, "budget.name": str, "method.name": str, "method.family": str,
                   "method.knob": dict, "seed": int}
RUN_FIELDS = {"date": str, "backbone.sha256": str, "backbone.file": str, "budget.consumed.samples": Real,
              "metrics.useful_gmacs.mean": Real, "metrics.useful_fraction_of_dense": Real,
              "metrics.executed_over_useful.batch1": Real, "metrics.flag_executed_exceeds_useful": bool,
              "metrics.latency.batch1.speedup": Real, "metrics.latency.batch1.efficiency": Real,
              "metrics.latency.batchN.speedup": Real, "metrics.latency.batchN.efficiency": Real,
              "metrics.latency.batchN.batch_size": int}
DERIVED_FIELDS = {"source.record_id": str, "source.task": str, "source.backbone_sha256": str}
FIX = "restore it from git or delete it"


class RecordError(UserError):
    """A record file that cannot be trusted; ``str()`` is one line naming the file and the fix."""


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


def samples_hash(arrays: dict[str, np.ndarray]) -> str:
    """sha256 hex over the arrays in name order: each name, dtype, shape and raw bytes (C order). The
    same for the arrays before saving and after :func:`load_samples` (not a hash of the zip bytes).

    >>> a = {"pred": np.array([1, 0], dtype=np.int16), "ids": np.asarray(["x", "y"])}
    >>> samples_hash(a) == samples_hash(dict(reversed(a.items()))), samples_hash(a)[:12]
    (True, '63e517a4a53b')
    >>> samples_hash({**a, "pred": np.array([1, 1], dtype=np.int16)}) == samples_hash(a)
    False
    """
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def seal(record: dict, arrays: dict[str, np.ndarray]) -> dict:
    """``record`` with ``samples_sha256`` of ``arrays`` in its body and its id recomputed."""
    return finalize({**record, "samples_sha256": samples_hash(arrays)})


def record_dir(root: Path, record: dict) -> Path:
    """``root/<budget>/<task>/<method>``; a name that is not a safe folder name (a crafted record)
    raises :class:`RecordError`, and the folder is checked to stay inside ``root``."""
    parts = [_field(record, f"{key}.name") for key in ("budget", "task", "method")]
    bad = [p for p in parts if not is_safe_name(p)]
    if bad:
        raise RecordError(f"record {str(record.get('id'))[:12]} names the folder {bad[0]!r}, which is not allowed "
                          f"({NAME_RULE})")
    folder = Path(root).joinpath(*parts)
    if not folder.resolve().is_relative_to(Path(root).resolve()):
        raise RecordError(f"record {str(record.get('id'))[:12]} would be written outside {root}")
    return folder


def write_record(record: dict, ids: list[str], labels: torch.Tensor, preds: torch.Tensor, trace: Trace,
                 results_dir: str | os.PathLike | None = None) -> Path:
    """Write the per-sample file, then the record (see :func:`commit_record`). Returns the record path."""
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
    """Commit ``record`` (sealed with the hash of ``arrays``, :func:`seal`, which sets its final id) as
    ``<prefix><id12>.json`` with ``arrays`` as ``<prefix><id12>.samples.npz`` under ``record_dir``.

    Each file is written to a unique temporary name (pid + random) first; the samples are placed
    before the record, and the record is created with ``os.link`` (atomic create-if-absent), the commit
    point. Safe with concurrent writers into one folder: an existing record raises ``FileExistsError``
    and is never overwritten. Returns the record path."""
    record = seal(record, arrays)
    folder = record_dir(results_root(results_dir), record)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{prefix}{record['id'][:12]}"
    path, samples = folder / f"{stem}.json", folder / f"{stem}.samples.npz"
    if path.exists():
        raise FileExistsError(f"record {path} exists; records are never overwritten")
    tag = f"{os.getpid()}.{secrets.token_hex(4)}"
    tmp_samples, tmp = folder / f".{stem}.samples.{tag}.tmp.npz", folder / f".{stem}.json.{tag}.tmp"
    try:
        np.savez_compressed(tmp_samples, **arrays)
        tmp.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
        _place_samples(tmp_samples, samples, record["samples_sha256"])
        os.link(tmp, path)  # FileExistsError when another writer committed this record first
    except FileExistsError:
        raise FileExistsError(f"record {path} exists; records are never overwritten") from None
    finally:
        tmp_samples.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return path


def _place_samples(tmp: Path, samples: Path, sha: str) -> None:
    """Put the samples file ``tmp`` at ``samples`` unless an identical one (hash ``sha``) is there (a
    concurrent writer of the same record); a different leftover without its record is replaced."""
    try:
        os.link(tmp, samples)
        return
    except FileExistsError:
        pass
    try:
        if samples_hash(_read_npz(samples)) == sha:
            return
    except RecordError:
        pass
    os.replace(tmp, samples)


def load_samples(record_path: Path) -> dict[str, np.ndarray]:
    """The per-sample arrays stored beside a record (never unpickled); a missing or corrupt file raises
    a one-line :class:`RecordError` naming it."""
    return _read_npz(_samples_path(record_path))


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path`` (``allow_pickle=False``); :class:`RecordError` when missing
    or corrupt."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise RecordError(f"{path}: the samples file is missing; {FIX}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise RecordError(f"{path}: the samples file is corrupt ({type(err).__name__}); {FIX}") from None


def _samples_path(record_path: Path) -> Path:
    p = Path(record_path)
    return p.with_name(p.name[:-len(".json")] + ".samples.npz")


def _field(record: dict, dotted: str):
    """``record[a][b]...`` for ``dotted = "a.b..."``; ``None`` when any level is missing."""
    value = record
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _type_ok(value, kind: type) -> bool:
    """``isinstance`` where bools are not numbers (JSON ``true`` is no count)."""
    if kind is not bool and isinstance(value, bool):
        return False
    return isinstance(value, kind)


def _missing_fields(record: dict) -> list[str]:
    """Required fields (by the record's kind) that are absent or of the wrong type."""
    kind = record.get("kind", "run")
    need = {**REQUIRED_FIELDS, **(RUN_FIELDS if kind == "run" else DERIVED_FIELDS)}
    return [f for f, t in need.items() if not _type_ok(_field(record, f), t)]


def record_problem(path: Path, record) -> str | None:
    """Why the parsed record file ``path`` cannot be trusted, or ``None`` when it can: not an object,
    id does not match its content, unsupported schema version, missing fields, a file name that is not
    its id, missing or altered samples."""
    if not isinstance(record, dict):
        return "is not a JSON object"
    if not verify_record(record):
        return "id does not match its content (edited by hand?)"
    if record.get("schema_version") not in SUPPORTED_SCHEMA_VERSIONS:
        return (f"schema_version {record.get('schema_version')!r} is not supported "
                f"(this ccbench reads {', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))})")
    kind = record.get("kind", "run")
    if not isinstance(kind, str) or kind not in KIND_PREFIXES:
        return f"kind {kind!r} is unknown (known: {', '.join(KIND_PREFIXES)})"
    missing = _missing_fields(record)
    if missing:
        return f"lacks required field(s) {', '.join(missing)}"
    if Path(path).stem not in {p + record["id"][:12] for p in KIND_PREFIXES[kind]}:
        return f"file name does not match its id {record['id'][:12]} (renamed?)"
    if not _samples_path(path).is_file():
        return "its samples file is missing"
    if "samples_sha256" in record:
        if samples_hash(load_samples(path)) != record["samples_sha256"]:
            return "its samples file does not match the record's samples_sha256 (altered?)"
    elif not zipfile.is_zipfile(_samples_path(path)):  # an older record: no hash, check the file is whole
        return "its samples file is corrupt (not a complete .npz)"
    return None


def read_record(path: Path) -> dict:
    """The verified record at ``path``; any problem raises a one-line :class:`RecordError` naming the
    file and what to do."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise RecordError(f"{path}: cannot be read ({type(err).__name__}); {FIX}") from None
    if not text.strip():
        raise RecordError(f"{path}: is empty; {FIX}")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: is not valid JSON (truncated? line {err.lineno}); {FIX}") from None
    problem = record_problem(path, record)  # load_samples inside raises RecordError itself
    if problem:
        raise RecordError(f"{path}: {problem}; {FIX}")
    return record


def scan_records(results_dir: str | os.PathLike | None = None) -> tuple[list[tuple[Path, dict]], list[str]]:
    """``(good, bad)``: every verified ``(path, record)`` under the results folder, and one line per
    record file that is not (see :func:`read_record`)."""
    good, bad = [], []
    for path in sorted(results_root(results_dir).rglob("*.json")):
        try:
            good.append((path, read_record(path)))
        except RecordError as err:
            bad.append(str(err))
    return good, bad


_reported: set[str] = set()


def start_report() -> None:
    """Forget which bad records were reported, so that the next command reports each once again."""
    _reported.clear()


def report_skipped(lines: list[str]) -> None:
    """Print each bad-record line on stderr as ``ccbench: skipped <line>``, once per process."""
    for line in lines:
        if line not in _reported:
            _reported.add(line)
            print(f"ccbench: skipped {line}", file=sys.stderr, flush=True)


def load_records(results_dir: str | os.PathLike | None = None, kind: str | None = "run") -> list[tuple[Path, dict]]:
    """Every verified ``(path, record)`` of ``kind`` under the results folder (``run``: ``ccbench run``'s;
    ``shift``, ``transfer``; ``None``: all). A bad record file is reported on stderr (one line naming
    it) and skipped."""
    good, bad = scan_records(results_dir)
    report_skipped(bad)
    return [(p, r) for p, r in good if kind is None or r.get("kind", "run") == kind]


def rows_of(records: list[tuple[Path, dict]], row) -> list:
    """``row(path, record)`` of each record, skipping (with one line on stderr) a record whose fields
    cannot be tabulated: a crafted record with a correct id but odd values."""
    out, bad = [], []
    for path, record in records:
        try:
            out.append(row(path, record))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError) as err:
            bad.append(f"{path}: a field cannot be tabulated ({type(err).__name__}: {err}); {FIX}")
    report_skipped(bad)
    return out


def require_valid_records(results_dir: str | os.PathLike | None = None) -> None:
    """Raise :class:`RecordError` with one line per bad record file under the results folder (``--strict``)."""
    _, bad = scan_records(results_dir)
    if bad:
        raise RecordError("\n".join(bad))
