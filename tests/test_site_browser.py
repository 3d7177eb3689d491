"""The static leaderboard site opened in a real browser (issue 19): headless Chromium loads the generated pages
from disk (no server), runs their JavaScript and dumps the resulting DOM or a screenshot. A record whose method
name is ``<img src=x onerror=alert(1)>`` renders as text and creates no element; a knob value holding ``|``
and a newline stays in one cell; clicking a header sorts the table; a screenshot shows the page. Skipped
when no Chromium binary is installed (``apt-get install -y chromium``; ``.ci/run`` installs it)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import assert_drawn
from site_helpers import HOSTILE_KNOB, HOSTILE_METHOD, Tables, build_site

import ccbench.reporting.leaderboard as lb
from record_helpers import bypass_validation_gate

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "chrome")
                 if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary found (apt-get install -y chromium)")

# a test-only script added to a copy of a board page: after sort.js has set up the table, alert() is replaced by
# a sentinel (so any script the data managed to run would be seen), then the "score" header is clicked once
HARNESS_JS = """\
"use strict";
window.alert = function () { document.body.setAttribute("data-alerted", "yes"); };
document.addEventListener("DOMContentLoaded", function () {
  var headers = Array.prototype.slice.call(document.querySelectorAll("table.sortable thead th"));
  headers.filter(function (h) { return h.textContent === "score"; })[0].click();
  document.body.setAttribute("data-harness", "ran");
});
"""


@pytest.fixture(autouse=True)
def no_published_checkpoints(monkeypatch):
    monkeypatch.setattr(lb, "published_backbone_hashes", lambda: {})
    monkeypatch.setattr(lb, "previous_backbones", lambda: {})
    bypass_validation_gate(monkeypatch)


def _chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium with ``args``; its stdout."""
    profile = tmp_path / "chromium-profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}", "--virtual-time-budget=2000", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_pages_render_hostile_strings_as_text_keep_cells_intact_sort_and_screenshot(tmp_path):
    site, made = build_site(tmp_path, verdicts={})
    page = (site / "cpu-sst2.html").read_text()
    (site / "harness.js").write_text(HARNESS_JS)
    (site / "harness.html").write_text(page.replace('<script src="sort.js" defer></script>',
                                                    '<script src="sort.js" defer></script>\n'
                                                    '<script src="harness.js" defer></script>'))
    dom = _chromium(tmp_path, "--dump-dom", (site / "harness.html").as_uri())
    assert 'data-harness="ran"' in dom, "the page's scripts did not run (blocked by the page's policy?)"
    parsed = Tables(dom)
    assert "data-alerted" not in dom and parsed.handlers == []
    assert [img["src"] for img in parsed.images] == ["../cpu-sst2.png"]  # the plot; no element from the data
    table = parsed.tables[0]
    assert len(table) == 4 and len({len(row) for row in table}) == 1  # header + 3 rows, every row whole
    header = table[0]
    method, knob, score = header.index("method"), header.index("knob"), header.index("score")
    # one click on "score" sorted ascending: 70 (early-exit), 80 (dense), 99.99 (the hostile row)
    assert [row[method] for row in table[1:]] == ["early-exit", "dense", HOSTILE_METHOD]
    assert [row[score] for row in table[1:]] == ["70.00 (accuracy)", "80.00 (accuracy)", "99.99 (accuracy)"]
    assert table[3][knob] == "k=" + HOSTILE_KNOB
    assert 'aria-sort="ascending"' in dom

    record = _chromium(tmp_path, "--dump-dom", (site / "record" / f"{made['hostile']['id'][:12]}.html").as_uri())
    parsed = Tables(record)
    assert parsed.images == [] and parsed.handlers == [] and "&lt;img src=x onerror=alert(1)&gt;" in record

    shot = tmp_path / "board.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,800", (site / "cpu-sst2.html").as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_drawn(shot, min_colours=8)
