"""A submission bundle (``ccbench submit``), read back and checked: the manifest, its file hashes, its records.

A bundle is a folder laid out like the repository, so copying it over a checkout puts every file where
it belongs::

    <bundle>/results/<budget>/<task>/<method>/<id12>.json        the records, as written by ccbench
    <bundle>/results/<budget>/<task>/<method>/<id12>.samples.npz  their per-sample files
    <bundle>/submissions/<name>.json                              the manifest (:data:`FORMAT`)

The manifest lists every other file with its sha256 (``files``), each record (``records``), the
package reference and source hash of each method (``methods``, :mod:`ccbench.common.method_source`)
and the environment the bundle was made in. Reading a bundle never runs code from it.
"""
from __future__ import annotations

import json
from pathlib import Path

from ccbench.common.errors import UserError
from ccbench.common.method_source import file_sha256
from ccbench.common.names import is_safe_name

from .records import RecordError, read_record

FORMAT = "ccbench-submission/1"
RESULTS = "results"
SUBMISSIONS = "submissions"
MANIFEST_KEYS = ("format", "name", "created", "ccbench", "environment", "methods", "records", "files")


def manifest_path(bundle: Path) -> Path:
    """The one manifest ``<bundle>/submissions/<name>.json``; :class:`UserError` when there is none or
    several."""
    found = sorted((Path(bundle) / SUBMISSIONS).glob("*.json"))
    if len(found) != 1:
        raise UserError(f"{bundle} is not a submission bundle: expected one manifest in {SUBMISSIONS}/, "
                        f"found {len(found)} (make one with `ccbench submit`)")
    return found[0]


def bundle_problems(bundle: Path) -> list[str]:
    """Every reason the bundle at ``bundle`` cannot be trusted, one line each (empty: it is whole): a
    manifest that does not parse or lacks keys, a listed file missing or altered, a file under
    ``results/`` that the manifest does not list, a record that does not read back
    (:func:`ccbench.reporting.records.read_record`) or whose id differs from the manifest's."""
    bundle = Path(bundle)
    try:
        path = manifest_path(bundle)
        manifest = json.loads(path.read_text())
    except (UserError, ValueError, OSError) as err:
        return [f"{bundle}: {err}" if not isinstance(err, UserError) else str(err)]
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not set(MANIFEST_KEYS) <= set(manifest):
        return [f"{path}: not a {FORMAT} manifest (keys {', '.join(MANIFEST_KEYS)})"]
    if path.stem != manifest["name"] or not is_safe_name(manifest["name"]):
        return [f"{path}: the file name does not match the manifest's name {manifest['name']!r}"]
    problems = []
    listed = manifest["files"]
    for rel, sha in sorted(listed.items()):
        file = bundle / rel
        if not _inside(bundle, file) or not rel.startswith(RESULTS + "/"):
            problems.append(f"{path}: lists {rel!r}, which is not under {RESULTS}/ of the bundle")
        elif not file.is_file():
            problems.append(f"{file}: listed in the manifest but missing")
        elif file_sha256(file) != sha:
            problems.append(f"{file}: its sha256 differs from the manifest's (altered after `ccbench submit`?)")
    for file in sorted((bundle / RESULTS).rglob("*")):
        if file.is_file() and file.relative_to(bundle).as_posix() not in listed:
            problems.append(f"{file}: not listed in the manifest (added after `ccbench submit`?)")
    for entry in manifest["records"]:
        file = bundle / str(entry.get("record", ""))
        if not _inside(bundle, file) or not file.is_file():
            problems.append(f"{path}: record {str(entry.get('id'))[:12]} has no file in the bundle")
            continue
        try:
            if read_record(file)["id"] != entry.get("id"):
                problems.append(f"{file}: its id differs from the manifest's {str(entry.get('id'))[:12]}")
        except RecordError as err:
            problems.append(str(err))
    return problems


def read_bundle(bundle: Path) -> tuple[dict, list[tuple[Path, dict]]]:
    """``(manifest, [(record path, record), ...])`` of a whole bundle; :class:`UserError` with one line per
    problem (:func:`bundle_problems`) otherwise."""
    problems = bundle_problems(bundle)
    if problems:
        raise UserError("\n".join(problems))
    manifest = json.loads(manifest_path(bundle).read_text())
    return manifest, [(Path(bundle) / e["record"], read_record(Path(bundle) / e["record"])) for e in manifest["records"]]


def _inside(root: Path, path: Path) -> bool:
    """Whether ``path`` resolves inside ``root`` (a crafted manifest must not point elsewhere)."""
    return path.resolve().is_relative_to(root.resolve())
