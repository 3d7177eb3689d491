"""Result records: one JSON per run, content-addressed, never overwritten, with a per-sample file.

Layout: ``results/<budget>/<task>/<method>/<id[:12]>.json`` and beside it ``<id[:12]>.samples.npz``
(compressed: example ids, label, prediction and every trace field, row-aligned); shift records are
``shift-<id[:12]>.json``. The record's ``id`` is the sha256 of its canonical JSON without the ``id``
field, and the record holds ``samples_sha256``, a hash of its per-sample arrays (:func:`samples_hash`),
so an edit of either is detectable (:func:`record_problem`). Records written before that field existed
stay readable; their samples cannot be verified.

Fields are typed and documented once in :mod:`ccbench.reporting.record_schema` (schema version 2; version-1 files
load through its read adapter and are never rewritten). Reading records needs neither torch nor the run
side: the tensors :func:`write_record` takes are converted with their own ``.numpy()``.

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
from pathlib import Path

import numpy as np

from ccbench.common.errors import UserError
from ccbench.common.names import NAME_RULE, is_safe_name
from ccbench.common.provenance import content_hash

from .record_schema import SCHEMA_VERSION, AnyRecord, SchemaError, parse_record

DEFAULT_RESULTS = "results"
# file-name prefix of each record kind (transfer records were written without one, later ones may have it)
KIND_PREFIXES = {"run": ("",), "shift": ("shift-",), "transfer": ("", "transfer-")}
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
    parts = [field_at(record, f"{key}.name") for key in ("budget", "task", "method")]
    bad = [p for p in parts if not is_safe_name(p)]
    if bad:
        raise RecordError(f"record {str(record.get('id'))[:12]} names the folder {bad[0]!r}, which is not allowed "
                          f"({NAME_RULE})")
    folder = Path(root).joinpath(*parts)
    if not folder.resolve().is_relative_to(Path(root).resolve()):
        raise RecordError(f"record {str(record.get('id'))[:12]} would be written outside {root}")
    return folder


def write_record(record: dict, ids: list[str], labels, preds, trace, results_dir: str | os.PathLike | None = None,
                 extra: dict | None = None) -> Path:
    """Write the per-sample file, then the record (see :func:`commit_record`). Returns the record path.

    ``labels [S]`` and ``preds [S]`` (class indices or regression values) and each ``trace`` field
    (``[S, ...]``) are arrays or tensors (converted through their own ``.numpy()``; no torch import here).
    ``extra``: other per-sample integer arrays ``[S]`` stored under their own names (a cross-fitted
    transfer's ``fold``)."""
    labels, preds = _numpy(labels), _numpy(preds)
    # class indices fit int16; regression targets and outputs (STS-B) stay float32
    kind = np.float32 if labels.dtype.kind == "f" or preds.dtype.kind == "f" else np.int16
    arrays = {"ids": np.asarray(ids), "label": labels.astype(kind), "pred": preds.astype(kind)}
    for k, v in trace.items():
        v = _numpy(v)
        # ints fit int16 (token/block/expert indices); floats (combine weights) are kept at half precision
        arrays[f"trace.{k}"] = v.astype(np.float16) if v.dtype.kind == "f" else v.astype(np.int16)
    for k, v in (extra or {}).items():
        if k in arrays or k.startswith("trace."):
            raise ValueError(f"per-sample array {k!r} would replace a standard one")
        arrays[k] = _numpy(v).astype(np.int16)
    return commit_record(record, arrays, results_dir)


def _numpy(values) -> np.ndarray:
    """``values`` as a numpy array: a tensor (any device) through ``.detach().cpu().numpy()``."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def commit_record(record: dict, arrays: dict[str, np.ndarray], results_dir: str | os.PathLike | None = None,
                  prefix: str = "") -> Path:
    """Commit ``record`` (sealed with the hash of ``arrays``, :func:`seal`, which sets its final id) as
    ``<prefix><id12>.json`` with ``arrays`` as ``<prefix><id12>.samples.npz`` under ``record_dir``.

    Each file is written to a unique temporary name (pid + random) first; the samples are placed
    before the record, and the record is created with ``os.link`` (atomic create-if-absent), the commit
    point. Safe with concurrent writers into one folder: an existing record raises ``FileExistsError``
    and is never overwritten. Returns the record path."""
    record = seal(record, arrays)
    try:  # what is written fits the typed schema (a run-side bug fails here, before any file exists)
        parse_record(record)
    except SchemaError as err:
        raise RecordError(f"record {record['id'][:12]} would not be readable: {err}") from None
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


def field_at(record: dict, dotted: str):
    """``record[a][b]...`` for ``dotted = "a.b..."``; ``None`` when any level is missing.

    >>> field_at({"a": {"b": 2}}, "a.b"), field_at({"a": 1}, "a.b")
    (2, None)
    """
    value = record
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def record_problem(path: Path, record) -> str | None:
    """Why the parsed record file ``path`` cannot be trusted, or ``None`` when it can: not an object,
    id does not match its content, unsupported schema version, missing fields, a file name that is not
    its id, missing or altered samples."""
    if not isinstance(record, dict):
        return "is not a JSON object"
    if not verify_record(record):
        return "id does not match its content (edited by hand?)"
    try:
        typed(record)
    except SchemaError as err:
        return str(err)
    kind = record.get("kind", "run")
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


_typed: dict[str, AnyRecord] = {}


def typed(record: dict) -> AnyRecord:
    """The typed model (:mod:`ccbench.reporting.record_schema`) of a parsed record dict, parsed once per content
    id (ids are content hashes, so one id is one content); :class:`SchemaError` when it does not fit."""
    key = record.get("id")
    if not isinstance(key, str) or key not in _typed:
        model = parse_record(record)
        if not isinstance(key, str):
            return model
        _typed[key] = model
    return _typed[key]


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


def find_record(record_id: str, results_dir: str | os.PathLike | None = None,
                records: list[tuple[Path, dict]] | None = None) -> tuple[Path, dict]:
    """The run record whose id starts with ``record_id`` (at least 6 hex digits), or the record at the
    path ``record_id`` (a ``.json`` file), verified; searched in ``records`` when given (already loaded,
    nothing is read again), else under the results folder. None or several matches: :class:`UserError`.

    The one place a record is looked up by id prefix (``ccbench shift``/``transfer``, the leaderboard)."""
    if record_id.endswith(".json") and Path(record_id).is_file():
        record_id = read_record(Path(record_id))["id"]
    if len(record_id) < 6:
        raise UserError(f"give at least 6 characters of the record id, got {record_id!r}")
    if records is None:
        records = load_records(results_dir)
    hits = [(p, r) for p, r in records if r.get("kind", "run") == "run" and r["id"].startswith(record_id)]
    if not hits:
        raise UserError(f"no run record with id {record_id!r} under {results_root(results_dir)} "
                        f"(record ids are the file names in results/<budget>/<task>/<method>/)")
    if len(hits) > 1:
        raise UserError(f"record id {record_id!r} is ambiguous: {', '.join(r['id'][:12] for _, r in hits)}")
    return hits[0]


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
