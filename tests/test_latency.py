"""Interleaved latency on a fake clock: the speedup's direction, the rotation, and the sanity check
that flags a disturbed timing (dense against itself, spread between repeats)."""
import torch

import ccbench.latency as latency
from ccbench.latency import interleaved_latency


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
    from ccbench.records import commit_record, finalize
    from ccbench.tables import load_table, render
    from record_helpers import run_body, samples

    for method, ok in (("dense", True), ("early-exit", False)):
        body = run_body(method, knob=("none", None) if method == "dense" else ("threshold", 0.5))
        body["metrics"]["latency"]["batchN"]["check"] = {"ok": ok, "warning": None if ok else "latency unreliable"}
        commit_record(finalize(body), samples(), tmp_path)
    text = render(load_table(tmp_path), note=False)
    dense, early = (next(line for line in text.splitlines() if f"| {m} " in line) for m in ("dense", "early-exit"))
    assert "?" not in dense
    assert "1.00x ?" in early and "1.00x (b4) ?" in early
