"""Interleaved latency on a fake clock: the speedup's direction, the rotation, and the sanity check
that flags a disturbed timing (dense against itself, spread between repeats)."""
import torch

import ccbench.measurement.latency as latency
from ccbench.measurement.latency import interleaved_latency


class FakeClock:
    """A clock that advances only when a fake model runs: each call costs what its model says."""

    def __init__(self):
        self.now = 0.0
        self.log = []

    def __call__(self) -> float:
        return self.now

    def model(self, name: str, costs_ms):
        """A callable that takes ``costs_ms(call_index)`` milliseconds of fake time."""
        calls = {"n": 0}

        def fn(x):
            self.now += costs_ms(calls["n"]) / 1e3
            self.log.append(name)
            calls["n"] += 1
        return fn


def _run(monkeypatch, method_ms, dense_ms, n=6, warmup=1):
    clock = FakeClock()
    monkeypatch.setattr(latency, "_clock", clock)
    res = interleaved_latency(clock.model("method", method_ms), clock.model("dense", dense_ms),
                              [torch.zeros(1, 3)] * n, warmup=warmup)
    return res, clock


def test_speedup_is_dense_time_over_method_time(monkeypatch):
    res, _ = _run(monkeypatch, lambda i: 2.0, lambda i: 8.0)
    assert res["speedup"] == 4.0                    # 8 ms / 2 ms; swapped it would be 0.25
    assert res["method"]["median_ms"] == 2.0 and res["dense"]["median_ms"] == 8.0
    assert res["calls"] == 6 and res["batch_size"] == 1
    assert res["check"] == {"dense_vs_dense_speedup": 1.0, "repeat_ratio_p90": 1.0, "ok": True, "warning": None}


def test_order_rotates_and_dense_runs_twice_per_input(monkeypatch):
    _, clock = _run(monkeypatch, lambda i: 1.0, lambda i: 1.0, n=3, warmup=1)
    timed = clock.log[2:]                            # after the warm-up (one method, one dense call)
    assert timed == ["method", "dense", "dense", "dense", "dense", "method", "dense", "method", "dense"]


def test_one_disturbed_call_flags_the_timing(monkeypatch):
    # the 8th dense call (warm-up included) is hit by load: 300 ms instead of 3 ms
    res, _ = _run(monkeypatch, lambda i: 3.0, lambda i: 300.0 if i == 8 else 3.0, n=9)
    check = res["check"]
    assert not check["ok"]
    assert check["repeat_ratio_p90"] == 100.0
    assert "re-measure on an idle machine" in check["warning"]


def test_a_flagged_timing_is_marked_in_the_table(tmp_path):
    from ccbench.reporting.records import commit_record, finalize
    from ccbench.reporting.tables import load_table, render
    from record_helpers import run_body, samples

    for method, ok in (("dense", True), ("early-exit", False)):
        body = run_body(method, knob=("none", None) if method == "dense" else ("threshold", 0.5))
        body["metrics"]["latency"]["batchN"]["check"] = {"ok": ok, "warning": None if ok else "latency unreliable"}
        commit_record(finalize(body), samples(), tmp_path)
    text = render(load_table(tmp_path), note=False)
    dense, early = (next(line for line in text.splitlines() if f"| {m} " in line) for m in ("dense", "early-exit"))
    assert "?" not in dense
    cells = [c.strip() for c in early.split("|")]
    assert "1.00x (b4) ?" in cells and "1.00x" in cells   # only batch N's timing was disturbed: b1 stays unmarked


def test_summaries_by_hand_median_p90_mean_and_speedup(monkeypatch):
    """Timed method calls cost 1/3, 2/3, ..., 10/3 ms (the warm-up call costs 0), dense 8 ms each:
    median (5/3 + 6/3) / 2 = 1.8333, p90 = the 10th of 10 sorted values (index int(0.9 x 10) = 9) =
    3.3333, mean 55/30 = 1.8333 (4 digits); speedup 80 / (55/3) = 4.3636."""
    res, _ = _run(monkeypatch, lambda i: i / 3, lambda i: 8.0, n=10)
    assert res["method"] == {"median_ms": 1.8333, "p90_ms": 3.3333, "mean_ms": 1.8333}
    assert res["speedup"] == 4.3636


def test_p90_of_nine_values_is_the_ninth():
    """Nine values 1..9: int(0.9 x 9) = 8, the largest (clamped to the last index)."""
    assert latency._summary([float(v) for v in range(9, 0, -1)])["p90_ms"] == 9.0
    assert latency._summary([2.0])["p90_ms"] == 2.0


def test_check_accepts_its_range_ends_and_refuses_beyond():
    """Dense against itself within [0.9, 1.1] (ends included) and repeats within 1.5x (included) are
    fine; 0.89x, 1.11x or a 1.51x repeat spread is flagged with its reason."""
    assert latency._check([9.0], [10.0])["ok"] and latency._check([11.0], [10.0])["ok"]
    spread = latency._check([15.0, 10.0], [10.0, 15.0])
    assert spread["ok"] and spread["repeat_ratio_p90"] == 1.5 and spread["dense_vs_dense_speedup"] == 1.0
    low = latency._check([8.9], [10.0])
    assert not low["ok"] and "dense timed against itself gave 0.890x (expected 0.9-1.1)" in low["warning"]
    assert not latency._check([11.1], [10.0])["ok"]
    wide = latency._check([15.1, 10.0], [10.0, 15.1])
    assert not wide["ok"] and "differ by 1.51x at p90 (expected <= 1.5)" in wide["warning"]
    assert wide["dense_vs_dense_speedup"] == 1.0


def test_repeat_spread_is_taken_at_the_90th_percentile():
    """Ten inputs, one with a 3x spread between dense's two timings (30 vs 10 ms): sorted ratios are
    nine 1.0 then 3.0, and the p90 index int(0.9 x 10) = 9 picks 3.0 (flagged); the control is
    120 ms / 100 ms = 1.2."""
    d = [30.0] + [10.0] * 9
    c = [10.0] + [10.0] * 9
    check = latency._check(d, c)
    assert check["repeat_ratio_p90"] == 3.0 and not check["ok"]
    assert check["dense_vs_dense_speedup"] == 1.2  # 120 / 100: also outside the control range


def test_warm_up_covers_the_first_inputs_and_each_new_shape(monkeypatch):
    """``warmup`` = 0 still warms one input; an input of a shape not seen in the warm-up (a longer text
    batch) is warmed once too: inputs of shapes A, A, B -> warm-up on A and B, then 3 timed rounds."""
    for warmup in (0, 1):
        clock = FakeClock()
        monkeypatch.setattr(latency, "_clock", clock)
        inputs = [torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1, 5)]
        interleaved_latency(clock.model("method", lambda i: 1.0), clock.model("dense", lambda i: 1.0), inputs,
                            warmup=warmup)
        assert clock.log[:4] == ["method", "dense", "method", "dense"] and len(clock.log) == 4 + 9
    clock = FakeClock()
    monkeypatch.setattr(latency, "_clock", clock)
    interleaved_latency(clock.model("method", lambda i: 1.0), clock.model("dense", lambda i: 1.0),
                        [torch.zeros(1, 3)] * 3, warmup=2)
    assert len(clock.log) == 2 * 2 + 9  # two warm-up inputs of one shape, no extra


def test_check_values_have_four_digits():
    """Dense 7 ms then 3 ms as its control: control 7/3 = 2.3333 and repeat ratio 7/3 = 2.3333."""
    check = latency._check([7.0], [3.0])
    assert check["dense_vs_dense_speedup"] == 2.3333 and check["repeat_ratio_p90"] == 2.3333


def test_an_input_of_a_new_shape_right_after_the_warm_up_is_warmed_too(monkeypatch):
    """Shapes A, B, B with ``warmup`` = 1: the warm-up covers A (the first input) and then B, once."""
    clock = FakeClock()
    monkeypatch.setattr(latency, "_clock", clock)
    interleaved_latency(clock.model("method", lambda i: 1.0), clock.model("dense", lambda i: 1.0),
                        [torch.zeros(1, 3), torch.zeros(1, 5), torch.zeros(1, 5)], warmup=1)
    assert len(clock.log) == 2 * 2 + 9


def test_a_single_input_is_timed_once_at_its_batch_size(monkeypatch):
    """One input of batch 4: one timed round (method, dense, control) after its warm-up."""
    clock = FakeClock()
    monkeypatch.setattr(latency, "_clock", clock)
    res = interleaved_latency(clock.model("method", lambda i: 1.0), clock.model("dense", lambda i: 2.0),
                              [torch.zeros(4, 3)], warmup=1)
    assert res["batch_size"] == 4 and res["calls"] == 1 and res["speedup"] == 2.0 and len(clock.log) == 2 + 3
