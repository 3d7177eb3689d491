"""Tiny record bodies and per-sample arrays for tests that need records but no training (no torch import,
so spawned worker processes start fast)."""
from __future__ import annotations

import numpy as np

TEXT_ENCODER = "minilm-l6"  # the cpu and smoke tiers' text backbone name (what text rows are admitted by)


def run_body(method: str = "dense", knob: tuple = ("none", None), task: str = "sst2", budget: str = "cpu",
             version: int = 1, score: float = 80.0, seed: int = 0) -> dict:
    """A minimal `ccbench run` record body with every field the table needs."""
    return {"task": {"name": task, "version": 1, "modality": "text"},
            "method": {"name": method, "family": "dense" if method == "dense" else "depth",
                       "knob": {"name": knob[0], "value": knob[1], "direction": "none", "chosen_by": "user"}},
            "budget": {"name": budget, "version": version, "consumed": {"samples": 16}},
            "seed": seed, "backbone": {"sha256": "ab" * 32, "file": TEXT_ENCODER},
            "metrics": {"main_score": {"name": "accuracy", "value": score, "ci95": [score - 1, score + 1]},
                        "useful_gmacs": {"mean": 0.5}, "useful_fraction_of_dense": 1.0,
                        "executed_over_useful": {"batch1": 1.0}, "flag_executed_exceeds_useful": False,
                        "latency": {"batch1": {"speedup": 1.0, "efficiency": 1.0},
                                    "batchN": {"speedup": 1.0, "efficiency": 1.0, "batch_size": 4}}},
            "date": "2026-01-01T00:00:00+00:00"}


def samples(pred=(1, 0)) -> dict[str, np.ndarray]:
    """Per-sample arrays of two eval samples."""
    return {"ids": np.asarray(["a", "b"]), "label": np.array([1, 0], dtype=np.int16),
            "pred": np.array(pred, dtype=np.int16)}
