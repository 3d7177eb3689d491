"""Wall-clock latency of a method against the dense model, timed interleaved in one process.

Each input is run by both models back to back (the order alternates), so drifts in machine load hit
both alike. Realized speedup = total dense time / total method time over the same inputs; ideal
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


def _timed(fn: Callable[[torch.Tensor], object], x: torch.Tensor, device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn(x)
    _sync(device)
    return time.perf_counter() - t0


def _summary(ms: list[float]) -> dict:
    ordered = sorted(ms)
    return {"median_ms": round(statistics.median(ms), 4),
            "p90_ms": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 4),
            "mean_ms": round(statistics.fmean(ms), 4)}


@torch.inference_mode()
def interleaved_latency(method: Callable[[torch.Tensor], object], dense: Callable[[torch.Tensor], object],
                        inputs: list[torch.Tensor], warmup: int, device: str = "cpu") -> dict:
    """Time ``method`` and ``dense`` on each tensor of ``inputs`` (same batch size), alternating
    which goes first. Returns per-call latency summaries (ms) for both and the realized speedup
    ``sum(dense) / sum(method)``.

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
    m_ms, d_ms = [], []
    for i, x in enumerate(inputs):
        if i % 2:
            d_ms.append(_timed(dense, x, device) * 1e3)
            m_ms.append(_timed(method, x, device) * 1e3)
        else:
            m_ms.append(_timed(method, x, device) * 1e3)
            d_ms.append(_timed(dense, x, device) * 1e3)
    return {"batch_size": int(inputs[0].shape[0]), "calls": len(inputs), "method": _summary(m_ms),
            "dense": _summary(d_ms), "speedup": round(sum(d_ms) / sum(m_ms), 4)}
