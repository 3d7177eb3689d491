"""The static leaderboard site and citation (issue 19): pages per task and record, escaping of record strings,
verdicts shown as given, the leaderboard version, `ccbench cite`, CITATION.cff and the methods' BibTeX. Tiny
records made in the test; no torch, no browser (tests/test_site_browser.py opens the pages in Chromium)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from site_helpers import HOSTILE_KNOB, HOSTILE_METHOD, Check, Tables, build_site

import ccbench
import ccbench.reporting.leaderboard as lb
from ccbench.cli import main
from ccbench.common import catalog
from ccbench.reporting.citation import TITLE, bibtex_escape, cite, leaderboard_version, read_version
from record_helpers import bypass_validation_gate

REPO = Path(__file__).resolve().parent.parent


GATE = lb._validated


@pytest.fixture(autouse=True)
def rank_everything(monkeypatch):
    """No image backbone is published, and every record is ranked whatever its verdicts (the gate itself is
    test_validation's; the site shows the verdicts it is given)."""
    monkeypatch.setattr(lb, "published_backbone_hashes", lambda: {})
    monkeypatch.setattr(lb, "previous_backbones", lambda: {})
    bypass_validation_gate(monkeypatch)


def _pages(site: Path) -> dict[str, str]:
    return {p.relative_to(site).as_posix(): p.read_text() for p in site.rglob("*.html")}


def test_site_has_an_index_a_page_per_task_and_per_record_with_every_record_string_escaped(tmp_path):
    site, made = build_site(tmp_path, verdicts={})
    pages = _pages(site)
    ids = sorted(r["id"][:12] for r in made.values())
    assert sorted(pages) == sorted(["index.html", "cpu-sst2.html"] + [f"record/{i}.html" for i in ids])
    assert (site / "sort.js").stat().st_size > 500 and (site / "style.css").is_file()
    for name, text in pages.items():
        parsed = Tables(text)
        assert "<img src=x" not in text and parsed.handlers == [], name
        assert all(img.get("src", "").endswith(".png") for img in parsed.images), name
    board = Tables(pages["cpu-sst2.html"])
    ranked = board.tables[0]
    assert len({len(row) for row in ranked}) == 1 and len(ranked) == 4  # header + 3 rows, same cell count
    methods = [row[0] for row in ranked[1:]]
    assert sorted(methods) == sorted(["dense", "early-exit", HOSTILE_METHOD])  # the markup is text
    hostile = next(row for row in ranked[1:] if row[0] == HOSTILE_METHOD)
    assert hostile[1] == "k=" + HOSTILE_KNOB  # the knob value as it is, `|` and newline inside one cell
    assert hostile[-1] == made["hostile"]["id"][:12]  # the link to its record page
    assert all(row[-2] == "not validated" for row in ranked[1:])
    record = pages[f"record/{made['hostile']['id'][:12]}.html"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in record and "Not validated" in record
    assert 'href="../cpu-sst2.html"' in record
    index = Tables(pages["index.html"]).tables[0]
    assert index[1][:3] == ["sst2", "cpu", "3"]


def test_verdicts_given_to_the_leaderboard_are_shown_per_row_and_per_record(tmp_path):
    # the verdicts are given by record id (as `ccbench validate` would); the site shows them as they are
    probe = tmp_path / "probe"
    _, made = build_site(probe, verdicts={})
    verdicts = {made["dense"]["id"]: [Check("official eval split", True, "872 = 872"),
                                       Check("not degenerate", True, "2 classes predicted")],
                made["early-exit"]["id"]: [Check("not degenerate", False, "1 class predicted", "constant <predictor>")]}
    site, _ = build_site(tmp_path / "run", verdicts=verdicts)
    board = Tables((site / "cpu-sst2.html").read_text()).tables[0]
    verdict = {row[0]: row[-2] for row in board[1:]}
    assert verdict == {"dense": "valid", "early-exit": "failed: not degenerate", HOSTILE_METHOD: "not validated"}
    page = Tables((site / "record" / f"{made['early-exit']['id'][:12]}.html").read_text())
    checks = next(t for t in page.tables if t[0][:2] == ["check", "verdict"])
    assert checks[1] == ["not degenerate", "FAIL", "1 class predicted", "constant <predictor>"]


def test_leaderboard_version_names_the_ranked_records_and_changes_with_them(tmp_path):
    site, made = build_site(tmp_path, verdicts={})
    info = read_version(site.parent)
    ranked = sorted(r["id"][:12] for r in made.values())
    assert info["records"] == ranked and info["version"] == leaderboard_version(ranked)
    assert info["date"] == "2026-01-01"
    assert f"Leaderboard version `{info['version']}`" in (site.parent / "README.md").read_text()
    assert leaderboard_version(ranked[:2]) != info["version"]
    assert leaderboard_version(list(reversed(ranked))) == info["version"]


def _entries(bibtex: str) -> list[str]:
    """The entries of a BibTeX text (each from an ``@`` at a line start), each checked to balance its braces."""
    entries = re.split(r"(?m)^(?=@)", bibtex)
    entries = [e.strip() for e in entries if e.strip().startswith("@")]
    for e in entries:
        body = e.replace(r"\{", "").replace(r"\}", "")
        depth = 0
        for c in body:
            depth += {"{": 1, "}": -1}.get(c, 0)
            assert depth >= 0, e
        assert depth == 0, e
        assert re.match(r"@(misc|inproceedings|article)\{[A-Za-z0-9_.:-]+,", e), e
    return entries


def test_cite_prints_ccbench_the_paper_and_the_record_with_the_leaderboard_version(tmp_path, capsys):
    site, made = build_site(tmp_path, verdicts={})
    version = read_version(site.parent)["version"]
    capsys.readouterr()
    rid = made["early-exit"]["id"]
    assert main(["cite", rid[:8], "--results-dir", str(tmp_path / "results"), "--leaderboard", str(site.parent)]) == 0
    out = capsys.readouterr().out
    entries = _entries(out)
    assert [e.split("{")[0] for e in entries] == ["@misc", "@inproceedings", "@inproceedings", "@misc"]
    assert entries[0].startswith("@misc{ccbench,") and "{{ccbench contributors}}" in entries[0]
    assert "kaya2019sdn" in entries[1] and "teerapittayanon2016branchynet" in entries[2]
    record = entries[3]
    assert record.startswith(f"@misc{{ccbench-{rid[:12]},") and f"Record id {rid}" in record
    assert f"version {version} (2026-01-01)" in record and "task sst2" in record and "budget tier cpu" in record
    assert "threshold=0.5" in record


def test_cite_escapes_record_strings_and_says_when_a_record_is_not_ranked(tmp_path):
    _, made = build_site(tmp_path, verdicts={})
    hostile = {**made["hostile"], "method": {**made["hostile"]["method"], "name": "a}\n@misc{evil, x={"},
               "task": {"name": "50%_&$#^~\\"}}
    text = cite(hostile, {"version": "v1", "date": "2026-01-01", "records": []}, {})
    entries = _entries(text)  # balanced: nothing from the record closes a field or opens an entry
    assert len(entries) == 2 and "@misc{evil" not in text and "not ranked in ccbench leaderboard version v1" in text
    assert r"50\%\_\&\$\#\^{}\~{}\textbackslash{}" in text
    assert text.count("% method a\\} @misc\\{evil, x=\\{ is not registered here") == 1
    assert bibtex_escape("keep_ratio") == r"keep\_ratio"


def test_every_builtin_bibtex_is_well_formed_with_unique_keys():
    reg = catalog.methods()
    keys = {}
    for name in reg.names():
        meta = reg.metadata(name)
        if not meta["bibtex"]:
            assert "no paper" in meta["paper"], name  # the controls
            continue
        for entry in _entries(meta["bibtex"]):
            assert not re.search(r"(?<!\\)&", entry), (name, entry)  # a bare & breaks LaTeX
            key = entry.split("{", 1)[1].split(",", 1)[0]
            assert keys.setdefault(key, entry) == entry, key  # one key, one entry (inherited ones repeat)
    assert {"yin2022avit", "rao2021dynamicvit", "liang2022evit", "bolya2023tome", "shazeer2017moe", "fedus2022switch",
            "zhou2022expertchoice", "puigcerver2024softmoe", "zhang2022moefication", "zhou2020pabee"} <= set(keys)


def test_citation_cff_is_cff_1_2_0_naming_ccbench_contributors():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["message"] and cff["type"] == "software"
    assert cff["authors"] == [{"name": "ccbench contributors"}]
    assert cff["title"] == TITLE and cff["version"] == ccbench.__version__


def test_records_that_fail_validation_are_listed_unranked_with_their_checks_and_get_a_page(tmp_path, monkeypatch):
    monkeypatch.setattr(lb, "_validated", GATE)  # the real gate: these records carry no audit/determinism evidence
    site, made = build_site(tmp_path)
    page = (site / "cpu-sst2.html").read_text()
    assert "No ranked rows." in page and "Not ranked: fail <code>ccbench validate</code>" in page
    assert read_version(site.parent)["records"] == []
    for record in made.values():
        id12 = record["id"][:12]
        assert f'<a href="record/{id12}.html">{id12}</a>' in page
        checks = next(t for t in Tables((site / "record" / f"{id12}.html").read_text()).tables
                      if t[0][:2] == ["check", "verdict"])
        assert "FAIL" in [row[1] for row in checks[1:]] and "eval-split" in [row[0] for row in checks[1:]]
    assert "&lt;img src=x onerror=alert(1)&gt; k=a|b" in page and "<img src=x" not in page


def test_a_board_page_name_from_an_unsafe_task_stays_inside_the_site(tmp_path):
    from site_helpers import write_crafted

    from record_helpers import run_body

    results = tmp_path / "results"
    write_crafted(results, run_body("dense", task="..", budget="cpu"))
    board = tmp_path / "lb" / "README.md"
    assert main(["leaderboard", "--results-dir", str(results), "--out", str(board)]) == 0
    site = board.parent / "site"
    names = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    assert len(names) == 3 and names[1].startswith("name-") and all(".." not in n for n in names)
    assert not list(tmp_path.glob("*.html")) and not list((tmp_path / "lb").glob("*.html"))
