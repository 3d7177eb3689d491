"""A tiny results folder with hostile strings, its leaderboard and site, and an HTML table reader, shared by
the site tests with and without a browser. No torch."""
from __future__ import annotations

import json
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from ccbench.cli import main
from ccbench.reporting.records import commit_record, finalize, seal
from record_helpers import run_body, samples

HOSTILE_METHOD = "<img src=x onerror=alert(1)>"
HOSTILE_KNOB = "a|b\n| fake | row | 99.99 |"


@dataclass(frozen=True)
class Check:
    """A validation verdict as ``ccbench.reporting.validation.CheckResult`` has it (built here: the tests do
    not depend on the validator)."""

    name: str
    passed: bool
    figure: str
    detail: str = ""


def write_crafted(root: Path, body: dict) -> dict:
    """A crafted record with a valid id and samples hash placed by hand, as a hostile submission would be
    (``commit_record`` refuses its unsafe method name). Returns the record."""
    arrays = samples()
    record = seal(body, arrays)
    folder = root / body["budget"]["name"] / body["task"]["name"] / "crafted"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{record['id'][:12]}.json").write_text(json.dumps(record))
    np.savez_compressed(folder / f"{record['id'][:12]}.samples.npz", **arrays)
    return record


def build_site(tmp_path: Path, verdicts=None) -> tuple[Path, dict[str, dict]]:
    """Three sst2 records on the cpu tier (dense 80, early-exit 70 at threshold 0.5, the hostile one 99.99
    whose knob holds a ``|`` and a newline), their leaderboard and site under ``tmp_path/lb``, given the
    validation ``verdicts`` (record id -> checks; ``None``: ``ccbench leaderboard`` validates them itself).
    Returns the site folder and the records by method name."""
    results = tmp_path / "results"
    made = {}
    for method, knob, score in (("dense", ("none", None), 80.0), ("early-exit", ("threshold", 0.5), 70.0)):
        path = commit_record(finalize(run_body(method, knob=knob, score=score)), samples(), results)
        made[method] = json.loads(path.read_text())
    made["hostile"] = write_crafted(results, run_body(HOSTILE_METHOD, knob=("k", HOSTILE_KNOB), score=99.99))
    board = tmp_path / "lb" / "README.md"
    if verdicts is None:
        assert main(["leaderboard", "--strict", "--results-dir", str(results), "--out", str(board)]) == 0
    else:
        from ccbench.reporting.leaderboard import write_leaderboard

        write_leaderboard(results, str(board), strict=True, verdicts=verdicts)
    return board.parent / "site", made


class Tables(HTMLParser):
    """Every ``<table>`` of a page as rows of cell texts (``th`` and ``td``), every ``<img>``'s attributes
    and every attribute whose name starts with ``on``."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[dict] = []
        self.handlers: list[tuple[str, str]] = []
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.handlers += [(tag, k) for k, _ in attrs if k.lower().startswith("on")]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables and self.tables[-1]:
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
