"""Summary statistics: hand cases (the CI's level is checked in test_regressions and test_properties)."""
import numpy as np
import pytest
import torch

from ccbench.measurement.stats import bootstrap_ci, bootstrap_ci_metric, distribution


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


def test_metric_bootstrap_resamples_every_example_including_the_first():
    """Resample means of two examples 10 and 0 are 0, 5 or 10 (each index drawn from {0, 1}); with 4000
    resamples the 2.5 % and 97.5 % quantiles are the extremes 0 and 10 (an index range that missed the
    first example would give (0, 0))."""
    values = np.array([10.0, 0.0])
    assert bootstrap_ci_metric(lambda p, y: float(p.mean()), values, values, n_boot=4000) == (0.0, 10.0)


@pytest.mark.parametrize("level,z", [(0.5, 0.6745), (0.8, 1.2816), (0.95, 1.9600)])
def test_metric_bootstrap_interval_has_its_level(level, z):
    """The metric bootstrap of a proportion (400 examples, p = 0.5) is as wide as the normal
    approximation 2 z sqrt(p (1 - p) / n) at its level, within 5 %: the tails are (1 - level) / 2 each
    (a level-0.5 interval with tails of 1/6 would be 43 % wider, a 95 % one with tails of 1/60 9 % wider)."""
    correct = np.array([1] * 200 + [0] * 200)
    lo, hi = bootstrap_ci_metric(lambda p, y: float((p == y).mean()), correct, np.ones(400, dtype=int),
                                 n_boot=4000, level=level, seed=5)
    assert abs((hi - lo) / (2 * z * (0.25 / 400) ** 0.5) - 1) < 0.05
    assert lo < 0.5 < hi


def test_defaults_are_the_records_resample_counts_and_seed():
    """Records are computed with the defaults: 2000 resamples for a mean, 1000 for another metric, seed 0
    and a 95 % level; changing one silently changes every new record's interval for the same samples."""
    v = torch.arange(30.0) ** 1.5
    assert bootstrap_ci(v) == bootstrap_ci(v, n_boot=2000, level=0.95, seed=0)
    metric = lambda p, y: float(p.mean())  # noqa: E731
    x = np.arange(30.0) ** 1.5
    assert bootstrap_ci_metric(metric, x, x) == bootstrap_ci_metric(metric, x, x, n_boot=1000, level=0.95, seed=0)


def test_distribution_rounds_to_four_digits_by_default():
    """``digits`` defaults to 4 decimals."""
    assert distribution(torch.tensor([1.0 / 3, 2.0 / 3])) == {"mean": 0.5, "median": 0.3333, "p90": 0.6333,
                                                              "max": 0.6667}
