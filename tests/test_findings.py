"""What the leaderboard says (ccbench.reporting.findings): sentences written from a ranking, checked on
comparisons built in the test and on records with planted margins, and the one line when nothing is ranked."""
from __future__ import annotations

import numpy as np
import pytest
from test_ranking_section import _commit

import ccbench.reporting.leaderboard as lb
from ccbench.reporting.findings import (
    NOTHING_RANKED,
    caveats,
    control_sentences,
    findings_markdown,
    leader_sentences,
    what_it_says,
)
from ccbench.reporting.paired import Difference
from ccbench.reporting.ranking_section import Comparison, Rank, Row, TaskRanking, rank_task
from ccbench.reporting.records import load_records
from ccbench.reporting.tables import load_table
from record_helpers import bypass_validation_gate


def _row(method: str, family: str, pct: float, targets=(), marked=(), seeds: int = 1) -> Row:
    grid = {float(t): {"reached": pct, "marked": t in marked} for t in targets}
    return Row(method, family, f"k={pct:g}", pct, 80.0, np.zeros((seeds, 1), int), grid)


def _cmp(row: Row, ref: Row, value: float, significant: bool) -> Comparison:
    targets = tuple(sorted(row.grid)) if ref.method == "dense" else tuple(sorted(set(row.grid) & set(ref.grid)))
    return Comparison(row, ref, f"vs {ref.method}", targets,
                      Difference(value, value - 1.5, value + 1.5, 0.01 if significant else 0.4, "mcnemar"), significant)


def test_control_sentences_give_sign_size_and_significance_per_budget_in_a_fixed_order():
    dense = _row("dense", "dense", 100.0)
    sr = {t: _row("static-res", "static", t, [t], marked=[75] if t == 75 else []) for t in (25, 50, 75)}
    ev = {t: _row("evit", "token", t, [t]) for t in (25, 50, 75)}
    moe = _row("moe-topk", "width", 50.0, [50])
    comparisons = [_cmp(ev[75], sr[75], -4.0, True), _cmp(ev[25], sr[25], 0.5, False), _cmp(ev[50], sr[50], 10.0, True),
                   _cmp(ev[50], dense, -2.0, True),                # depth/token against dense: not a family control
                   _cmp(sr[50], dense, -5.0, True),                # a control against dense: not a finding
                   _cmp(moe, dense, -3.25, True), _cmp(_row("patience", "depth", 60.0), dense, 1.0, False)]
    assert control_sentences(comparisons) == [
        ("evit vs static-res: better at 50 % (+10.00 [+8.50, +11.50]); worse at 75 %* (-4.00 [-5.50, -2.50]); "
         "no significant difference at 25 % (+0.50 [-1.00, +2.00])."),
        "moe-topk vs dense: worse at 50 % (-3.25 [-4.75, -1.75]).",
        ("Better or worse means significant: Holm-corrected p below 0.05 across all 7 paired comparisons of the task; "
         "brackets hold the paired 95 % CI in score points, not widened for the number of comparisons (so one can "
         "exclude zero where the Holm-corrected p does not pass); * = a target one of the two rows could not reach.")]
    assert control_sentences([_cmp(sr[50], dense, -5.0, True)]) == []


def test_one_record_standing_for_several_grid_targets_is_one_clause():
    """A method whose cheapest point (73 %) is the nearest to 25 and 50 % and serves 75 %: its one record stands in
    three grid rows, and the sentence names the three targets in one clause, starring those out of reach."""
    dense = _row("dense", "dense", 100.0)
    rows = [Row("soft-moe", "width", f"grid {t} %", 73.0, 79.0, np.zeros((1, 1), int),
                {float(t): {"reached": 73.0, "marked": t != 75}}, ("aaaaaaaaaaaa",)) for t in (25, 50, 75)]
    diff = Difference(-0.4, -1.1, 0.3, 0.3, "mcnemar")
    comparisons = [Comparison(r, dense, "vs dense", tuple(r.grid), diff, False) for r in rows]
    assert control_sentences(comparisons)[0] == (
        "soft-moe vs dense: no significant difference at 25 %*, 50 %* and 75 % (-0.40 [-1.10, +0.30]).")


def test_leader_sentences_name_the_first_its_interval_and_who_else_could_be_first():
    a, b = Rank("a", 1, 1, 1, 0.97, 80.0, 79.0, 81.0), Rank("b", 2, 2, 3, 0.0, 78.0, 77.0, 79.0)
    c = Rank("c", 3, 2, 3, 0.03, 77.0, 75.0, 79.0)
    assert leader_sentences([a, b, c], {}) == [
        ("a ranks first of 3 methods by AUC over 25-100 % of dense: 80.00 [79.00, 81.00], plausible ranks 1-1, "
         "P(first) 0.97."), "No other method is plausibly first."]
    tie = leader_sentences([Rank("x", 1, 1, 2, 0.5, 80.0, 79.0, 81.0), Rank("y", 1, 1, 2, 0.5, 80.0, 79.5, 80.5)], {})
    assert tie[0].startswith("x and y tie for first of 2 methods") and "y 80.00 [79.50, 80.50]" in tie[0]
    assert leader_sentences([a], {"p": 60.0})[0].startswith("a is the only method ranked by AUC")
    assert leader_sentences([], {"p": 60.0}) == [
        "No method has an AUC, so none ranks first (a curve must start within 2 points of 25 % of dense)."]
    assert leader_sentences([], {"p": 60.0}, has_dense=False) == [
        "No method has an AUC, so none ranks first: there is no ranked dense row to end a curve at."]


def test_caveats_count_seeds_missing_and_unreached_grid_points_and_missing_controls():
    rows = [_row("dense", "dense", 100.0, seeds=3), _row("evit", "token", 25.0, [25], seeds=3),
            _row("evit", "token", 50.0, [50], seeds=1), _row("static-res", "static", 31.0, [25], marked=[25], seeds=2),
            _row("patience", "depth", 60.0, seeds=3)]
    t = TaskRanking(rows, rows[0], [], [], [], {}, [])
    assert caveats(t) == [
        "2 of 5 rows have fewer than 3 seeds (with one seed, intervals cover eval samples only): evit, static-res.",
        "Not yet at every grid point, so left out of the AUC: evit seeds 1, 2.",
        "No grid point, so not compared with a control at equal compute: patience.",
        "Missing grid points: evit at 75 %; static-res at 50 % and 75 %.",
        "Out of reach, the nearest point stands in: static-res at 25 % (reached 31 %).",
        "No random-drop rows: token methods are not compared with it."]
    alone = TaskRanking(rows[1:2], None, [], [], [], {}, [])
    assert caveats(alone)[-1] == "No dense row: nothing is compared with dense."


def test_nothing_ranked_is_one_line():
    assert what_it_says(None) == [NOTHING_RANKED]
    assert what_it_says(TaskRanking([], None, [], [], [], {"evit": "did not pass validation"}, [])) == [NOTHING_RANKED]
    assert findings_markdown([NOTHING_RANKED]).strip().count("\n") == 0


def _planted(root):
    """dense 86 %; static-res 70/74/80 % at 25/50/75 %; evit +0.5 at 25 % (3 discordant samples of 600), +10 at 50 %,
    -8 at 75 %; moe-topk 4 points below dense at 50 %; early-exit off the grid. Without flips, the more accurate
    row is right wherever the other is."""
    _commit(root, "dense", None, 100.0, 0.86, flips=0)
    for target, sr, ev in ((25, 0.70, 0.705), (50, 0.74, 0.84), (75, 0.80, 0.72)):
        _commit(root, "static-res", target, float(target), sr, grid=target, flips=0)
        _commit(root, "evit", target / 100, float(target), ev, grid=target, flips=0)
    _commit(root, "moe-topk", 2, 50.0, 0.82, grid=50, flips=0)
    _commit(root, "early-exit", 0.5, 60.0, 0.85, flips=0)


def test_planted_margins_are_said_with_their_sign_and_significance(tmp_path):
    _planted(tmp_path)
    records = load_records(tmp_path)
    says = what_it_says(rank_task(load_table(records=records, task="sst2"), records, "accuracy", n_boot=400))
    # evit's AUC: trapezoids through 70.5, 84, 72 and dense's 86 at 25/50/75/100 %, over 75 points
    auc = (25 * (70.5 + 84) / 2 + 25 * (84 + 72) / 2 + 25 * (72 + 86) / 2) / 75
    assert says[0].startswith(f"evit ranks first of 2 methods by AUC over 25-100 % of dense: {auc:.2f} [")
    assert ("No AUC, not ranked: early-exit (its curve starts at 60 % of dense), moe-topk (its curve starts at 50 % "
            "of dense).") in says
    [evit] = [s for s in says if s.startswith("evit vs static-res")]
    assert evit.startswith("evit vs static-res: better at 50 % (+10.00 [") and "; worse at 75 % (-8.00 [" in evit
    assert "; no significant difference at 25 % (+0.50 [" in evit
    assert any(s.startswith("moe-topk vs dense: worse at 50 % (-4.00 [") for s in says)
    assert not any(s.startswith(("evit vs dense", "static-res vs", "early-exit vs")) for s in says)
    assert "Every row has one seed: its intervals cover eval samples only, not seed-to-seed variation." in says
    assert "No grid point, so not compared with a control at equal compute: early-exit." in says
    assert "Missing grid points: moe-topk at 25 % and 75 %." in says
    assert "No random-drop rows: token methods are not compared with it." in says


@pytest.fixture
def board(tmp_path, monkeypatch):
    bypass_validation_gate(monkeypatch)
    monkeypatch.setattr(lb, "published_backbone_hashes", dict)
    monkeypatch.setattr(lb, "previous_backbones", dict)
    _planted(tmp_path / "results")
    return lb.write_leaderboard(tmp_path / "results", out=str(tmp_path / "lb" / "README.md"))


def test_the_leaderboard_and_the_site_carry_what_it_says(board):
    text = board.read_text()
    section = text.split("### What the leaderboard says")[1]
    assert text.index("### Ranking") < text.index("### What the leaderboard says")
    assert "- evit vs static-res: better at 50 % (+10.00 \\[" in section                 # escaped for markdown
    page = (board.parent / "site" / "cpu-sst2.html").read_text()
    assert "<h2>What the leaderboard says</h2>" in page and "<li>evit vs static-res: better at 50 % (+10.00 [" in page
    assert "seeds whose timing passed the latency check" in page                          # the speedup legend


def test_a_task_with_nothing_ranked_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(lb, "published_backbone_hashes", dict)
    monkeypatch.setattr(lb, "previous_backbones", dict)
    monkeypatch.setattr(lb, "_validated", lambda runs, checks: ([], {}, runs))   # every record predates validation
    _planted(tmp_path / "results")
    text = lb.write_leaderboard(tmp_path / "results", out=str(tmp_path / "lb" / "README.md")).read_text()
    assert text.count("What the leaderboard says") == 1 and f"**What the leaderboard says:** {NOTHING_RANKED}" in text
    assert "### Ranking" not in text
