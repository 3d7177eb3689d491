"""Summary statistics: hand cases (the CI's level is checked in test_regressions and test_properties)."""
import numpy as np
import pytest
import torch

from ccbench.stats import bootstrap_ci, bootstrap_ci_metric, distribution


def test_distribution_hand_case():
    v = torch.arange(1.0, 11.0)                       # 1..10
    # median of an even count is the lower middle value (torch), p90 interpolates 9 + 0.1 * (10 - 9)
    assert distribution(v) == {"mean": 5.5, "median": 5.0, "p90": 9.1, "max": 10.0}
    assert distribution(v, scale=2.0, digits=1) == {"mean": 11.0, "median": 10.0, "p90": 18.2, "max": 20.0}
    assert distribution(torch.tensor([1.0 / 3]), digits=2)["mean"] == 0.33


def test_bootstrap_is_seeded_and_a_constant_has_a_zero_width_interval():
    v = torch.arange(40.0) ** 1.5                     # distinct values: another seed moves the quantiles
    assert bootstrap_ci(v, seed=3) == bootstrap_ci(v, seed=3)
    assert bootstrap_ci(v, seed=3) != bootstrap_ci(v, seed=4)
    assert bootstrap_ci(torch.full((5,), 2.5)) == (2.5, 2.5)
    lo, hi = bootstrap_ci(torch.tensor([0.0, 10.0]), n_boot=4000)
    assert (lo, hi) == (0.0, 10.0)                    # resample means of two values: 0, 5 or 10


def test_metric_bootstrap_skips_resamples_where_the_metric_is_undefined():
    calls = []

    def metric(p, y):
        calls.append(len(p))
        return float("nan") if (y == y[0]).all() else float((p == y).mean())

    pred, label = np.array([1, 0, 1, 0]), np.array([1, 0, 0, 1])
    lo, hi = bootstrap_ci_metric(metric, pred, label, n_boot=300, seed=1)
    assert len(calls) == 300 and set(calls) == {4}
    assert lo < 0.5 < hi
    # resamples of one label only are skipped, not counted as 0: an all-right prediction keeps [1, 1]
    assert bootstrap_ci_metric(metric, label, label, n_boot=300, seed=1) == (1.0, 1.0)
