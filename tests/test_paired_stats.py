"""Paired statistics and ranking summaries (ccbench.reporting.paired, ccbench.reporting.ranking): hand-checked
numbers, and a planted difference found where a null one is not."""
from __future__ import annotations

import numpy as np
import pytest

from ccbench.reporting.paired import Bootstrap, aligned_predictions, bootstrap_p, difference, holm, interval, mcnemar_p
from ccbench.reporting.ranking import auc_weights, curve_auc, pareto_front, rank_stability


def _classifier(labels, accuracy, rng):
    """Predictions of a binary classifier right on a random ``accuracy`` share of ``labels``."""
    right = rng.random(len(labels)) < accuracy
    return np.where(right, labels, 1 - labels)


def test_mcnemar_matches_the_binomial_on_discordant_pairs():
    # 7 samples only a gets right, 2 only b: exact two-sided binomial p = 2 * P(X <= 2 | n=9, 1/2) = 2 * 46/512
    a = np.array([1] * 7 + [0] * 2 + [1] * 20 + [0] * 5, bool)
    b = np.array([0] * 7 + [1] * 2 + [1] * 20 + [0] * 5, bool)
    assert mcnemar_p(a, b) == pytest.approx(2 * 46 / 512)
    assert mcnemar_p(a, a) == 1.0


def test_holm_adjusts_step_down_and_skips_nan():
    reject, adjusted = holm([0.01, np.nan, 0.02, 0.04])
    # sorted 0.01, 0.02, 0.04 with m = 3: 0.03, 0.04, 0.04 (monotone)
    assert np.allclose(adjusted[[0, 2, 3]], [0.03, 0.04, 0.04]) and np.isnan(adjusted[1])
    assert reject.tolist() == [True, False, True, True]


def test_one_seed_accuracy_ci_is_the_sample_bootstrap():
    labels = np.array([0, 1] * 50)
    preds = labels.copy()
    preds[:20] = 1 - preds[:20]                       # 80 % right
    point, reps = Bootstrap(labels, n_boot=2000, seed=0).scores(preds[None], "top1", key="m")
    lo, hi = interval(reps)
    assert point == 80.0
    # the normal approximation: 80 +- 1.96 * sqrt(.8 * .2 / 100) * 100 = 80 +- 7.8
    assert lo == pytest.approx(72.2, abs=1.5) and hi == pytest.approx(87.8, abs=1.5)


def test_hierarchical_bootstrap_widens_with_seed_spread():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    same = np.stack([_classifier(labels, 0.8, np.random.default_rng(1))] * 3)   # three identical seeds
    spread = np.stack([_classifier(labels, a, np.random.default_rng(s)) for s, a in enumerate((0.6, 0.8, 0.95))])
    boot = Bootstrap(labels, n_boot=500, seed=0)
    w_same = np.subtract(*interval(boot.scores(same, "accuracy", "same")[1])[::-1])
    w_spread = np.subtract(*interval(boot.scores(spread, "accuracy", "spread")[1])[::-1])
    assert w_spread > 2 * w_same


def test_non_mean_metrics_get_a_bootstrap_ci():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    preds = np.stack([_classifier(labels, 0.85, np.random.default_rng(s)) for s in range(2)])
    boot = Bootstrap(labels, n_boot=200, seed=0)
    for name in ("matthews", "mean of f1 and accuracy"):
        point, reps = boot.scores(preds, name, "m")
        lo, hi = interval(reps)
        assert lo < point < hi and hi - lo > 2


def test_a_planted_difference_is_significant_and_a_null_one_is_not():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    base = _classifier(labels, 0.80, np.random.default_rng(1))
    better = base.copy()
    fix = np.flatnonzero(base != labels)[:120]          # 6 points better on the same samples
    better[fix] = labels[fix]
    null = _classifier(labels, 0.80, np.random.default_rng(2))
    boot = Bootstrap(labels, n_boot=1000, seed=0)
    real = difference(boot, better[None], base[None], "accuracy", "better", "base")
    none = difference(boot, null[None], base[None], "accuracy", "null", "base")
    assert real.test == none.test == "mcnemar"
    assert real.value == pytest.approx(6.0) and real.lo > 0 and real.p < 1e-6
    assert none.lo < 0 < none.hi and none.p > 0.05
    reject, _ = holm([real.p, none.p])
    assert reject.tolist() == [True, False]
    # with three seeds each the bootstrap decides, and agrees
    seeds_better = np.stack([better, better, base])
    seeds_base = np.stack([base, null, base])
    d = difference(boot, seeds_better, seeds_base, "accuracy", "b3", "a3")
    assert d.test == "bootstrap" and d.lo > 0 and d.p < 0.05


def test_bootstrap_p_counts_both_tails():
    assert bootstrap_p(np.r_[np.ones(90), -np.ones(9)]) == pytest.approx(2 * 10 / 100)


def test_auc_is_linear_in_the_scores_and_refuses_short_curves():
    w = auc_weights([25.0, 50.0, 75.0])
    assert w.sum() == pytest.approx(1.0)              # a flat curve's mean is its height
    # replicates pass through: the AUC of each column
    reps = np.array([[50.0, 40.0], [60.0, 60.0], [70.0, 70.0]])
    out = curve_auc([25.0, 50.0, 75.0], reps, np.array([80.0, 80.0]))
    assert out.tolist() == pytest.approx([65.0, 65.0 - 12.5 * 10 / 75])
    assert np.isnan(curve_auc([60.0, 70.0], [50.0, 60.0], 80.0))
    # points at or beyond dense do not count; dense closes the curve at 100 %
    assert curve_auc([25.0, 120.0], [50.0, 99.0], 80.0) == pytest.approx(65.0)


def test_rank_intervals_and_probability_first():
    points = np.array([70.0, 69.0, 50.0])
    rng = np.random.default_rng(0)
    reps = points[:, None] + rng.normal(0, [[1.0], [1.0], [0.1]], (3, 2000))
    df = rank_stability(["a", "b", "c"], points, reps)
    a, b, c = (df[df.name == n].iloc[0] for n in "abc")
    assert (a["rank"], b["rank"], c["rank"]) == (1, 2, 3)
    assert (a.rank_lo, a.rank_hi, b.rank_lo, b.rank_hi) == (1, 2, 1, 2)   # a and b overlap
    assert c.rank_lo == c.rank_hi == 3 and c.p_first == 0
    assert 0.6 < a.p_first < 0.9 and a.p_first + b.p_first == pytest.approx(1.0)


def test_pareto_front_ties_and_domination():
    front = pareto_front([10, 10, 20, 30, 30], [50, 40, 50, 60, 60])
    assert front.tolist() == [True, False, False, True, True]


def test_aligned_predictions_orders_by_id_and_refuses_other_samples():
    s0 = {"ids": np.array(["b", "a"]), "label": np.array([1, 0]), "pred": np.array([1, 1])}
    s1 = {"ids": np.array(["a", "b"]), "label": np.array([0, 1]), "pred": np.array([0, 0])}
    ids, labels, preds = aligned_predictions([s0, s1])
    assert ids.tolist() == ["a", "b"] and labels.tolist() == [0, 1] and preds.tolist() == [[1, 1], [0, 0]]
    with pytest.raises(ValueError):
        aligned_predictions([s0, {**s1, "ids": np.array(["a", "c"])}])
