"""Citing ccbench numbers: the leaderboard version and BibTeX for ccbench, a method's paper and one record.

**Leaderboard version.** ``ccbench leaderboard`` writes ``leaderboard/version.json``: ``version`` is the
first 12 hex digits of the sha256 of the ranked rows' record ids (12-character prefixes, sorted, one per
line), ``date`` the latest measurement date among those records (``YYYY-MM-DD``), and ``records`` the ids.
The same records always give the same version, and admitting, replacing or removing any ranked record
gives a new one; a citation names it.

Every string taken from a record (or from a plug-in's metadata) is escaped for BibTeX
(:func:`bibtex_escape`) or, for a plug-in's own entry, stripped of control characters.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ccbench.common.names import is_safe_name

VERSION_FILE = "version.json"
VERSION_RULE = ("sha256 of the ranked rows' record ids (12-character prefixes, sorted, one per line), "
                "first 12 hex digits; date = latest measurement date among them")
AUTHORS = "ccbench contributors"
TITLE = "ccbench: A Benchmark and Leaderboard for Conditional Computation in Neural Networks"

_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "%": r"\%",
            "#": r"\#", "_": r"\_", "^": r"\^{}", "~": r"\~{}"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")


def bibtex_escape(text) -> str:
    """``str(text)`` safe as the value of a BibTeX field in braces: TeX specials escaped (so braces stay
    balanced and nothing becomes a command), every line break and control character turned into a space.

    >>> print(bibtex_escape("keep_ratio=0.5 & 100% {x} \\\\end"))
    keep\\_ratio=0.5 \\& 100\\% \\{x\\} \\textbackslash{}end
    >>> bibtex_escape("a}\\n@misc{evil,")
    'a\\\\} @misc\\\\{evil,'
    """
    text = "".join(_SPECIAL.get(c, c) for c in str(text))
    return _CONTROL.sub(" ", text.replace("\r", " ").replace("\n", " ").replace("\t", " "))


def leaderboard_version(record_ids) -> str:
    """The leaderboard version of a set of ranked records (:data:`VERSION_RULE`).

    >>> leaderboard_version(["bbbbbbbbbbbbffff", "aaaaaaaaaaaa"]) == leaderboard_version(["aaaaaaaaaaaa", "bbbbbbbbbbbb"])
    True
    """
    ids = sorted({str(i)[:12] for i in record_ids})
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]


def version_info(record_ids, dates) -> dict:
    """The content of ``leaderboard/version.json`` for the ranked records ``record_ids`` measured on
    ``dates`` (ISO 8601 strings)."""
    ids = sorted({str(i)[:12] for i in record_ids})
    day = max((str(d)[:10] for d in dates), default=None)
    return {"version": leaderboard_version(ids), "date": day, "rule": VERSION_RULE, "records": ids}


def write_version(folder: Path, info: dict) -> Path:
    """Write ``info`` (:func:`version_info`) as ``folder/version.json`` atomically; returns its path."""
    path = Path(folder) / VERSION_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    tmp.replace(path)
    return path


def read_version(folder: Path) -> dict | None:
    """``folder/version.json`` when it exists and has the expected shape, else ``None``."""
    try:
        info = json.loads((Path(folder) / VERSION_FILE).read_text())
    except (OSError, ValueError):
        return None
    ok = (isinstance(info, dict) and isinstance(info.get("version"), str) and isinstance(info.get("records"), list))
    return info if ok else None


def _year(date) -> str:
    return str(date)[:4] if re.fullmatch(r"\d{4}", str(date)[:4]) else "n.d."


def ccbench_bibtex(version: str, year: str) -> str:
    """The BibTeX ``@misc`` entry for ccbench itself (key ``ccbench``) at code ``version``."""
    return (f"@misc{{ccbench,\n  author = {{{{{AUTHORS}}}}},\n  title = {{{{{TITLE}}}}},\n"
            f"  note = {{Version {bibtex_escape(version)}}},\n  year = {{{bibtex_escape(year)}}}\n}}")


def record_key(record: dict) -> str:
    """The BibTeX key of a record: ``ccbench-<first 12 hex digits of its id>``."""
    rid = str(record.get("id", ""))[:12]
    return f"ccbench-{rid}" if re.fullmatch(r"[0-9a-f]{12}", rid) else "ccbench-record"


def on_leaderboard(record: dict, info: dict | None) -> str:
    """How a citation names the leaderboard: its version and date when ``record`` is ranked in it, else
    why it is not (no version file; not ranked in version X)."""
    if info is None:
        return "not on a leaderboard version (none found; run `ccbench leaderboard`)"
    version = bibtex_escape(info["version"])
    if str(record.get("id", ""))[:12] in info["records"]:
        return f"ccbench leaderboard, version {version} ({bibtex_escape(info.get('date'))})"
    return f"not ranked in ccbench leaderboard version {version}"


def record_bibtex(record: dict, info: dict | None) -> str:
    """The ``@misc`` entry for one record: id, method and knob, task, tier, leaderboard version, date."""
    method, task, budget = record.get("method", {}), record.get("task", {}), record.get("budget", {})
    knob = method.get("knob") or {}
    setting = "" if knob.get("value") is None else f" ({knob.get('name')}={knob.get('value')})"
    git = record.get("git") or {}
    note = (f"Record id {record.get('id')}; task {task.get('name')} version {task.get('version')}; budget tier "
            f"{budget.get('name')} version {budget.get('version')}; seed {record.get('seed')}; measured "
            f"{record.get('date')}; ccbench {record.get('ccbench_version')}, commit {str(git.get('commit'))[:12]}")
    title = (f"ccbench record {str(record.get('id'))[:12]}: {method.get('name')}{setting} on {task.get('name')}, "
             f"budget tier {budget.get('name')}")
    return (f"@misc{{{record_key(record)},\n  author = {{{{{AUTHORS}}}}},\n  title = {{{bibtex_escape(title)}}},\n"
            f"  howpublished = {{{on_leaderboard(record, info)}}},\n  year = {{{_year(record.get('date'))}}},\n"
            f"  note = {{{bibtex_escape(note)}}}\n}}")


def method_bibtex(name, registered: dict[str, dict]) -> str:
    """The paper entry (or entries) a method declares in ``METADATA['bibtex']`` (``registered``: method
    name -> metadata), control characters removed; a BibTeX comment when it declares none or is not
    registered here."""
    shown = bibtex_escape(name)
    if not is_safe_name(name) or name not in registered:
        return f"% method {shown} is not registered here (a plug-in not installed?): no paper entry"
    entry = _CONTROL.sub(" ", str(registered[name].get("bibtex") or "")).strip()
    return entry or f"% method {shown} declares no paper (a control or baseline of ccbench's own)"


def cite(record: dict, info: dict | None, registered: dict[str, dict]) -> str:
    """BibTeX for a record: ccbench (at the code version that measured it), the method's paper, and the
    record itself (:func:`record_bibtex`)."""
    year = _year((info or {}).get("date") or record.get("date"))
    version = record.get("ccbench_version") or "unknown"
    return "\n\n".join([ccbench_bibtex(version, year), method_bibtex(record.get("method", {}).get("name"), registered),
                        record_bibtex(record, info)]) + "\n"
