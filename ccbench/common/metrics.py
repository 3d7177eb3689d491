"""Score metrics keyed by a task's ``main_score`` (``tasks/*.yaml``), in numpy: what a text task is
scored with, and how the tables treat the score. A plugin adds one with :func:`register_metric`.

Each metric maps ``pred [S]`` and ``label [S]`` (class indices, or regression values) to its components
in % (correlations x 100, as GLUE reports them) and ``main``, the score recorded as
``metrics.main_score``. ``per_sample_mean`` says whether the score is a mean of per-sample correctness
(then a CI can be pooled across seeds from the per-sample files).

>>> import numpy as np
>>> metric("mean of f1 and accuracy").scores(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
{'f1': 66.66666666666666, 'accuracy': 75.0, 'main': 70.83333333333333}
>>> metric("accuracy").per_sample_mean, metric("matthews").per_sample_mean
(True, False)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import unknown_name_error
from .text_metrics import accuracy, f1_binary, matthews_corrcoef, pearson, spearman


@dataclass(frozen=True)
class Metric:
    """A task's main score: ``components(pred, label) -> {name: value in %}`` (the first component is
    the main score unless ``main`` combines several), whether it is a per-sample mean, and whether
    higher is better."""

    name: str
    components: Callable[[np.ndarray, np.ndarray], dict]
    per_sample_mean: bool
    higher_is_better: bool = True

    def scores(self, pred: np.ndarray, label: np.ndarray) -> dict:
        """Every component in % and ``main`` (their mean when there are several)."""
        out = self.components(pred, label)
        values = list(out.values())
        return {**out, "main": values[0] if len(values) == 1 else sum(values) / len(values)}

    def main(self, pred: np.ndarray, label: np.ndarray) -> float:
        """The main score in % of ``pred [S]`` against ``label [S]``."""
        return self.scores(pred, label)["main"]


_METRICS: dict[str, Metric] = {}


def register_metric(m: Metric) -> Metric:
    """Add ``m`` under ``m.name`` (the ``main_score`` a task spec names); returns it."""
    _METRICS[m.name] = m
    return m


def metric(name: str) -> Metric:
    """The registered metric ``name``; an unknown name is a :class:`~ccbench.common.errors.UserError` with
    the known ones."""
    if name not in _METRICS:
        raise unknown_name_error("main score", name, _METRICS)
    return _METRICS[name]


def known() -> list[str]:
    """Registered metric names, sorted."""
    return sorted(_METRICS)


def _acc(pred, label) -> dict:
    return {"accuracy": 100 * accuracy(pred, label)}


register_metric(Metric("top1", lambda p, y: {"top1": 100 * accuracy(p, y)}, per_sample_mean=True))
register_metric(Metric("accuracy", _acc, per_sample_mean=True))
register_metric(Metric("matthews", lambda p, y: {"matthews": 100 * matthews_corrcoef(p, y)}, per_sample_mean=False))
register_metric(Metric("mean of f1 and accuracy",
                       lambda p, y: {"f1": 100 * f1_binary(p, y), **_acc(p, y)}, per_sample_mean=False))
register_metric(Metric("mean of pearson and spearman",
                       lambda p, y: {"pearson": 100 * pearson(p, y), "spearman": 100 * spearman(p, y)},
                       per_sample_mean=False))

# GLUE's tasks and their official main scores (as the task specs name them)
GLUE_MAIN_SCORE = {"sst2": "accuracy", "rte": "accuracy", "cola": "matthews", "mrpc": "mean of f1 and accuracy",
                   "stsb": "mean of pearson and spearman"}
