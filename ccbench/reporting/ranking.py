"""Summaries that rank methods (numpy, scipy; no torch): the area under a method's score-compute curve,
rank intervals from bootstrap replicates, and the Pareto front.

Compute is in % of dense useful MACs; scores in % (:mod:`ccbench.common.metrics`).

>>> round(float(curve_auc([25.0, 50.0], [50.0, 60.0], 80.0)), 9)  # (25 x 55 + 50 x 70) / 75: trapezoids, then the mean
65.0
>>> round(float(curve_auc([26.0], [50.0], 80.0)), 9)  # within 2 points of 25 %: held flat from 26 down to 25
64.8
>>> float(curve_auc([40.0], [50.0], 80.0))  # starts at 40 %: covers too little of [25, 100] to be summarised
nan
>>> pareto_front([30.0, 50.0, 60.0, 100.0], [60.0, 70.0, 65.0, 80.0]).tolist()
[True, True, False, True]
"""
from __future__ import annotations

import numpy as np
import pandas as pd

LOW, HIGH = 25.0, 100.0   # the compute range a curve is summarised over (% of dense)
# the narrower ranges: every method whose curve reaches each of these lows is also ranked over [low, HIGH], so a
# method that cannot go down to 25 % (token pruning with dense early blocks at 30 %, MoE with dense attention at
# 73 %) is still ranked at equal compute with every method that reaches as far
FURTHER_LOWS = (50.0, 75.0)
GRID = (25, 50, 75)       # the compute grid's targets (% of dense)
GRID_TOLERANCE = 2.0      # a grid point is reached within this many points of its target


def auc_weights(compute: list[float], low: float = LOW, high: float = HIGH,
                tolerance: float = GRID_TOLERANCE) -> np.ndarray | None:
    """Weights ``w [K + 1]`` such that ``w @ [scores..., dense]`` is the mean score over
    ``[low, high]`` % of dense of the curve through a method's points (``compute [K]`` %, only those below
    ``high`` count) and dense at ``high``, linearly interpolated (a trapezoid integral divided by the
    width). A curve whose cheapest point lies within ``tolerance`` above ``low`` is held flat down to
    ``low``; one that starts higher covers too little of the range, and there is no weight (``None``).
    Points of equal compute are averaged. Linear in the scores, so bootstrap replicates map through it."""
    from scipy.integrate import trapezoid

    x = np.asarray(compute, dtype=np.float64)
    use = np.flatnonzero(x < high)
    if len(use) == 0 or x[use].min() > low + tolerance:
        return None
    knots = np.unique(x[use])
    # basis: each knot's score as the mean of its points' scores; then dense at `high`
    basis = np.zeros((len(knots) + 1, len(x) + 1))
    for i, k in enumerate(knots):
        same = use[x[use] == k]
        basis[i, same] = 1.0 / len(same)
    basis[-1, -1] = 1.0
    xs = np.append(knots, high)
    nodes = np.unique(np.clip(np.concatenate([[low], xs, [high]]), low, high))
    # the curve at each node, as weights on the basis (np.interp of each basis vector: linear in scores)
    interp = np.stack([np.interp(nodes, xs, np.eye(len(xs))[j]) for j in range(len(xs))], axis=1)
    node_weights = np.array([trapezoid(np.eye(len(nodes))[i], nodes) for i in range(len(nodes))])
    return node_weights @ interp @ basis / (high - low)


def curve_auc(compute, scores, dense, low: float = LOW, high: float = HIGH):
    """Mean score over ``[low, high]`` % of dense of the curve through ``(compute [K], scores [K, ...])``
    and ``dense [...]`` at ``high`` (see :func:`auc_weights`); NaN when the curve does not reach
    ``low``. Extra trailing axes (bootstrap replicates) are carried through."""
    w = auc_weights(compute, low, high)
    stacked = np.concatenate([np.asarray(scores, dtype=np.float64).reshape(len(compute), -1),
                              np.asarray(dense, dtype=np.float64).reshape(1, -1)])
    out = np.full(stacked.shape[1], np.nan) if w is None else w @ stacked
    return out[0] if np.ndim(dense) == 0 else out


def rank_stability(names: list[str], points: np.ndarray, reps: np.ndarray, level: float = 0.95) -> pd.DataFrame:
    """Ranks with their bootstrap uncertainty (as MTEB's rank-stability analysis): ``points [M]`` the
    methods' summaries (higher is better), ``reps [M, B]`` their bootstrap replicates drawn on shared
    resamples. Columns: ``rank`` (of the point estimate; ties share the best rank), ``rank_lo`` /
    ``rank_hi`` (the central ``level`` interval of the rank over replicates: the best and worst plausible
    rank), ``p_first`` (share of replicates in which the method ranks first), sorted by rank.

    >>> df = rank_stability(["a", "b"], np.array([2.0, 1.0]), np.array([[2.0, 2.0, 0.5], [1.0, 1.0, 1.0]]))
    >>> df[["name", "rank", "p_first"]].round(3).values.tolist()
    [['a', 1, 0.667], ['b', 2, 0.333]]
    """
    from scipy.stats import rankdata

    points, reps = np.asarray(points, dtype=np.float64), np.asarray(reps, dtype=np.float64)
    rank = rankdata(-points, method="min").astype(int)
    rep_ranks = rankdata(-reps, method="min", axis=0)                                  # [M, B]
    alpha = (1 - level) / 2
    df = pd.DataFrame({"name": names, "value": points, "rank": rank,
                       "rank_lo": np.floor(np.quantile(rep_ranks, alpha, axis=1)).astype(int),
                       "rank_hi": np.ceil(np.quantile(rep_ranks, 1 - alpha, axis=1)).astype(int),
                       "p_first": (rep_ranks == 1).mean(axis=1)})
    return df.sort_values(["rank", "name"], kind="stable").reset_index(drop=True)


def pareto_front(compute, scores) -> np.ndarray:
    """Which points ``(compute [K], scores [K])`` are on the Pareto front (no other point has at most
    the compute and at least the score, one of them strictly), ``[K]`` bool."""
    c, s = np.asarray(compute, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    dominated = ((c[None, :] <= c[:, None]) & (s[None, :] >= s[:, None])
                 & ((c[None, :] < c[:, None]) | (s[None, :] > s[:, None])))
    return ~dominated.any(axis=1)
