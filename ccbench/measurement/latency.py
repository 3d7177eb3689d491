"""Wall-clock latency of a method against the dense model, timed interleaved in one process.

Each input is run by both models back to back, and by the dense model once more as a control (the
order rotates), so drifts in machine load hit both alike and a timing disturbed by load is flagged. Realized speedup = total dense time / total method time over the same inputs; ideal
speedup = dense useful MACs / method useful MACs; efficiency = realized / ideal.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


_clock = time.perf_counter  # seconds; replaced by a fake clock in tests


def _timed(fn: Callable[[torch.Tensor], object], x: torch.Tensor, device: str) -> float:
    _sync(device)
    t0 = _clock()
    fn(x)
    _sync(device)
    return _clock() - t0


def _summary(ms: list[float]) -> dict:
    ordered = sorted(ms)
    return {"median_ms": round(statistics.median(ms), 4),
            "p90_ms": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 4),
            "mean_ms": round(statistics.fmean(ms), 4)}


CONTROL_RANGE = (0.9, 1.1)   # dense timed against itself must come out within this speedup
MAX_REPEAT_RATIO = 1.5       # p90 over inputs of max/min of dense's two timings of the same input


def _check(d_ms: list[float], c_ms: list[float]) -> dict:
    """Sanity of a timing run from dense's two timings of each input (``d_ms``, ``c_ms``, ms):
    the dense-vs-dense control speedup, the p90 ratio between the two repeats, and ``ok`` with a
    ``warning`` when either is out of range (a loaded machine, frequency scaling, swapping).

    >>> _check([10.0, 10.0, 11.0], [10.0, 10.5, 10.0])["ok"]
    True
    >>> c = _check([10.0, 10.0, 10.0, 10.0], [10.0, 10.0, 10.0, 4000.0])
    >>> c["ok"], c["dense_vs_dense_speedup"]
    (False, 0.0099)
    """
    control = sum(d_ms) / sum(c_ms)
    ratios = sorted(max(a, b) / min(a, b) for a, b in zip(d_ms, c_ms))
    p90 = ratios[min(len(ratios) - 1, int(0.9 * len(ratios)))]
    problems = []
    if not CONTROL_RANGE[0] <= control <= CONTROL_RANGE[1]:
        problems.append(f"dense timed against itself gave {control:.3f}x (expected {CONTROL_RANGE[0]}-{CONTROL_RANGE[1]})")
    if p90 > MAX_REPEAT_RATIO:
        problems.append(f"two timings of the same input differ by {p90:.2f}x at p90 (expected <= {MAX_REPEAT_RATIO})")
    warning = ("latency unreliable: " + "; ".join(problems) + "; re-measure on an idle machine") if problems else None
    return {"dense_vs_dense_speedup": round(control, 4), "repeat_ratio_p90": round(p90, 4),
            "ok": not problems, "warning": warning}


@torch.inference_mode()
def interleaved_latency(method: Callable[[torch.Tensor], object], dense: Callable[[torch.Tensor], object],
                        inputs: list[torch.Tensor], warmup: int, device: str = "cpu") -> dict:
    """Time ``method`` and ``dense`` on each tensor of ``inputs`` (same batch size), plus ``dense``
    a second time as a control, rotating which goes first. Returns per-call latency summaries (ms)
    for both, the realized speedup ``sum(dense) / sum(method)`` and ``check`` (:func:`_check`: the
    dense-vs-dense control and the spread between repeats, with a warning when the timing is not
    trustworthy).

    Untimed warm-up: the first ``warmup`` inputs, plus one input of every other shape (text batches
    differ in length, and the first call at a new shape pays one-off kernel set-up that would land
    on whichever model happened to run first)."""
    seen = {tuple(x.shape) for x in inputs[:max(warmup, 1)]}
    extra = []
    for x in inputs:
        if tuple(x.shape) not in seen:
            seen.add(tuple(x.shape))
            extra.append(x)
    for x in list(inputs[:max(warmup, 1)]) + extra:
        method(x)
        dense(x)
    times: dict[str, list[float]] = {"method": [], "dense": [], "control": []}
    fns = {"method": method, "dense": dense, "control": dense}
    order = ["method", "dense", "control"]
    for i, x in enumerate(inputs):
        for name in order[i % 3:] + order[:i % 3]:
            times[name].append(_timed(fns[name], x, device) * 1e3)
    m_ms, d_ms = times["method"], times["dense"]
    return {"batch_size": int(inputs[0].shape[0]), "calls": len(inputs), "method": _summary(m_ms),
            "dense": _summary(d_ms), "speedup": round(sum(d_ms) / sum(m_ms), 4),
            "check": _check(d_ms, times["control"])}
