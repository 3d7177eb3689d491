"""Tiny record bodies and per-sample arrays for tests that need records but no training (no torch import,
so spawned worker processes start fast)."""
from __future__ import annotations

import numpy as np

TEXT_ENCODER = "minilm-l6"  # the cpu and smoke tiers' text backbone name (what text rows are admitted by)


def run_body(method: str = "dense", knob: tuple = ("none", None), task: str = "sst2", budget: str = "cpu",
             version: int | None = None, score: float = 80.0, seed: int = 0) -> dict:
    """A minimal `ccbench run` record body with every field the table needs; ``version``: the tier version
    measured under (default: the registered tier's current one)."""
    from ccbench.common import catalog
    from ccbench.common.method_meta import method_version

    if version is None:
        version = catalog.budgets().get(budget).version if budget in catalog.budgets() else 1
    methods = catalog.methods()
    task_version = catalog.tasks().get(task).version if task in catalog.tasks() else 1
    return {"task": {"name": task, "version": task_version, "modality": "text"},
            "method": {"name": method, "family": "dense" if method == "dense" else "depth",
                       "version": method_version(methods.metadata(method), "text") if method in methods else 1,
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


def valid_run(task: str = "sst2", n: int | None = None, seed: int = 0, method: str = "early-exit",
              knob: tuple = ("threshold", 0.8), rng_seed: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
    """A run record body and samples that pass every ``ccbench validate`` check on the cpu tier: the
    task's official eval split (hash and size from its spec), the tier's text encoder hash, the tier's
    training budget, audit and determinism evidence, a clean tree, 80 % of the samples right."""
    from ccbench.common import catalog

    spec, tier = catalog.tasks().get(task), catalog.budgets().get("cpu")
    n = spec.official_eval.n if n is None else n
    body = run_body(method=method, knob=knob, task=task, score=80.0, seed=seed)
    body["task"].update(data_hash=spec.official_eval.data_sha256[0], n_eval=n)
    body["backbone"]["sha256"] = tier.text.backbone_sha256
    body["budget"]["consumed"]["samples"] = tier.text.tasks[task].samples or 100_000
    body["budget"]["finetune"] = {"samples": body["budget"]["consumed"]["samples"]}
    body["git"] = {"commit": "c0" * 20, "dirty": False}
    body["method"]["provenance"] = {"origin": "builtin"}
    body["metrics"].update(executed_over_useful_plus_padding={"batch1": 1.0, "batchN": 1.004},
                           executed_gmacs={"batch_size": 8},
                           determinism={"samples": 32, "batch_size": 8, "batch1_vs_batchN_mismatches": 0,
                                        "repeat_mismatches": 0})
    rng = np.random.default_rng(rng_seed)
    label = rng.integers(0, 2, n).astype(np.int16)
    pred = np.where(rng.random(n) < 0.8, label, 1 - label).astype(np.int16)
    score = 100 * float((pred == label).mean())
    body["metrics"]["main_score"] = {"name": "accuracy", "value": score, "ci95": [score - 2, score + 2]}
    return body, {"ids": np.asarray([f"s{i}" for i in range(n)]), "label": label, "pred": pred}


def bypass_validation_gate(monkeypatch) -> None:
    """Rank every readable run record: for tests of the tables, site and faults, whose planted records carry
    no audit/determinism evidence. The gate itself is tested in tests/test_validation.py."""
    monkeypatch.setattr("ccbench.reporting.leaderboard._validated", lambda runs, checks: (runs, {}, []))
