"""Tables from records: seeds pooled over samples aligned by id, re-measured seeds, and the GLUE table
(hand-made records, no training)."""
import numpy as np

from ccbench.reporting.paired import Bootstrap, interval
from ccbench.reporting.records import commit_record
from ccbench.reporting.tables import glue_table, load_table, render
from record_helpers import run_body


def _commit(tmp_path, ids, label, pred, **body):
    arrays = {"ids": np.asarray(ids), "label": np.array(label, dtype=np.int16), "pred": np.array(pred, dtype=np.int16)}
    return commit_record(run_body(**body), arrays, tmp_path)


def test_seeds_are_pooled_over_samples_aligned_by_id(tmp_path):
    # seed 0 right on a, b, c; seed 1 (its samples stored in another order) right on b, d
    _commit(tmp_path, ["a", "b", "c", "d"], [1, 1, 0, 0], [1, 1, 0, 1], seed=0, score=75.0)
    _commit(tmp_path, ["d", "c", "b", "a"], [0, 0, 1, 1], [0, 1, 1, 0], seed=1, score=50.0)
    [row] = load_table(tmp_path).to_dict("records")
    assert row["seeds"] == 2 and row["top1"] == 62.5
    # the hierarchical bootstrap of the seeds' predictions put in id order
    preds = np.array([[1, 1, 0, 1], [0, 1, 1, 0]])              # a, b, c, d
    _, reps = Bootstrap(np.array([1, 1, 0, 0]), n_boot=2000).scores(preds, "top1", "table")
    lo, hi = interval(reps)
    assert row["top1_ci95"] == f"{lo:.1f}-{hi:.1f}"
    # aligned by position instead of id seed 1 would be right on c only: another interval
    _, reps2 = Bootstrap(np.array([1, 1, 0, 0]), n_boot=2000).scores(np.array([[1, 1, 0, 1], [0, 0, 1, 1]]), "top1",
                                                                     "table")
    assert row["top1_ci95"] != "{:.1f}-{:.1f}".format(*interval(reps2))


def test_a_seed_pooled_interval_covers_seed_to_seed_variation(tmp_path):
    """Issue 21: several seeds' CI resamples the seeds, then the samples. Two seeds that disagree on every
    sample average to 50 % on each one: resampling samples alone would give a zero-width interval."""
    ids = [f"x{i}" for i in range(40)]
    _commit(tmp_path, ids, [1] * 40, [1] * 40, seed=0, score=100.0)
    _commit(tmp_path, ids, [1] * 40, [0] * 40, seed=1, score=0.0)
    [row] = load_table(tmp_path).to_dict("records")
    assert row["top1"] == 50.0 and row["top1_ci95"] == "0.0-100.0"


def test_one_seed_keeps_its_own_interval_and_a_remeasured_seed_replaces_the_earlier(tmp_path):
    _commit(tmp_path, ["a", "b"], [1, 0], [1, 0], seed=0, score=80.0)
    body = run_body(seed=0, score=90.0)
    body["date"] = "2026-02-01T00:00:00+00:00"
    commit_record(body, {"ids": np.asarray(["a", "b"]), "label": np.array([1, 0], dtype=np.int16),
                         "pred": np.array([1, 1], dtype=np.int16)}, tmp_path)
    [row] = load_table(tmp_path).to_dict("records")
    assert row["seeds"] == 1 and row["top1"] == 90.0 and row["top1_ci95"] == "89.0-91.0"   # run_body: score +- 1


def test_scores_that_are_not_means_get_a_pooled_interval_too(tmp_path):
    """F1, Matthews and correlations are not per-sample means: their seeds' interval is the same hierarchical
    bootstrap of the metric on resampled seeds and samples."""
    ids, labels = [f"x{i}" for i in range(30)], [i % 2 for i in range(30)]
    for seed in (0, 1):
        body = run_body(task="mrpc", seed=seed, score=70.0 + seed)
        body["metrics"]["main_score"]["name"] = "mean of f1 and accuracy"
        pred = labels if seed == 0 else [y if i % 2 else 1 - y for i, y in enumerate(labels)]   # 100 % / 50 % right
        commit_record(body, {"ids": np.asarray(ids), "label": np.array(labels, dtype=np.int16),
                             "pred": np.array(pred, dtype=np.int16)}, tmp_path)
    [row] = load_table(tmp_path).to_dict("records")
    assert row["seeds"] == 2 and row["top1"] == 70.5
    lo, hi = (float(v) for v in row["top1_ci95"].split("-"))
    # seed 1's own mean of F1 and accuracy is about 50, seed 0's 100: resampling the seeds reaches both ends
    assert lo < 55 and hi == 100.0
    text = render(load_table(tmp_path), note=False)
    [line] = [line for line in text.splitlines() if "70.50 (mean of f1 and accuracy)" in line]
    assert [c.strip() for c in line.strip("|").split("|")][7] == row["top1_ci95"]              # the 95% CI cell


def test_glue_table_averages_only_when_all_five_tasks_exist(tmp_path):
    scores = {"sst2": 90.0, "mrpc": 80.0, "cola": 40.0, "rte": 60.0, "stsb": 85.0}
    for task, score in scores.items():
        _commit(tmp_path, ["a"], [1], [1], task=task, score=score)
    _commit(tmp_path, ["a"], [1], [1], task="sst2", method="early-exit", knob=("threshold", 0.9), score=88.0)
    table = glue_table(load_table(tmp_path))
    lines = [line for line in table.splitlines() if line.startswith("|") and "---" not in line]
    header, rows = lines[0], {line.split("|")[2].strip(): line for line in lines[1:]}
    assert [c.strip() for c in header.strip("|").split("|")] == ["budget", "method", "knob", "sst2", "mrpc", "cola",
                                                                   "rte", "stsb", "average"]
    assert rows["dense"].rstrip(" |").endswith(f"{np.mean(list(scores.values())):.2f}")        # 71.00
    assert "90.00 (100%)" in rows["dense"]
    ee = [c.strip() for c in rows["early-exit"].strip("|").split("|")]
    assert ee[3] == "88.00 (100%)" and ee[4:] == ["-"] * 5                                      # no average
    assert glue_table(load_table(tmp_path, task="nothing")) == "(no GLUE records)"


def _routing(nmi: float, nmi_pick: float, constant: list[str], requested: bool) -> dict:
    """A width record's routing section (issue 24 layout): the mean-over-layers figures the table reads."""
    mean = {"utilization": 1.0, "nmi": nmi, "nmi_per_pick": nmi_pick, "specialization_weighting": "per sample",
            "position_nmi": 0.125}
    if requested:
        mean.update({"requested_max_over_mean": 1.5, "requested_cv": 0.25, "requested_drop_rate": 0.031})
    return {"mean_over_layers": mean, "constant_by_construction": {"statistics": constant, "why": "by design"}}


def test_width_rows_show_per_sample_specialization_requested_load_drops_and_na_by_construction(tmp_path):
    """Top-k: class NMI per sample with per pick in brackets, position NMI, requested max/mean (CV) and
    the drop share in %. Expert choice declares utilization and class specialization constant: 'n/a (by
    construction)', its position NMI is shown, and it has no requested load ('-'). A record before issue
    24 (per-pick NMI under ``nmi`` only) shows its per-pick value in brackets and '-' per sample."""
    topk = run_body("moe-topk", knob=("k", 1), task="imagenette")
    topk["metrics"]["routing"] = _routing(0.00886, 0.00617, [], True)
    ec = run_body("moe-expert-choice", knob=("capacity", 1.0), task="imagenette")
    ec["metrics"]["routing"] = _routing(0.0, 0.0, ["utilization", "class_specialization"], False)
    old = run_body("soft-moe", knob=("slots", 2), task="imagenette")
    old["metrics"]["routing"] = {"mean_over_layers": {"utilization": 0.5, "nmi": 0.02}}
    for i, body in enumerate((topk, ec, old)):
        commit_record(body, {"ids": np.asarray(["a"]), "label": np.array([0], dtype=np.int16),
                             "pred": np.array([0], dtype=np.int16)}, tmp_path / str(i))
    rows = {}
    for i in range(3):
        [row] = load_table(tmp_path / str(i)).to_dict("records")
        rows[row["method"]] = row
    import pandas as pd

    text = render(pd.DataFrame(list(rows.values())), note=False)
    head = [c.strip() for c in text.splitlines()[0].strip("|").split("|")]
    lines = {cells[head.index("method")]: cells
             for cells in ([c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()[2:])}

    def cell(method, header):
        return lines[method][head.index(header)]

    assert cell("moe-topk", "class NMI per sample (per pick)") == "0.009 (0.006)"
    assert cell("moe-topk", "requested load max/mean (CV)") == "1.50 (0.25)" and cell("moe-topk", "dropped %") == "3.1"
    assert cell("moe-topk", "position NMI") == "0.125" and cell("moe-topk", "util") == "1.00"
    assert cell("moe-expert-choice", "util") == cell("moe-expert-choice", "class NMI per sample (per pick)") \
        == "n/a (by construction)"
    assert cell("moe-expert-choice", "position NMI") == "0.125"
    assert cell("moe-expert-choice", "requested load max/mean (CV)") == cell("moe-expert-choice", "dropped %") == "-"
    assert cell("soft-moe", "class NMI per sample (per pick)") == "- (0.020)" and cell("soft-moe", "util") == "0.50"


def _timed(seed: int, b1: float, bN: float, b1_ok: bool = True, method: str = "early-exit", batch: int = 8) -> dict:
    """A run body of one seed with its batch-1 and batch-N speedups (efficiency = speedup / 2), the batch-1
    dense-vs-dense control's verdict and batch N's size."""
    body = run_body(method, knob=("threshold", 0.9), seed=seed)
    body["metrics"]["latency"] = {"batch1": {"speedup": b1, "efficiency": b1 / 2, "check": {"ok": b1_ok}},
                                  "batchN": {"speedup": bN, "efficiency": bN / 2, "batch_size": batch}}
    return body


def test_latency_comes_from_the_seeds_whose_timing_passed_and_the_cell_says_how_many(tmp_path):
    from ccbench.reporting.tables import NOISE_NOTE

    # early-exit: seed 1's batch-1 timing was disturbed; layer-skip: every batch-1 timing was
    for seed, b1, ok in ((0, 2.0, True), (1, 5.0, False), (2, 3.0, True)):
        commit_record(_timed(seed, b1, 1.5 + seed, ok), {"ids": np.asarray(["a"]), "label": np.array([1], np.int16),
                                                         "pred": np.array([1], np.int16)}, tmp_path)
    for seed, b1 in ((0, 1.0), (1, 2.0)):
        commit_record(_timed(seed, b1, 1.0, False, "layer-skip"), {"ids": np.asarray(["a"]),
                      "label": np.array([1], np.int16), "pred": np.array([1], np.int16)}, tmp_path)
    table = load_table(tmp_path)
    rows = {r["method"]: r for r in table.to_dict("records")}
    ee, ls = rows["early-exit"], rows["layer-skip"]
    assert ee["speedup_b1"] == 2.5 and ee["eff_b1"] == 1.25 and ee["timed_b1"] == "0,2"      # seed 1 left out
    assert ee["speedup_bN"] == 2.5 and ee["timed_bN"] == "0,1,2" and not ee["flag_latency"]  # batch N: all three
    assert ls["speedup_b1"] == 1.5 and ls["timed_b1"] == "" and ls["flag_latency"]          # none passed: all, flagged
    text = render(table, note=False)
    head = [c.strip() for c in text.splitlines()[0].strip("|").split("|")]
    cells = {c[head.index("method")]: c for c in ([x.strip() for x in line.strip("|").split("|")]
                                                   for line in text.splitlines()[2:])}
    assert cells["early-exit"][head.index("speedup b1")] == "2.50x (2 of 3 seeds)"
    assert cells["early-exit"][head.index("speedup bN")] == "2.50x (b8)"
    assert cells["layer-skip"][head.index("speedup b1")] == "1.50x ?"
    assert "the mean over the row's seeds whose timing passed the latency check" in NOISE_NOTE
    assert "'n of m seeds' when only n of its m seeds did, '?' when none did" in NOISE_NOTE


def test_a_record_serving_several_grid_targets_is_one_markdown_row_and_one_csv_row_per_target(tmp_path):
    """A knob that reached none of its grid targets (the nearest value, marked) serves all three with one
    record: the table keeps a row per target (plots, ranking, CSV), the markdown shows the measurement once."""
    def grid_body(seed, entries, value):
        body = run_body(method="moefication", knob=("k", value), seed=seed)
        body["method"]["knob"]["chosen_by"] = "grid"
        body["method"]["grid"] = [{"target": t, "reached": 73.4, "marked": marked} for t, marked in entries]
        return body

    arrays = {"ids": np.asarray(["a", "b"]), "label": np.array([1, 0], dtype=np.int16),
              "pred": np.array([1, 0], dtype=np.int16)}
    commit_record(grid_body(0, [(25.0, True), (50.0, True), (75.0, False)], 1), arrays, tmp_path)
    commit_record(grid_body(1, [(75.0, False)], 2), arrays, tmp_path)   # another seed, the 75 % target only
    table = load_table(tmp_path)
    assert sorted(table.knob) == ["grid 25 %", "grid 50 %", "grid 75 %"]
    assert dict(zip(table.knob, table.seeds))["grid 75 %"] == 2
    assert len(render(table, "csv").strip().splitlines()) == 1 + 3
    rows = [line for line in render(table, note=False).splitlines() if "moefication" in line]
    assert len(rows) == 2 and "grid 25,50 % (k=1)" in rows[0] and "grid 75 %" in rows[1]


def test_seeds_timed_at_different_batch_sizes_name_every_size(tmp_path):
    for seed, batch in ((0, 8), (1, 32)):
        commit_record(_timed(seed, 2.0, 1.5 + seed, batch=batch), {"ids": np.asarray(["a"]),
                      "label": np.array([1], np.int16), "pred": np.array([1], np.int16)}, tmp_path)
    text = render(load_table(tmp_path), note=False)
    head = [c.strip() for c in text.splitlines()[0].strip("|").split("|")]
    [row] = [[x.strip() for x in line.strip("|").split("|")] for line in text.splitlines()[2:]]
    assert row[head.index("speedup bN")] == "2.00x (b8/32)"
