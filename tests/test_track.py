"""Issue 25's paired track estimates (ccbench.reporting.track, track_findings, track_section): transfer gains
and shift drop differences against dense on synthetic records with planted effects, Holm across the
section, the finding paragraphs, and the leaderboard's and site's paired tables with record strings escaped.
Records and samples are made here; no training, no torch."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from site_helpers import Tables

import ccbench.reporting.leaderboard as lb
from ccbench.reporting.records import commit_record, finalize, scan_records
from ccbench.reporting.track import mark_holm, shift_differences, transfer_gains
from ccbench.reporting.track_findings import seeds_sentence, shift_finding, transfer_finding
from ccbench.reporting.track_section import SIGNIFICANT_TRACK, TRAINED_AGAIN_NOTE, _shift_table
from record_helpers import bypass_validation_gate, run_body, samples

SHA = "ab" * 32
HOSTILE = "<img src=x onerror=alert(1)>"


def _labels(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(ids [n], labels [n])`` of a 10-class eval set."""
    return np.asarray([f"s{i:05d}" for i in range(n)]), np.random.default_rng(seed).integers(0, 10, n).astype(np.int16)


def _classifier(labels: np.ndarray, accuracy: float, seed: int) -> np.ndarray:
    """Predictions right on a random ``accuracy`` share of ``labels`` (wrong ones: the next class)."""
    right = np.random.default_rng(seed).random(len(labels)) < accuracy
    return np.where(right, labels, (labels + 1) % 10).astype(np.int16)


def _flip(pred: np.ndarray, labels: np.ndarray, fix: int, spoil: int = 0) -> np.ndarray:
    """``pred`` with its first ``fix`` wrong samples made right and its first ``spoil`` right ones made wrong."""
    out = pred.copy()
    wrong, right = np.flatnonzero(pred != labels)[:fix], np.flatnonzero(pred == labels)[:spoil]
    out[wrong] = labels[wrong]
    out[right] = (labels[right] + 1) % 10
    return out


def _method(name: str, knob=("none", None), grid: float | None = None) -> dict:
    """A record's ``method``; ``grid``: the compute-grid target (% of dense) its knob was calibrated to."""
    return {"name": name, "family": "dense" if name == "dense" else "width",
            "knob": {"name": knob[0], "value": knob[1], "direction": "none", "chosen_by": "user"},
            **({"grid": [{"target": grid, "reached": grid, "marked": False}]} if grid is not None else {})}


def _transfer(root: Path, method: str, protocol: str, seed: int, ids, labels, pred, pct: float = 0.5,
              knob=("none", None), source_id: str | None = None, date: str = "2026-01-01",
              grid: float | None = None, task: dict | None = None, dirty: bool | None = None) -> dict:
    """Commit a transfer record with its samples (stored in a seed-shuffled order: pairing goes by id);
    ``task`` adds fields to the record's ``task`` (its eval set), ``dirty`` sets ``git.dirty``."""
    body = {"kind": "transfer", "task": {"name": "imagenette-b", "version": 1, **(task or {})},
            "budget": {"name": "cpu"}, "method": _method(method, knob, grid), "seed": seed, "protocol": protocol,
            "date": date, **({"git": {"commit": "c0ffee", "dirty": dirty}} if dirty is not None else {}),
            "trainable": {"head": {"params": 10, "trainable": 10}},
            "metrics": {"main_score": {"name": "top1", "value": 100 * float((pred == labels).mean())},
                        "useful_fraction_of_dense": 1.0 if method == "dense" else pct},
            "source": {"record_id": source_id or f"{method}-{seed}", "task": "imagenette-a", "backbone_sha256": SHA}}
    order = np.random.default_rng(seed + 7).permutation(len(ids))
    path = commit_record(finalize(body), {"ids": ids[order], "label": labels[order], "pred": pred[order]}, root)
    return json.loads(path.read_text())


def _planted_transfer(root: Path, n: int = 2000, seeds=(0, 1, 2)) -> None:
    """Dense at ~70 % top-1 per seed under ``full``; ``planted`` = dense with 100 more samples right (+5 points on
    every seed); ``null`` an independent 70 % classifier; ``borderline`` +0.83 points with discordance both ways."""
    ids, labels = _labels(n)
    for s in seeds:
        dense = _classifier(labels, 0.7, 100 + s)
        _transfer(root, "dense", "full", s, ids, labels, dense)
        _transfer(root, "planted", "full", s, ids, labels, _flip(dense, labels, fix=n // 20))
        _transfer(root, "null", "full", s, ids, labels, _classifier(labels, 0.7, 200 + s))
        fix, spoil = [(50, 30), (40, 30), (48, 28)][s]
        _transfer(root, "borderline", "full", s, ids, labels, _flip(dense, labels, fix, spoil))


def _gains(root: Path, methods=None) -> pd.DataFrame:
    records, bad = scan_records(root)
    assert not bad
    records = [(p, r) for p, r in records if r["kind"] == "transfer"]
    if methods is not None:
        records = [(p, r) for p, r in records if r["method"]["name"] in methods]
    df, left_out = transfer_gains(records)
    assert left_out == []
    mark_holm({"transfer": df})
    return df.set_index("method")


def test_a_planted_transfer_gain_is_significant_and_a_null_one_is_not(tmp_path):
    """+5 points on 2,000 paired samples over 3 seeds: exactly +5.00, its interval above zero, significant after
    Holm; an independent classifier of the same accuracy: not significant. Dense is the reference row."""
    _planted_transfer(tmp_path)
    df = _gains(tmp_path, ("dense", "planted", "null"))
    planted, null = df.loc["planted"], df.loc["null"]
    assert planted.gain == pytest.approx(5.0) and planted.seeds == 3 and planted.paired
    assert 4.0 < planted.gain_lo < 5.0 < planted.gain_hi < 6.0 and planted.gain_sig
    assert planted.dense_protocol == "full" and planted.dense_pct == 50.0
    assert null.gain_lo < 0 < null.gain_hi and not null.gain_sig and null.gain_p > 0.05
    assert pd.isna(df.loc["dense"].gain) and df.loc["dense"].score == pytest.approx(70.0, abs=1.5)


def test_holm_across_the_section_changes_a_borderline_mark(tmp_path):
    """A +0.83-point gain (p about 0.026) is significant alone; in a section with two more comparisons Holm
    doubles its p-value past 0.05: no longer significant, though its own 95 % interval still excludes zero."""
    _planted_transfer(tmp_path)
    alone = _gains(tmp_path, ("dense", "borderline")).loc["borderline"]
    assert alone.gain == pytest.approx(50 / 3 / 2000 * 100) and 0.0125 < alone.gain_p < 0.05 and alone.gain_sig
    section = _gains(tmp_path)
    border = section.loc["borderline"]
    assert border.gain_p == pytest.approx(alone.gain_p)             # the same test, another family
    assert border.gain_holm == pytest.approx(2 * alone.gain_p)      # second smallest of 3: x (3 - 1)
    assert not border.gain_sig and border.gain_lo > 0
    finding = transfer_finding(section.reset_index())
    assert finding.startswith("Transfer better than dense: planted under full, +5.00 [")
    assert "The other 2 gains (+0.83 to " in finding and "after the Holm correction" in finding
    assert "1 of them has a 95 % interval that excludes zero" in finding
    assert finding.endswith("Each figure pools 3 seeds: the intervals cover seeds and eval samples.")
    one = transfer_finding(section.drop(index="null").reset_index())   # a single gain left over reads as one
    assert f"The other gain ({border.gain:+.2f} points) is not significant after the Holm correction, though its " \
           f"95 % interval excludes zero (°)." in one


def test_seeds_pair_on_the_ones_both_sides_have_and_the_newest_record_of_a_seed_counts(tmp_path):
    """Method seeds {0, 1, 2} against dense seeds {0, 1}: the gain uses seeds 0 and 1, paired; a re-measured
    record of a seed supersedes the older one; no common seed: every seed of each side, unpaired. One seed each
    and accuracy: McNemar's exact test, and the finding says the figures are single-seed."""
    ids, labels = _labels(400)
    dense = {s: _classifier(labels, 0.7, s) for s in (0, 1)}
    for s, pred in dense.items():
        _transfer(tmp_path, "dense", "full", s, ids, labels, pred)
        _transfer(tmp_path, "paired", "full", s, ids, labels, _flip(pred, labels, 8), date="2026-01-01")
        _transfer(tmp_path, "paired", "full", s, ids, labels, _flip(pred, labels, 20), date="2026-02-01")  # newer
    _transfer(tmp_path, "paired", "full", 2, ids, labels, _classifier(labels, 0.2, 9))
    _transfer(tmp_path, "apart", "full", 5, ids, labels, _flip(dense[0], labels, 20))
    df = _gains(tmp_path)
    assert df.loc["paired"].seeds == 2 and df.loc["paired"].paired and df.loc["paired"].gain == pytest.approx(5.0)
    apart = df.loc["apart"]
    dense_score = np.mean([(p == labels).mean() for p in dense.values()])
    unpaired = 100 * ((_flip(dense[0], labels, 20) == labels).mean() - dense_score)
    assert apart.seeds == 1 and not apart.paired and apart.gain == pytest.approx(unpaired)
    seed0 = [(p, r) for p, r in scan_records(tmp_path)[0]
             if r["seed"] == 0 and (r["method"]["name"] == "dense" or r.get("date") == "2026-02-01")]
    single, _ = transfer_gains(seed0)
    mark_holm({"transfer": single})
    assert single.set_index("method").loc["paired", "gain_test"] == "mcnemar"
    assert "single-seed: the intervals cover the eval samples only" in transfer_finding(single)


def _shift(root: Path, method: str, seed: int, splits: dict, compute: dict | None = None, knob=("none", None),
           source_id: str | None = None, grid: float | None = None, source: dict | None = None) -> dict:
    """Commit a shift record whose samples hold ``splits`` (name -> (ids, labels, pred)); ``compute``: split ->
    useful GMACs per sample (dense: 2 GMACs each), stored when given; the record's own compute change otherwise
    says -2 points of dense per condition. ``source`` adds fields to the record's ``source``."""
    arrays, share = {}, {}
    for name, (ids, labels, pred) in splits.items():
        arrays.update({f"{name}.ids": ids, f"{name}.label": labels, f"{name}.pred": pred})
        if compute is not None:
            arrays[f"{name}.useful_gmacs"] = compute[name].astype(np.float32)
            arrays[f"{name}.dense_gmacs"] = np.full(len(ids), 2.0, np.float32)
            share[name] = float(compute[name].sum() / (2.0 * len(ids)))
        else:
            share[name] = 0.5 if name == "reference" else 0.48

    def score(name):
        _, labels, pred = splits[name]
        return {"name": "top1", "value": 100 * float((pred == labels).mean())}

    conditions = [n for n in splits if n != "reference"]
    body = {"kind": "shift", "task": {"name": "imagenette-c", "version": 1}, "budget": {"name": "cpu"},
            "method": _method(method, knob, grid), "seed": seed, "date": "2026-01-01",
            "source": {"record_id": source_id or f"{method}-{seed}", "task": "imagenette", "backbone_sha256": SHA,
                       **(source or {})},
            "reference": {"main_score": score("reference"), "useful_fraction_of_dense": share["reference"]},
            "conditions": [{"condition": c, "main_score": score(c), "useful_fraction_of_dense": share[c],
                            "fraction_of_dense_change": share[c] - share["reference"],
                            "calibration_transfer": {"same_compute": True}} for c in conditions],
            "summary": {"all": {"score_drop_mean": 0.0, "fraction_of_dense_change": 0.0}}}
    path = commit_record(finalize(body), arrays, root, prefix="shift-")
    return json.loads(path.read_text())


def _worse(pred: np.ndarray, labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``pred`` with ``k`` random right samples made wrong."""
    right = np.flatnonzero(pred == labels)
    hit = np.random.default_rng(seed).choice(right, k, replace=False)
    out = pred.copy()
    out[hit] = (labels[hit] + 1) % 10
    return out


def _planted_shift(root: Path, n: int = 1000) -> None:
    """Three seeds on one image set: dense drops 5 points on noise/1, 10 on noise/2; early-exit drops as dense
    on noise/1 and 4 points more on noise/2, and spends 5 points more of dense compute there (per-sample compute
    stored); moe-topk drops as dense and stores no per-sample compute."""
    ids, labels = _labels(n)
    for s in range(3):
        clean = _classifier(labels, 0.8, s)
        n1, n2 = _worse(clean, labels, n // 20, 10 + s), _worse(clean, labels, n // 10, 20 + s)
        splits = {"reference": clean, "noise/1": n1, "noise/2": n2}
        _shift(root, "dense", s, {k: (ids, labels, v) for k, v in splits.items()})
        rng = np.random.default_rng(30 + s)
        ref = rng.uniform(0.8, 1.2, n)
        compute = {"reference": ref, "noise/1": ref + rng.normal(0, 0.05, n),
                   "noise/2": ref + 0.1 + rng.normal(0, 0.05, n)}
        ee = {**splits, "noise/2": _worse(n2, labels, n // 25, 40 + s)}
        _shift(root, "early-exit", s, {k: (ids, labels, v) for k, v in ee.items()}, compute, knob=("threshold", 0.5))
        _shift(root, "moe-topk", s, {k: (ids, labels, v) for k, v in splits.items()}, knob=("k", 1))


def _shift_rows(root: Path) -> pd.DataFrame:
    records, bad = scan_records(root)
    assert not bad
    df, left_out = shift_differences([(p, r) for p, r in records if r["kind"] == "shift"])
    assert left_out == []
    mark_holm({"shift": df})
    return df


def test_shift_drop_difference_and_compute_change_are_paired_by_image(tmp_path):
    """The same 1,000 images clean and shifted, three seeds: early-exit's drop minus dense's is exactly +4.00
    points on noise/2 (significant) and 0 on noise/1 (not: identical predictions); its useful share of dense
    rises 5 points on noise/2 with a tight interval. moe-topk stores no per-sample compute: its change is the
    records' value (-2 points), without an interval, and the finding says so."""
    _planted_shift(tmp_path)
    df = _shift_rows(tmp_path).set_index(["method", "condition"])
    ee1, ee2 = df.loc[("early-exit", "noise/1")], df.loc[("early-exit", "noise/2")]
    assert ee2.seeds == 3 and ee2.paired and ee2.by_sample and ee2.knob == "threshold=0.5"
    assert ee2["drop"] == pytest.approx(14.0) and ee2.dense_drop == pytest.approx(10.0)
    assert ee2["diff"] == pytest.approx(4.0)
    assert 3.0 < ee2.diff_lo < 4.0 < ee2.diff_hi < 5.0 and ee2.diff_sig
    assert ee1["diff"] == 0.0 and ee1.diff_lo == ee1.diff_hi == 0.0 and not ee1.diff_sig
    # the same clean predictions: the shifted scores differ by the drop difference, with its sign turned
    assert ee2.gap == pytest.approx(-4.0) and -5.0 <= ee2.gap_lo < -4.0 < ee2.gap_hi < -3.0
    assert ee1.gap == 0.0 and ee1.gap_lo == ee1.gap_hi == 0.0
    # in the table: beside the marked drop difference, the gap's interval is unmarked (it is not tested)
    table = _shift_table("t", df.reset_index())
    [row] = [[c.text for c in r] for r in table.rows if r[0].text == "early-exit" and r[2].text == "noise/2"]
    gap_column = table.headers.index("score - dense score [95 % CI]")
    assert row[gap_column - 1].endswith("] †") and re.fullmatch(r"-4\.00 \[-\d\.\d\d, -\d\.\d\d\]", row[gap_column])
    assert ee2.compute == pytest.approx(5.0, abs=0.3) and ee2.compute_lo > 4.5 and ee2.compute_hi < 5.5
    assert ee2.compute_sig and ee2.compute_from == "samples" and not ee1.compute_sig
    moe = df.loc[("moe-topk", "noise/2")]
    assert moe.compute == pytest.approx(-2.0) and pd.isna(moe.compute_lo) and moe.compute_from == "record"
    finding = shift_finding(df.reset_index())
    assert finding.startswith("Over 2 conditions, paired by sample")
    assert "early-exit (threshold=0.5) drops more than dense in 1 of 2 conditions and less in 0 (largest +4.00 [" \
        in finding
    assert "points on noise/2; score minus dense score there: -4.00 [-" in finding
    assert "moe-topk (k=1) drops like dense (differences +0.00 to +0.00 points, none significant)" in finding
    assert "early-exit (threshold=0.5) spends more, +2.5 points on average (significant in 1 of 2 conditions" in finding
    assert "moe-topk (k=1) -2.0 points on average (no interval: per-sample compute is not in its samples files)" \
        in finding
    # one condition (a text shift): its estimate and interval, not a range of one value
    one = shift_finding(df.reset_index().query("condition == 'noise/2'"))
    assert one.startswith("Over 1 condition, paired by sample")
    assert "early-exit (threshold=0.5) drops more than dense, +4.00 [+3." in one and "1 of 1" not in one
    assert "points (score minus dense score: -4.00 [-" in one
    assert "early-exit (threshold=0.5) spends more, +5.0 [+" in one and "on average" not in one.split("moe-topk")[1]
    assert "moe-topk (k=1) drops like dense (+0.00 [" in one and "points, not significant)" in one
    assert "moe-topk (k=1) -2.0 points (no interval" in one


def test_a_text_shift_resamples_reference_and_target_apart(tmp_path):
    """Reference (the source's eval split) and target hold other samples: each is resampled on its own (not
    paired by sample), still paired by seed; a method without a dense shift record is left out with a line."""
    ref_ids, ref_labels = _labels(300, seed=1)
    tgt_ids, tgt_labels = np.asarray([f"t{i}" for i in range(500)]), _labels(500, seed=2)[1]
    for s in range(2):
        ref, tgt = _classifier(ref_labels, 0.9, s), _classifier(tgt_labels, 0.85, 50 + s)
        _shift(tmp_path, "dense", s, {"reference": (ref_ids, ref_labels, ref), "imdb": (tgt_ids, tgt_labels, tgt)})
        _shift(tmp_path, "evit", s, {"reference": (ref_ids, ref_labels, ref),
                                      "imdb": (tgt_ids, tgt_labels, _worse(tgt, tgt_labels, 25, s))})
    records, _ = scan_records(tmp_path)
    df, left_out = shift_differences(records)
    [row] = df.to_dict("records")
    assert not row["by_sample"] and row["paired"] and row["seeds"] == 2
    assert row["diff"] == pytest.approx(5.0) and row["diff_lo"] > 0
    assert "2 seeds" not in shift_finding(df.assign(diff_sig=True, compute_sig=False))
    orphan = [(p, r) for p, r in records if r["method"]["name"] == "evit"]
    assert shift_differences(orphan)[1] == ["evit - → imagenette-c: no dense shift record from the same backbone"]


def _rows(text: str, first_cell: str) -> list[list[str]]:
    """Cells of the markdown table rows of ``text`` whose first cell is ``first_cell``."""
    rows = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in text.splitlines()
            if line.startswith("|")]
    return [r for r in rows if r and r[0] == first_cell]


@pytest.fixture
def admitted(monkeypatch):
    """Every run record is validated and admitted (text runs by their encoder): their shift and transfer
    records get the paired tables."""
    bypass_validation_gate(monkeypatch)
    monkeypatch.setattr(lb, "published_backbone_hashes", lambda: {})
    monkeypatch.setattr(lb, "previous_backbones", lambda: {})


def test_leaderboard_and_site_show_the_paired_tables_with_record_strings_escaped(tmp_path, admitted):
    """Transfer records of admitted runs: the paired table (gain with interval and mark, seeds, protocol, the
    dense reference row), its finding and the line on significance; a knob holding markup is escaped in the
    markdown and shown as text on the site's specialization page, which the index links."""
    results = tmp_path / "results"
    runs = {}
    for method, knob in (("dense", ("none", None)), ("moe-topk", ("k", HOSTILE))):
        path = commit_record(finalize(run_body(method, knob=knob)), samples(), results)
        runs[method] = json.loads(path.read_text())
    ids, labels = _labels(600)
    dense = _classifier(labels, 0.7, 0)
    _transfer(results, "dense", "full", 0, ids, labels, dense, source_id=runs["dense"]["id"])
    better = _flip(dense, labels, 60)   # +10 points
    _transfer(results, "moe-topk", "full", 0, ids, labels, better, knob=("k", HOSTILE),
              source_id=runs["moe-topk"]["id"])
    shifted = {"reference": dense, HOSTILE: _worse(dense, labels, 30, 0)}
    _shift(results, "dense", 0, {k: (ids, labels, v) for k, v in shifted.items()}, source_id=runs["dense"]["id"])
    _shift(results, "moe-topk", 0, {k: (ids, labels, v) for k, v in shifted.items()}, knob=("k", HOSTILE),
           source_id=runs["moe-topk"]["id"], source={"trained_again": True, "prediction_agreement_with_record": 0.988})
    board = tmp_path / "lb" / "README.md"
    text = lb.write_leaderboard(results, str(board)).read_text()
    section = text.partition("## Specialization & transfer")[2]
    assert "### Transfer to a new task (`ccbench transfer`): gain over dense, paired, with 95 % intervals" in section
    assert "<img" not in text and "k=&lt;img src=x onerror=alert(1)&gt;" in section
    paired_shift, _, transfer = section.partition("#### Against dense, paired")[2].partition("### Transfer")
    assert "Finding: Over 1 condition, paired by sample" in paired_shift
    [shift_row] = _rows(paired_shift, "moe-topk")
    assert shift_row[1:4] == ["k=&lt;img src=x onerror=alert(1)&gt;", "&lt;img src=x onerror=alert(1)&gt;", "1"]
    assert shift_row[4:8] == ["+5.00", "+5.00", "+0.00 [+0.00, +0.00]", "+0.00 [+0.00, +0.00]"]
    [moe] = _rows(transfer, "moe-topk")
    assert moe[2:5] == ["full", "1", f"{100 * (better == labels).mean():.2f}"] and moe[5] == "50" and moe[7] == "full"
    assert re.fullmatch(r"\+10\.00 \[\+\d+\.\d\d, \+\d+\.\d\d\] †", moe[6])
    assert _rows(transfer, "dense")[0][6] == "reference"
    assert "Finding: Transfer better than dense: moe-topk (k=&lt;img" in section and SIGNIFICANT_TRACK in section
    assert "single-seed" in section
    copy = (f"moe-topk on imagenette, seed 0 (record {runs['moe-topk']['id'][:12]}; its copy agrees on 98.8 % of the "
            "record's predictions)")   # a source model trained again is said; dense's own model is not listed
    assert f"{TRAINED_AGAIN_NOTE}: {copy}." in html.unescape(section) and section.count("its copy agrees") == 1
    page = (board.parent / "site" / "specialization.html").read_text()
    assert f"{TRAINED_AGAIN_NOTE}: {copy}." in html.unescape(page)
    assert "<img src=x" not in page and Tables(page).handlers == []
    shift_table, transfer_table = Tables(page).tables
    assert shift_table[1][:3] == ["moe-topk", f"k={HOSTILE}", HOSTILE]   # the markup is text
    assert [r[1] for r in transfer_table[1:]] == ["-", f"k={HOSTILE}"]   # dense first
    assert 'href="specialization.html"' in (board.parent / "site" / "index.html").read_text()


def test_grid_seeds_pool_into_one_row_although_each_calibrated_its_own_threshold(tmp_path):
    """Three seeds run at compute-grid target 50 %, each calibrated to its own threshold: one row ``grid 50 %``
    with seeds=3, in the transfer gains, the shift differences and the per-record transfer rows (keyed by the
    knob they were three one-seed rows, three tests for Holm)."""
    from ccbench.reporting.shift_tables import transfer_rows

    ids, labels = _labels(400)
    for s, threshold in zip(range(3), (0.4, 0.5, 0.6)):
        dense = _classifier(labels, 0.7, s)
        _transfer(tmp_path, "dense", "full", s, ids, labels, dense)
        _transfer(tmp_path, "early-exit", "full", s, ids, labels, _flip(dense, labels, 20),
                  knob=("threshold", threshold), grid=50)
        splits = {"reference": dense, "noise/1": _worse(dense, labels, 20, s)}
        _shift(tmp_path, "dense", s, {k: (ids, labels, v) for k, v in splits.items()})
        _shift(tmp_path, "early-exit", s, {k: (ids, labels, v) for k, v in splits.items()},
               knob=("threshold", threshold), grid=50)
    gains = _gains(tmp_path)
    assert list(gains.index) == ["dense", "early-exit"]
    ee = gains.loc["early-exit"]
    assert ee.knob == "grid 50 %" and ee.seeds == 3 and ee.paired and ee.gain == pytest.approx(5.0)
    [shift] = _shift_rows(tmp_path).to_dict("records")
    assert shift["knob"] == "grid 50 %" and shift["seeds"] == 3
    records = [(p, r) for p, r in scan_records(tmp_path)[0] if r["kind"] == "transfer"]
    assert set(transfer_rows(records=records).knob) == {"-", "grid 50 %"}


CROSS_FIT = {"eval_split": "all", "n_eval": 2000, "data_hash": "d" * 64,
             "eval_set": {"scheme": "cross-fit", "split": "all", "folds": 2, "seed": 0, "n": 2000}}


def test_a_transfer_on_another_eval_set_is_not_compared_and_breaks_no_other_row(tmp_path):
    """Dense and planted (+5 points) on the 2-fold cross-fit, three seeds; one more dense seed measured on dev
    (300 other samples) and a method measured on val: they form their own groups, so the planted gain stands
    (one mis-measured dense record used to knock every method row out), and the val row is listed as not
    compared, naming both eval sets; the transfer tables say what they were scored on."""
    from ccbench.reporting.track_section import track_tables

    ids, labels = _labels(2000)
    for s in range(3):
        dense = _classifier(labels, 0.7, 100 + s)
        _transfer(tmp_path, "dense", "full", s, ids, labels, dense, task=CROSS_FIT)
        _transfer(tmp_path, "planted", "full", s, ids, labels, _flip(dense, labels, fix=100), task=CROSS_FIT)
    dev_ids, dev_labels = np.asarray([f"dev-{i}" for i in range(300)]), _labels(300, seed=3)[1]
    _transfer(tmp_path, "dense", "full", 3, dev_ids, dev_labels, _classifier(dev_labels, 0.7, 3), date="2026-03-01",
              task={"eval_split": "dev", "n_eval": 300, "data_hash": "e" * 64})
    _transfer(tmp_path, "stray", "full", 0, dev_ids, dev_labels, _classifier(dev_labels, 0.7, 4),
              task={"eval_split": "val", "n_eval": 300, "data_hash": "f" * 64})
    records, bad = scan_records(tmp_path)
    assert not bad
    df, left_out = transfer_gains(records)
    planted = df.set_index("method").loc["planted"]
    assert planted.seeds == 3 and planted.gain == pytest.approx(5.0) and planted.eval_set == \
        "2-fold cross-fit of all (2,000)"
    assert left_out == ["stray - full → imagenette-b: scored on val (300), dense on 2-fold cross-fit of all (2,000); "
                        "dev (300): another eval set, not compared"]
    view = track_tables(records, {r["source"]["record_id"][:12] for _, r in records}, n_boot=200)
    assert sorted(t.title for t in view.tables) == [
        "imagenette-a → imagenette-b (budget cpu, scored on 2-fold cross-fit of all (2,000))",
        "imagenette-a → imagenette-b (budget cpu, scored on dev (300))",
        "imagenette-a → imagenette-b (budget cpu, scored on val (300))"]


def test_a_clean_record_wins_over_a_newer_dirty_twin(tmp_path):
    """As :func:`ccbench.reporting.tables.load_table`: per seed a record from a clean tree beats a dirty (or
    unknown) one whatever their dates; among equals the newest counts."""
    from ccbench.reporting.track import newest_per_seed

    ids, labels = _labels(400)
    dense = _classifier(labels, 0.7, 0)
    _transfer(tmp_path, "dense", "full", 0, ids, labels, dense)
    _transfer(tmp_path, "paired", "full", 0, ids, labels, _flip(dense, labels, 20), date="2026-01-01", dirty=False)
    _transfer(tmp_path, "paired", "full", 0, ids, labels, _flip(dense, labels, 4), date="2026-02-01", dirty=True)
    assert _gains(tmp_path).loc["paired"].gain == pytest.approx(5.0)   # the clean one's, not the newer dirty one's
    recs = [(Path(i), {"id": i, "seed": s, "date": d, **({"git": {"dirty": g}} if g is not None else {})})
            for i, s, d, g in (("a", 0, "2026-01-01", False), ("b", 0, "2026-02-01", True),
                               ("c", 1, "2026-01-01", None), ("d", 1, "2026-03-01", None))]
    assert {s: r["id"] for s, (_, r) in newest_per_seed(recs).items()} == {0: "a", 1: "d"}


def test_a_record_with_an_unknown_protocol_or_no_source_task_is_skipped_not_fatal(tmp_path, admitted, capsys):
    """Records are untrusted: a transfer record with an unknown protocol (its id right) is skipped with one line
    on stderr and the leaderboard still shows the paired table of the others; so is a record without
    ``source.task`` handed to the paired tables."""
    from ccbench.reporting.track_section import track_tables

    results = tmp_path / "results"
    runs = {}
    for method in ("dense", "moe-topk"):
        path = commit_record(finalize(run_body(method, knob=("k", 1) if method != "dense" else ("none", None))),
                             samples(), results)
        runs[method] = json.loads(path.read_text())
    ids, labels = _labels(600)
    dense = _classifier(labels, 0.7, 0)
    _transfer(results, "dense", "full", 0, ids, labels, dense, source_id=runs["dense"]["id"])
    _transfer(results, "moe-topk", "full", 0, ids, labels, _flip(dense, labels, 60), knob=("k", 1),
              source_id=runs["moe-topk"]["id"])
    bogus = _transfer(results, "moe-topk", "bogus", 1, ids, labels, dense, knob=("k", 1),
                      source_id=runs["moe-topk"]["id"])
    text = lb.write_leaderboard(results, str(tmp_path / "lb" / "README.md")).read_text()
    err = capsys.readouterr().err
    assert f"ccbench: skipped {next(results.rglob(bogus['id'][:12] + '.json'))}: a field cannot be tabulated " \
           "(ValueError: unknown protocol 'bogus'" in err
    [moe] = _rows(text.partition("### Transfer to a new task")[2], "moe-topk")
    assert moe[2:4] == ["full", "1"] and moe[6].startswith("+10.00 [")
    records, _ = scan_records(results)
    orphan = [(p, json.loads(json.dumps(r))) for p, r in records if r.get("kind") == "transfer"
              and r["protocol"] == "full"]
    del orphan[0][1]["source"]["task"]
    view = track_tables(orphan, {r["source"]["record_id"][:12] for _, r in orphan}, n_boot=200)
    assert len(view.tables) == 1 and "KeyError: 'task'" in capsys.readouterr().err


def test_a_tie_of_significant_compute_changes_is_mixed():
    """As many significant compute rises as falls: the finding says mixed, not that the method spends more."""
    def row(condition: str, compute: float) -> dict:
        return {"method": "early-exit", "knob": "threshold=0.5", "condition": condition, "seeds": 3,
                "by_sample": True, "diff": 0.0, "diff_lo": -1.0, "diff_hi": 1.0, "diff_sig": False, "compute": compute,
                "compute_lo": compute - 1, "compute_hi": compute + 1, "compute_p": 0.001, "compute_sig": True}

    finding = shift_finding(pd.DataFrame([row("noise/1", 3.0), row("noise/2", -3.0)]))
    assert "early-exit (threshold=0.5) is mixed: spends more on some conditions, less on others, +0.0 points on " \
        "average (significant in 2 of 2 conditions: 1 more, 1 less" in finding
    assert "spends more," not in finding and "spends less," not in finding
    one_way = shift_finding(pd.DataFrame([row("noise/1", 3.0), row("noise/2", 2.0)]))
    assert "early-exit (threshold=0.5) spends more, +2.5 points" in one_way


def test_a_transfer_pairs_with_dense_only_at_the_same_source_and_target_task_versions():
    """Another task version trains on other splits: a transfer from (or to) sst2 v1 is never compared with a
    dense transfer at v2, a missing version reads as 1, and the track names the old version in its groups."""
    from ccbench.common.protocols import dense_reference_key
    from ccbench.reporting.track import _group

    def transfer(source_version, target_version, method="early-exit", protocol="head-only"):
        task = {"name": "sst2", "eval_split": "dev", "data_hash": "d", "n_eval": 872}
        if target_version is not None:
            task["version"] = target_version
        source = {"task": "amazon-books", "backbone_sha256": "b" * 64, "record_id": "r" * 64}
        if source_version is not None:
            source["task_version"] = source_version
        return {"budget": {"name": "cpu"}, "task": task, "source": source, "seed": 0, "protocol": protocol,
                "method": {"name": method}}

    dense_v2 = dense_reference_key(transfer(1, 2, "dense"), "head-only")
    assert dense_reference_key(transfer(1, 2)) == dense_v2
    assert dense_reference_key(transfer(1, 1)) != dense_v2
    assert dense_reference_key(transfer(None, None)) == dense_reference_key(transfer(1, 1))
    assert _group(transfer(1, 1)).target == "sst2 (v1; current v2)" and _group(transfer(1, 2)).target == "sst2"
    assert _group(transfer(None, 2)).source == "amazon-books"


def test_a_shift_difference_that_excludes_zero_only_before_holm_is_not_called_like_dense():
    """An interval that excludes zero but loses significance under Holm: the finding says which way the method
    differs and marks it (°), not that it drops (or spends) like dense; one that straddles zero stays 'like dense'."""
    def row(condition: str, diff: float, lo: float, hi: float, compute_lo: float) -> dict:
        return {"method": "moefication", "knob": "grid 50 %", "condition": condition, "seeds": 3, "by_sample": False,
                "diff": diff, "diff_lo": lo, "diff_hi": hi, "diff_sig": False, "compute": 2.2,
                "compute_lo": compute_lo, "compute_hi": 2.6, "compute_p": 0.03, "compute_sig": False}

    one = shift_finding(pd.DataFrame([row("imdb", -3.09, -5.73, -0.39, 1.8)]))
    assert "moefication (grid 50 %) drops less than dense (-3.09 [-5.73, -0.39] points), not significant after the " \
        "Holm correction, though its 95 % interval excludes zero (°)" in one
    with_gap = shift_finding(pd.DataFrame([{**row("imdb", -3.09, -5.73, -0.39, 1.8), "gap": 1.5, "gap_lo": -1.25,
                                            "gap_hi": 4.0}]))
    assert "drops less than dense (-3.09 [-5.73, -0.39] points; score minus dense score: +1.50 [-1.25, +4.00] " \
        "points), not significant after the Holm correction" in with_gap
    assert "moefication (grid 50 %) spends more (+2.2 [+1.8, +2.6] points), not significant after the Holm" in one
    assert "like dense" not in one and "about what it spends" not in one
    straddles = shift_finding(pd.DataFrame([row("imdb", -1.0, -2.5, +0.5, -0.2)]))
    assert "drops like dense (-1.00 [-2.50, +0.50] points, not significant)" in straddles and "°" not in straddles
    assert "spends about what it spends on the reference (+2.2 [-0.2, +2.6] points, not significant)" in straddles
    two = shift_finding(pd.DataFrame([row("imdb", -3.09, -5.73, -0.39, -0.2), row("books", -1.0, -2.5, 0.5, -0.2)]))
    assert "drops like dense (differences -3.09 to -1.00 points, none significant; 1 with a 95 % interval that " \
        "excludes zero (°))" in two


def test_leftover_gains_that_print_alike_are_not_given_as_a_range():
    """Two non-significant gains that print the same: '(both -0.98 points)', not '(-0.98 to -0.98 points)'."""
    def row(method: str, protocol: str, gain: float) -> dict:
        return {"method": method, "knob": "grid 50 %", "protocol": protocol, "seeds": 3, "gain": gain,
                "gain_lo": gain - 1, "gain_hi": gain + 0.5, "gain_sig": False, "dense_pct": 50.0}

    alike = transfer_finding(pd.DataFrame([row("evit", "full", -0.981), row("early-exit", "head-only", -0.979)]))
    assert "The other 2 gains (both -0.98 points) are not significant after the Holm correction" in alike
    assert "to -0.98" not in alike
    apart = transfer_finding(pd.DataFrame([row("evit", "full", -1.5), row("early-exit", "head-only", 0.2),
                                           row("moefication", "full", 0.2)]))
    assert "The other 3 gains (-1.50 to +0.20 points)" in apart


def test_the_rows_on_fewer_than_three_seeds_are_named():
    """A table whose rows mostly pool three seeds but one rests on one: the finding names that row and its seeds,
    not a bare range of seed counts; all rows on three say so; all on one call the figures single-seed."""
    def rows(*seeds_per_row) -> pd.DataFrame:
        names = [("avit", "grid 50 %"), ("moe-topk", "k=1"), ("early-exit", "grid 50 %")]
        return pd.DataFrame([{"method": m, "knob": k, "seeds": n} for (m, k), n in zip(names, seeds_per_row)])

    assert seeds_sentence(rows(3, 1, 3)) == (
        "Some figures rest on fewer than three seeds (moe-topk (k=1) on 1; the others on 3); single-seed ones have "
        "intervals over the eval samples only, not seed-to-seed variation.")
    assert seeds_sentence(rows(2, 1, 2)).startswith(
        "Some figures rest on fewer than three seeds (avit (grid 50 %) on 2, early-exit (grid 50 %) on 2, moe-topk "
        "(k=1) on 1); single-seed")
    assert seeds_sentence(rows(3, 3, 3)) == "Each figure pools 3 seeds: the intervals cover seeds and eval samples."
    assert seeds_sentence(rows(1, 1)).startswith("These figures are single-seed")
