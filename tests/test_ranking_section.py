"""The leaderboard's ranking section (ccbench.reporting.ranking_section) from records made in the test:
who ranks first, what is never ranked, the grid columns, the paired marks, and one seed said honestly."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

import ccbench.reporting.leaderboard as lb
from ccbench.common import catalog
from ccbench.reporting.ranking_section import load_rows, ranking_section
from ccbench.reporting.records import commit_record, finalize, load_records
from ccbench.reporting.tables import load_table
from record_helpers import TEXT_ENCODER, bypass_validation_gate

N = 600
LABELS = np.random.default_rng(0).integers(0, 2, N)
FAMILY = {"dense": "dense", "early-exit": "depth", "layer-skip": "depth", "static-depth": "static",
          "avit-masked": "token", "patience": "depth", "avit": "token", "evit": "token", "random-drop": "token",
          "static-res": "static", "moe-topk": "width", "soft-moe": "width"}


def _preds(accuracy: float, seed: int, flips: int = 6) -> np.ndarray:
    """Predictions right on the first ``accuracy`` share of a fixed shuffle, plus ``flips`` seed-specific flips
    (without flips, a more accurate row is right wherever a less accurate one is)."""
    order = np.random.default_rng(1).permutation(N)
    right = np.zeros(N, bool)
    right[order[:int(round(accuracy * N))]] = True
    flip = np.random.default_rng(100 + seed).choice(N, flips, replace=False)
    right[flip] = ~right[flip]
    return np.where(right, LABELS, 1 - LABELS)


def _score(accuracy: float, seed: int = 0) -> float:
    return 100 * float((_preds(accuracy, seed) == LABELS).mean())


CPU_VERSION = catalog.budgets().get("cpu").version

def _commit(root, method: str, value, pct: float, accuracy: float, seed: int = 0, grid: float | tuple | None = None,
            flips: int = 6, trained_for_target: bool = False, date: str | None = None):
    """One record of ``method`` at ``pct`` % of dense; ``grid``: the grid target it serves (``reached`` = ``pct``;
    marked beyond 2 points)."""
    preds = _preds(accuracy, seed, flips)
    score = 100 * float((preds == LABELS).mean())
    body = {"task": {"name": "sst2", "version": catalog.tasks().get("sst2").version, "modality": "text"},
            "method": {"name": method, "family": FAMILY[method],
                       "knob": {"name": "none" if value is None else "k", "value": value, "direction": "none",
                                "chosen_by": "grid" if grid else "user"}},
            "budget": {"name": "cpu", "version": CPU_VERSION, "consumed": {"samples": 16}},
            "seed": seed, "backbone": {"sha256": "ab" * 32, "file": TEXT_ENCODER},
            "metrics": {"main_score": {"name": "accuracy", "value": score, "ci95": [score - 1, score + 1]},
                        "useful_gmacs": {"mean": pct / 100}, "useful_fraction_of_dense": pct / 100,
                        "executed_over_useful": {"batch1": 1.0}, "flag_executed_exceeds_useful": False,
                        "latency": {"batch1": {"speedup": 1.0, "efficiency": 1.0},
                                    "batchN": {"speedup": 1.0, "efficiency": 1.0, "batch_size": 4}}},
            "date": f"2026-01-01T00:00:{seed:02d}+00:00"}
    if grid is not None:   # one target, or several served by this one record
        body["method"]["grid"] = [{"target": t, "reached": pct, "marked": abs(pct - t) > 2, "tolerance": 2.0,
                                   **({"trained_for_target": True} if trained_for_target else {})}
                                  for t in (grid if isinstance(grid, tuple) else (grid,))]
    if date is not None:
        body["date"] = date
    arrays = {"ids": np.array([f"s{i:04d}" for i in range(N)]), "label": LABELS.astype(np.int16),
              "pred": preds.astype(np.int16)}
    commit_record(finalize(body), arrays, root)


def _board(root, seeds=(0,)):
    for s in seeds:
        _commit(root, "dense", None, 100.0, 0.86, s)
        for target, pct, acc in ((25, 25.5, 0.80), (50, 50.0, 0.84), (75, 74.0, 0.86)):
            _commit(root, "early-exit", target / 100, pct, acc, s, grid=target)
        for target, pct, acc in ((25, 26.0, 0.70), (50, 49.0, 0.76), (75, 75.5, 0.81)):
            _commit(root, "static-depth", target, pct, acc, s, grid=target)
        for target, pct, acc in ((25, 31.0, 0.79), (50, 51.0, 0.82), (75, 76.0, 0.845)):
            _commit(root, "layer-skip", target / 100, pct, acc, s, grid=target)  # 25 % out of reach: marked
        _commit(root, "patience", 3, 60.0, 0.85, s)                # one point at 60 %: no curve, no AUC
        _commit(root, "avit-masked", 0.5, 30.0, 0.99, s)            # a reference: never ranked
    records = load_records(root)
    table = load_table(records=records, task="sst2")
    return table, records


def _rank_rows(text: str) -> list[list[str]]:
    block = text.split("### Ranking")[1].split("AUC: the mean")[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()
            if line.startswith("|") and not line.startswith("|--")][1:]


def test_one_seed_ranks_by_auc_with_grid_columns_and_paired_marks(tmp_path):
    table, records = _board(tmp_path)
    text = ranking_section(table, records, "accuracy", n_boot=400)
    assert "**one seed**" in text and "seeds, then eval samples" not in text
    rows = _rank_rows(text)
    # layer-skip's curve starts at 31 % and patience's at 60 %: listed, never ranked
    assert [r[1] for r in rows] == ["early-exit", "static-depth", "layer-skip", "patience"]
    assert [r[0] for r in rows] == ["1", "2", "-", "-"] and rows[1][2] == "2-2"   # static-depth is surely 2nd
    # grid columns: the score at each target; layer-skip's 25 % was out of reach (reached 31 %)
    early = dict(zip(["rank", "method", "ranks", "p", "auc", "25", "50", "75"], rows[0]))
    assert early["25"] == f"{_score(0.80):.2f}" and early["50"] == f"{_score(0.84):.2f}"
    assert rows[2][5].endswith("* (31 %)") and rows[2][4] == "- (from 31 %)"
    # early-exit's AUC by hand: flat 25-25.5, then trapezoids through 50, 74 and dense at 100, over 75 points
    a, b, c, d = _score(0.80), _score(0.84), _score(0.86), _score(0.86)
    auc = (0.5 * a + 24.5 * (a + b) / 2 + 24 * (b + c) / 2 + 26 * (c + d) / 2) / 75
    assert early["auc"].startswith(f"{auc:.2f} [")
    # paired: early-exit beats static-depth at every grid point (10, 8 and 5 points on 600 samples)
    paired = text.split("Paired differences")[1]
    cells = {l.split("|")[4].strip(): [c.strip() for c in l.strip("|").split("|")]
             for l in paired.splitlines() if l.startswith("| early-exit")}          # by % dense
    header = [c.strip() for c in next(l for l in paired.splitlines() if l.startswith("| method")).strip("|").split("|")]
    low, high = dict(zip(header, cells["25.5"])), dict(zip(header, cells["74.0"]))
    assert low["vs dense"].startswith(f"{_score(0.80) - _score(0.86):+.2f} [") and low["vs dense"].endswith("†")
    assert low["vs static-depth"].startswith(f"{_score(0.80) - _score(0.70):+.2f} [") and low["vs static-depth"].endswith("†")
    assert not high["vs dense"].endswith("†")               # 86 % against dense's 86 %: no difference
    assert "vs static-depth" in paired and "McNemar" in paired
    assert "avit-masked: a reference execution" in text and "patience" in text.split("no AUC")[1]
    assert "| avit-masked" not in text


def test_validation_predicate_keeps_a_row_out(tmp_path):
    table, records = _board(tmp_path)
    text = ranking_section(table, records, "accuracy", admitted=lambda row: row.method != "layer-skip", n_boot=200)
    assert [r[1] for r in _rank_rows(text)] == ["early-exit", "static-depth", "patience"]
    assert "layer-skip: did not pass validation" in text


def test_three_seeds_use_the_hierarchical_bootstrap(tmp_path):
    table, records = _board(tmp_path, seeds=(0, 1, 2))
    assert set(table.seeds) == {3}
    text = ranking_section(table, records, "accuracy", n_boot=300)
    assert "Rows have 3 seeds" in text and "**one seed**" not in text
    assert [r[1] for r in _rank_rows(text)][0] == "early-exit"
    assert re.search(r"\| early-exit +\| grid 25 % +\| 3 +\|", text)
    # with seeds the p-value is normal from the bootstrap SE (a replicate-share p could not pass Holm here)
    paired = text.split("Paired differences")[1]
    low = next(line for line in paired.splitlines() if line.startswith("| early-exit") and "| 25.5 " in line)
    assert low.count("†") == 2, low     # vs dense (-6 points) and vs static-depth (+10 points): both significant


def test_seeds_that_calibrate_different_knob_values_pool_at_their_grid_target(tmp_path):
    """Each seed calibrates its own knob value for a grid target: the seeds still make one row, keyed by the
    target, and the table shows every seed's value."""
    for s in (0, 1, 2):
        _commit(tmp_path, "dense", None, 100.0, 0.86, s)
        _commit(tmp_path, "early-exit", (0.25, 0.27, 0.3)[s], 25.0 + s, 0.80, s, grid=25)
    _commit(tmp_path, "early-exit", 0.5, 50.0, 0.84, 0)                   # a user-chosen point stays its own row
    table = load_table(records=load_records(tmp_path), task="sst2").set_index("knob")
    assert table.loc["grid 25 %", "seeds"] == 3 and table.loc["grid 25 %", "knob_values"] == "s0 k=0.25, s1 k=0.27, s2 k=0.3"
    assert abs(table.loc["grid 25 %", "pct_of_dense"] - 26.0) < 1e-9
    assert table.loc["k=0.5", "seeds"] == 1


def test_the_leaderboard_carries_the_section(tmp_path, monkeypatch):
    # these minimal records carry no validation evidence: the gate is tested in test_validation.py
    bypass_validation_gate(monkeypatch)
    monkeypatch.setattr(lb, "published_backbone_hashes", lambda: {})
    monkeypatch.setattr(lb, "previous_backbones", lambda: {})
    _board(tmp_path / "results")
    board = lb.write_leaderboard(tmp_path / "results", out=str(tmp_path / "lb" / "README.md"))
    text = board.read_text()
    assert "### Ranking" in text and "| 1 " in text and "significant" in text


def test_a_task_with_dense_alone_says_there_is_nothing_to_rank(tmp_path):
    _commit(tmp_path, "dense", None, 100.0, 0.86)
    records = load_records(tmp_path)
    text = ranking_section(load_table(records=records, task="sst2"), records, "accuracy", n_boot=100)
    assert "nothing to rank" in text and "| rank" not in text and "Paired" not in text


def test_avit_six_grid_targets_fill_the_three_grid_columns_and_its_whole_curve(tmp_path):
    """A-ViT runs at Fig. 5's six targets (sweeps/cpu-ranking.yaml), the others at 25/50/75 %: the grid columns
    stay 25/50/75, the AUC and the curve use all six points, and the control is compared where both have a point."""
    from conftest import assert_drawn

    from ccbench.reporting.curve_plots import curve_plots, seed_points

    _commit(tmp_path, "dense", None, 100.0, 0.86, flips=0)
    avit = {25: 0.78, 40: 0.80, 50: 0.82, 60: 0.83, 75: 0.84, 90: 0.85}
    for target, acc in avit.items():
        _commit(tmp_path, "avit", target / 100, float(target), acc, grid=target, flips=0, trained_for_target=True)
    for target, acc in ((25, 0.70), (50, 0.76), (75, 0.81)):
        _commit(tmp_path, "static-res", target, float(target), acc, grid=target, flips=0)
    records = load_records(tmp_path)
    table = load_table(records=records, task="sst2")
    text = ranking_section(table, records, "accuracy", n_boot=200)
    header = [c.strip() for c in text.split("### Ranking")[1].split("\n| rank")[1].split("\n")[0].strip("|").split("|")]
    assert header[-3:] == ["@ 25 %", "@ 50 %", "@ 75 %"] and not any("40" in h or "90" in h for h in header)
    row = dict(zip(["rank", "method", "ranks", "p", "auc", "25", "50", "75"], _rank_rows(text)[0]))
    assert row["method"] == "avit" and (row["25"], row["50"], row["75"]) == ("78.00", "82.00", "84.00")
    # the trapezoids through all six points and dense at 100 %, over 75 points of compute
    x, y = [25, 40, 50, 60, 75, 90, 100], [78, 80, 82, 83, 84, 85, 86]
    auc = sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(6)) / 75
    assert row["auc"].startswith(f"{auc:.2f} [")
    paired = text.split("Paired differences")[1]
    head = next(line for line in paired.splitlines() if line.startswith("| method"))
    header = [c.strip() for c in head.strip("|").split("|")]
    vs = {float(cells[header.index("% dense")]): cells[header.index("vs static-res")]
          for cells in ([c.strip() for c in line.strip("|").split("|")] for line in paired.splitlines()
                        if line.startswith("| avit"))}
    assert [k for k, v in sorted(vs.items()) if v != "-"] == [25.0, 50.0, 75.0]
    assert vs[25.0].startswith("+8.00 [") and vs[75.0].startswith("+3.00 [") and vs[40.0] == "-"
    points = seed_points(table, records)
    assert sorted(points[points.method == "avit"].pct) == [25.0, 40.0, 50.0, 60.0, 75.0, 90.0]
    md = curve_plots(table, records, tmp_path, "cpu-sst2", "sst2 (cpu)")
    assert "(cpu-sst2-fig5.png)" in md
    assert_drawn(tmp_path / "cpu-sst2-fig5.png")


def test_a_record_serving_two_targets_stands_in_both_rows_and_pools_with_other_seeds(tmp_path):
    """Seed 0 reached neither 25 nor 40 % and one record serves both; seeds 1 and 2 have a record per target: each
    target's row pools all three seeds, and its grid cell holds only its own target."""
    for s in (0, 1, 2):
        _commit(tmp_path, "dense", None, 100.0, 0.86, s)
    for s in (1, 2):
        _commit(tmp_path, "early-exit", 0.2 + s / 100, 26.0, 0.80, s, grid=25)
        _commit(tmp_path, "early-exit", 0.4 + s / 100, 40.0, 0.83, s, grid=40)
    _commit(tmp_path, "early-exit", 0.3, 33.0, 0.81, 0, grid=25)
    (path,) = [p for p in tmp_path.rglob("*.json") if json.loads(p.read_text())["seed"] == 0
               and json.loads(p.read_text())["method"]["name"] == "early-exit"]
    body = json.loads(path.read_text())
    path.unlink()
    path.with_name(path.name.replace(".json", ".samples.npz")).unlink()
    body["method"]["grid"] = [{"target": 25.0, "reached": 33.0, "marked": True},
                              {"target": 40.0, "reached": 33.0, "marked": True}]
    body.pop("id")
    commit_record(finalize(body), {"ids": np.array([f"s{i:04d}" for i in range(N)]), "label": LABELS.astype(np.int16),
                                   "pred": _preds(0.81, 0, 6).astype(np.int16)}, tmp_path)
    records = load_records(tmp_path)
    table = load_table(records=records, task="sst2").set_index("knob")
    assert table.loc["grid 25 %", "seeds"] == 3 and table.loc["grid 40 %", "seeds"] == 3
    assert table.loc["grid 25 %", "grid_row_targets"] == (25.0,) and "grid 25,40 %" not in table.index
    rows, _, _ = load_rows(table.reset_index(), records)
    assert {r.knob: sorted(r.grid) for r in rows if r.method == "early-exit"} == {"grid 25 %": [25.0],
                                                                                  "grid 40 %": [40.0]}



def test_a_record_standing_in_two_target_rows_is_one_test_in_the_holm_family(tmp_path):
    """One early-exit record serves 25 and 40 %: its two rows against dense are the same test, computed once
    (identical difference) and counted once in the Holm family the section reports."""
    from ccbench.reporting.ranking_section import distinct_tests, rank_task

    _commit(tmp_path, "dense", None, 100.0, 0.86)
    _commit(tmp_path, "early-exit", 0.3, 33.0, 0.81, grid=25)
    (path,) = [p for p in tmp_path.rglob("*.json") if json.loads(p.read_text())["method"]["name"] == "early-exit"]
    body = json.loads(path.read_text())
    body["method"]["grid"].append({"target": 40.0, "reached": 33.0, "marked": True})
    body.pop("id")
    path.unlink()
    path.with_name(path.name.replace(".json", ".samples.npz")).unlink()
    commit_record(finalize(body), {"ids": np.array([f"s{i:04d}" for i in range(N)]), "label": LABELS.astype(np.int16),
                                   "pred": _preds(0.81, 0, 6).astype(np.int16)}, tmp_path)
    _commit(tmp_path, "early-exit", 0.7, 75.0, 0.85, grid=75)
    records = load_records(tmp_path)
    ranking = rank_task(load_table(records=records, task="sst2"), records, "accuracy", n_boot=200)
    vs_dense = {c.row.knob: c.diff for c in ranking.comparisons if c.column == "vs dense"}
    assert sorted(vs_dense) == ["grid 25 %", "grid 40 %", "grid 75 %"]
    assert vs_dense["grid 25 %"] is vs_dense["grid 40 %"]
    assert len(ranking.comparisons) == 3 and distinct_tests(ranking.comparisons) == 2
    section = ranking_section(load_table(records=records, task="sst2"), records, "accuracy", n_boot=200)
    assert "2 comparisons" in section and "3 comparisons" not in section
    # the paired table shows that record once, naming both targets (* = not reached)
    lines = [ln for ln in section.split("Paired differences")[1].splitlines() if ln.startswith("| early-exit")]
    assert [ln.split("|")[2].strip() for ln in lines] == ["grid 25\\*, 40\\* %", "grid 75 %"], lines
    assert "does not reach" in section


def test_avit_grid_records_of_the_default_model_sit_off_the_grid_and_off_the_curve(tmp_path):
    """A-ViT's grid trains a model per target: a record calibrated to 25 % on the default model (made before) is
    shown by its threshold, not in the 25 % row, even when it is the newer record, and it is neither ranked nor
    drawn once A-ViT has grid rows; a method without grid rows keeps all its rows."""
    from ccbench.reporting.tables import curve_rows

    _commit(tmp_path, "dense", None, 100.0, 0.86)
    _commit(tmp_path, "avit", 0.3, 26.0, 0.78, grid=25, trained_for_target=True, date="2026-01-01T00:00:00+00:00")
    _commit(tmp_path, "avit", 0.9, 50.5, 0.83, grid=50, trained_for_target=True)
    _commit(tmp_path, "avit", 0.05, 58.5, 0.82, grid=25, date="2026-01-02T00:00:00+00:00")   # default model, newer
    _commit(tmp_path, "patience", 3, 60.0, 0.85)
    records = load_records(tmp_path)
    table = load_table(records=records, task="sst2")
    avit = table[table.method == "avit"].set_index("knob")
    assert sorted(avit.index) == ["grid 25 %", "grid 50 %", "k=0.05"]
    assert avit.loc["grid 25 %", "pct_of_dense"] == 26.0
    curves = curve_rows(table)
    assert sorted(curves[curves.method == "avit"].knob) == ["grid 25 %", "grid 50 %"]
    assert list(curves[curves.method == "patience"].knob) == ["k=3"] and (curves.method == "dense").any()
    rows, _, _ = load_rows(curves, records)
    assert sorted(r.pct for r in rows if r.method == "avit") == [26.0, 50.5]


def test_methods_that_cannot_reach_25_percent_are_ranked_over_the_narrower_ranges(tmp_path):
    """EViT-like methods whose cheapest point is 33 % get no AUC over 25-100 % but are ranked with every method
    whose curve reaches 50 % over 50-100 %, and MoE-like ones at 73 % over 75-100 %; each narrower table and its
    sentence appear only when it ranks a method the range before it does not."""
    from ccbench.reporting.findings import what_it_says
    from ccbench.reporting.ranking_section import rank_task

    _commit(tmp_path, "dense", None, 100.0, 0.86)
    for target, pct, acc in ((25, 25.5, 0.70), (50, 50.0, 0.80), (75, 74.0, 0.84)):
        _commit(tmp_path, "early-exit", target / 100, pct, acc, grid=target)
    for target, pct, acc in ((25, 33.0, 0.60), (50, 50.5, 0.83), (75, 75.0, 0.85)):
        _commit(tmp_path, "evit", target / 100, pct, acc, grid=target)
    _commit(tmp_path, "soft-moe", 1, 73.5, 0.855)
    _commit(tmp_path, "moe-topk", 1, 93.0, 0.86)
    records = load_records(tmp_path)
    table = load_table(records=records, task="sst2")
    t = rank_task(table, records, "accuracy", n_boot=200)
    assert [k.method for k in t.ranks] == ["early-exit"] and sorted(t.unranked) == ["evit", "moe-topk", "soft-moe"]
    half, top = t.further
    assert (half.low, top.low) == (50.0, 75.0) and t.shown_further == [half, top]
    assert [k.method for k in half.ranks] == ["evit", "early-exit"] and sorted(half.unranked) == ["moe-topk", "soft-moe"]
    # over 50-100 %: evit's trapezoids (83 -> 85 -> 86) beat early-exit's (80 -> 84 -> 86)
    assert half.ranks[0].auc > half.ranks[1].auc
    # over 75-100 %: soft-moe (85.5 at 73.5 %, held flat to 75 %) beats evit (85 at 75 %) and early-exit
    assert [k.method for k in top.ranks] == ["soft-moe", "evit", "early-exit"] and top.unranked == ["moe-topk"]
    text = ranking_section(table, records, "accuracy", n_boot=200)
    assert "Over 50-100 % of dense" in text and "Over 75-100 % of dense" in text
    assert "Not ranked over 75-100 % either (the curve starts above 77 %): moe-topk" in text
    says = what_it_says(t)
    assert any(s.startswith("evit ranks first of 2 methods by AUC over 50-100 % of dense") for s in says)
    assert any(s.startswith("soft-moe ranks first of 3 methods by AUC over 75-100 % of dense") for s in says)
    # with evit gone the half range ranks no one more: no 50-100 table, no sentence; 75-100 still ranks soft-moe
    only = [(p, r) for p, r in records if r["method"]["name"] != "evit"]
    table = load_table(records=only, task="sst2")
    text = ranking_section(table, only, "accuracy", n_boot=200)
    assert "Over 50-100 % of dense" not in text and "Over 75-100 % of dense" in text


def test_a_seed_is_resampled_across_the_whole_curve(tmp_path):
    """The AUC's hierarchical bootstrap draws a method's seeds once per replicate for all of its rows: a seed
    that is better at every grid target (one model, or one recipe, per seed) moves the whole curve, so the
    interval reaches the best seed's own AUC. Drawn per row, the seed effect would average out across the
    three rows and the interval would be too narrow."""
    from ccbench.reporting.ranking import auc_weights
    from ccbench.reporting.ranking_section import rank_task

    offsets = {0: 0.15, 1: -0.15, 2: 0.0}   # seed 0 is 15 points better at every target, seed 1 15 worse
    for s, d in offsets.items():
        _commit(tmp_path, "dense", None, 100.0, 0.86, s, flips=0)
        for target, acc in ((25, 0.60), (50, 0.70), (75, 0.78)):
            _commit(tmp_path, "early-exit", target / 100, float(target), acc + d, s, grid=target, flips=0)
    records = load_records(tmp_path)
    [rank] = rank_task(load_table(records=records, task="sst2"), records, "accuracy", n_boot=2000).ranks
    w = auc_weights([25.0, 50.0, 75.0])
    score = lambda acc, s: 100 * float((_preds(acc, s, flips=0) == LABELS).mean())  # noqa: E731
    per_seed = {s: float(w @ np.array([score(a + d, s) for a in (0.60, 0.70, 0.78)] + [score(0.86, s)]))
                for s, d in offsets.items()}
    assert rank.auc == pytest.approx(np.mean(list(per_seed.values())), abs=0.05)
    assert rank.hi >= per_seed[0] - 1.5 and rank.lo <= per_seed[1] + 1.5   # drawn per row: about 5 points short


def test_each_seed_is_a_curve_at_its_own_compute(tmp_path):
    """Seeds of one method can sit at different compute: seed 0's cheapest record is at 51.5 % (its knob goes no
    lower: the record serves 25 %* and 50 %), seed 1 has records at 25.5, 50 and 75 %. Pooled rows would put the method's curve at the seeds' mean
    compute; the AUC instead follows each seed's own curve, and since seed 0's starts at 51.5 % the method has
    no AUC over 25-100 % (said with where that curve starts) but has one over 50-100 %: the mean of the two
    seeds' own areas."""
    from ccbench.reporting.findings import what_it_says
    from ccbench.reporting.ranking import auc_weights
    from ccbench.reporting.ranking_section import curve_start, rank_task

    for s in (0, 1):
        _commit(tmp_path, "dense", None, 100.0, 0.86, s, flips=0)
        for target, acc in ((25, 0.70), (50, 0.76), (75, 0.80)):
            _commit(tmp_path, "static-depth", target, float(target), acc, s, grid=target, flips=0)
    _commit(tmp_path, "early-exit", 0.5, 51.5, 0.83, 0, grid=(25, 50), flips=0)   # its knob goes no lower
    _commit(tmp_path, "early-exit", 0.9, 75.0, 0.85, 0, grid=75, flips=0)
    for target, pct, acc in ((25, 25.5, 0.74), (50, 50.0, 0.82), (75, 75.0, 0.85)):
        _commit(tmp_path, "early-exit", target / 100, pct, acc, 1, grid=target, flips=0)
    records = load_records(tmp_path)
    t = rank_task(load_table(records=records, task="sst2"), records, "accuracy", n_boot=300)
    early = [r for r in t.rows if r.method == "early-exit"]
    assert curve_start(early) == 51.5 and "early-exit" in t.unranked
    assert "No AUC, not ranked: early-exit (its curve starts at 52 % of dense)." in what_it_says(t)
    [fifty] = [rr for rr in t.further if rr.low == 50]
    [rank] = [k for k in fifty.ranks if k.method == "early-exit"]
    score = lambda acc, s: 100 * float((_preds(acc, s, flips=0) == LABELS).mean())  # noqa: E731
    dense = np.mean([score(0.86, s) for s in (0, 1)])
    seed0 = auc_weights([51.5, 75.0], low=50) @ np.array([score(0.83, 0), score(0.85, 0), dense])
    seed1 = auc_weights([25.5, 50.0, 75.0], low=50) @ np.array([score(0.74, 1), score(0.82, 1), score(0.85, 1), dense])
    assert rank.auc == pytest.approx((seed0 + seed1) / 2, abs=1e-6)


def test_a_grid_row_whose_seeds_landed_apart_says_where_each_did(tmp_path):
    """One seed reached 25 % (25.2), the other only 30 % (marked): the row pools them, its grid cell and the
    caveat give the range and how many seeds missed, not a mean (27.6 %) that neither seed reached."""
    from ccbench.reporting.findings import what_it_says
    from ccbench.reporting.ranking_section import rank_task

    for s, pct in ((0, 30.0), (1, 25.2)):
        _commit(tmp_path, "dense", None, 100.0, 0.86, s)
        _commit(tmp_path, "evit", 0.25, pct, 0.75, s, grid=25)
    records = load_records(tmp_path)
    t = rank_task(load_table(records=records, task="sst2"), records, "accuracy", n_boot=200)
    assert "evit at 25 % (reached 25-30 %, 1 of 2 seeds out of reach)" in " ".join(what_it_says(t))
    text = ranking_section(load_table(records=records, task="sst2"), records, "accuracy", n_boot=200)
    assert "* (25-30 %, 1 of 2 seeds out of reach)" in text


def test_a_seed_not_yet_at_every_grid_point_is_left_out_of_the_auc_and_said(tmp_path):
    """A re-run part-way: seeds 0 and 1 at 25/50/75 %, seed 2 at 50/75 % only. Seed 2's curve would start at
    50 % and unrank the method; it is left out of the AUC (over seeds 0 and 1) until its 25 % row lands, and the
    caveats say so."""
    from ccbench.reporting.findings import what_it_says
    from ccbench.reporting.ranking_section import partial_seeds, rank_task

    for s in (0, 1, 2):
        _commit(tmp_path, "dense", None, 100.0, 0.86, s)
        for target, acc in ((25, 0.70), (50, 0.76), (75, 0.80)):
            _commit(tmp_path, "static-depth", target, float(target), acc, s, grid=target)
        for target, acc in ((25, 0.80), (50, 0.84), (75, 0.86)):
            if (s, target) != (2, 25):
                _commit(tmp_path, "early-exit", target / 100, float(target), acc, s, grid=target)
    records = load_records(tmp_path)
    t = rank_task(load_table(records=records, task="sst2"), records, "accuracy", n_boot=300)
    assert partial_seeds([r for r in t.rows if r.method == "early-exit"]) == [2]
    assert [k.method for k in t.ranks] == ["early-exit", "static-depth"]
    assert "Not yet at every grid point, so left out of the AUC: early-exit seed 2." in what_it_says(t)
