"""GLUE's official metrics, in numpy (no scikit-learn/scipy dependency): accuracy, binary F1,
Matthews correlation, Pearson and Spearman correlation (the main scores are :mod:`ccbench.common.metrics`).

>>> round(matthews_corrcoef(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])), 6)
0.57735
>>> round(spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 25])), 6)
0.8
"""
from __future__ import annotations

import numpy as np


def accuracy(pred: np.ndarray, label: np.ndarray) -> float:
    """Share of exact matches, in [0, 1]."""
    return float((np.asarray(pred) == np.asarray(label)).mean())


def f1_binary(pred: np.ndarray, label: np.ndarray, positive: int = 1) -> float:
    """F1 of the ``positive`` class (GLUE MRPC), in [0, 1]; 0 when there is no true or predicted positive."""
    pred, label = np.asarray(pred) == positive, np.asarray(label) == positive
    tp = float((pred & label).sum())
    denom = float(pred.sum() + label.sum())
    return 2 * tp / denom if denom else 0.0


def matthews_corrcoef(pred: np.ndarray, label: np.ndarray) -> float:
    """Matthews correlation of binary predictions (GLUE CoLA), in [-1, 1]; 0 when undefined."""
    pred, label = np.asarray(pred).astype(bool), np.asarray(label).astype(bool)
    tp, tn = float((pred & label).sum()), float((~pred & ~label).sum())
    fp, fn = float((pred & ~label).sum()), float((~pred & label).sum())
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denom) if denom else 0.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom else 0.0


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (1-based)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of tie-averaged ranks)."""
    return pearson(_ranks(x), _ranks(y))


def glue_scores(task: str, pred: np.ndarray, label: np.ndarray) -> dict:
    """Every official metric of GLUE ``task`` (in %, correlations x 100) and ``main``: the task's main
    score from the metric registry (:mod:`ccbench.common.metrics`); ``KeyError`` for a task GLUE lacks."""
    from .metrics import GLUE_MAIN_SCORE, metric

    if task not in GLUE_MAIN_SCORE:
        raise KeyError(f"no GLUE metrics for task {task!r}")
    return metric(GLUE_MAIN_SCORE[task]).scores(pred, label)
