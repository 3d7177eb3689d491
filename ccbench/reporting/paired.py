"""Paired statistics over eval samples and seeds (numpy, scipy, statsmodels; no torch).

Every method on a task is scored on the same eval samples, so comparisons are paired: one
:class:`Bootstrap` draws the resampled eval sets once, and every row of a task is scored on those same
draws. A row is hierarchical: each replicate first resamples the row's seeds (with replacement), then
scores each drawn seed on the replicate's resampled eval samples and averages. The eval samples are one
draw shared by all seeds and methods, so one sample resample per replicate serves them all; that is what
keeps a difference of two rows paired.

Scores are in % (correlations x 100) through :mod:`ccbench.common.metrics`; a metric that is a mean of
per-sample correctness (top-1, accuracy) is bootstrapped exactly and fast through resample counts, any
other (F1, Matthews, correlations) by recomputing the metric on each resample.

>>> labels = np.array([0, 1, 0, 1])
>>> boot = Bootstrap(labels, n_boot=200, seed=0)
>>> point, reps = boot.scores(np.array([[0, 1, 0, 0]]), "top1", key="a")
>>> point, reps.shape
(75.0, (200,))
>>> holm([0.01, 0.04, 0.03])[1].round(2).tolist()   # Holm: p_(i) x (m - i + 1), made monotone
[0.03, 0.06, 0.06]
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ccbench.common.metrics import metric

LEVEL = 0.95
ALPHA = 0.05
SIGNIFICANT = ("significant: the difference's p-value, Holm-corrected across every comparison of the table, "
               "is below 0.05 (McNemar's exact test on paired predictions for accuracy with one seed each; "
               "otherwise the paired hierarchical bootstrap over seeds and eval samples)")


class Bootstrap:
    """Resampled eval sets of one task: ``n_boot`` draws of ``len(labels)`` sample indices (with
    replacement), shared by every row scored through this object; ``labels [N]`` in the eval order that
    every row's predictions follow."""

    def __init__(self, labels: np.ndarray, n_boot: int = 1000, seed: int = 0, stream: str | None = None):
        self.labels = np.asarray(labels)
        self.n_boot, self.seed = n_boot, seed
        n = len(self.labels)
        # another eval set (``stream``, e.g. a shifted split of other samples) gets its own sample draws; the
        # seed draws depend on ``seed`` and the row alone, so a row's seeds pair across the two sets
        rng = np.random.default_rng(seed if stream is None else [seed, zlib.crc32(stream.encode())])
        self.index = rng.integers(0, n, (n_boot, n), dtype=np.int64)  # [B, N]

    def _seed_draws(self, n_seeds: int, key: str) -> np.ndarray:
        """Which seeds each replicate takes, ``[B, S]``: drawn from a generator keyed by ``key`` (the row),
        so a row's draws do not depend on which other rows are scored or in what order."""
        rng = np.random.default_rng([self.seed, zlib.crc32(key.encode())])
        return rng.integers(0, n_seeds, (self.n_boot, n_seeds))

    def scores(self, preds: np.ndarray, metric_name: str, key: str) -> tuple[float, np.ndarray]:
        """The row's score (mean over seeds of the metric on every eval sample, in %) and its ``n_boot``
        hierarchical bootstrap replicates, ``[B]``. ``preds [S, N]``: one row of predictions per seed,
        aligned with ``labels``."""
        points, per_seed = self.per_seed_scores(preds, metric_name)
        return float(points.mean()), self.over_seeds(per_seed, key)

    def per_seed_scores(self, preds: np.ndarray, metric_name: str) -> tuple[np.ndarray, np.ndarray]:
        """Each seed's score on every eval sample ``[S]`` and on each resampled eval set ``[S, B]`` (in %),
        before any seed is resampled; ``preds [S, N]`` aligned with ``labels``."""
        preds = np.atleast_2d(np.asarray(preds))
        m = metric(metric_name)
        if m.per_sample_mean:
            correct = (preds == self.labels).astype(np.float64)                       # [S, N]
            # per-seed score on each resample: correct @ counts / N, [S, B]
            return 100 * correct.mean(1), np.stack([100 * correct[s][self.index].mean(1) for s in range(len(preds))])
        return (np.array([m.main(p, self.labels) for p in preds], dtype=np.float64),
                np.array([[m.main(p[idx], self.labels[idx]) for idx in self.index] for p in preds]))

    def means(self, values: np.ndarray, key: str, per: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """The row's mean of a per-sample quantity ``values [S, N]`` (seeds x eval samples, aligned with
        ``labels``; e.g. useful GMACs), or with ``per [S, N]`` the ratio of the two sums (e.g. useful over dense
        MACs: the share of dense), per seed, then averaged over the seeds: the point and its ``n_boot``
        hierarchical replicates ``[B]`` (each resamples the seeds as :meth:`scores` does for ``key``, then
        the eval samples), in the units of ``values`` (a ratio with ``per``)."""
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))
        per = np.ones_like(values) if per is None else np.atleast_2d(np.asarray(per, dtype=np.float64))
        point = float(np.mean(values.sum(1) / per.sum(1)))
        per_seed = np.stack([values[s][self.index].sum(1) / per[s][self.index].sum(1) for s in range(len(values))])
        return point, self.over_seeds(per_seed, key)

    def over_seeds(self, per_seed: np.ndarray, key: str) -> np.ndarray:
        """Replicates ``[B]``: each the mean over the replicate's seed draw (:meth:`_seed_draws` of ``key``)
        of ``per_seed [S, B]``, a statistic of each seed on each resampled eval set."""
        seeds = self._seed_draws(len(per_seed), key)
        return per_seed[seeds, np.arange(self.n_boot)[:, None]].mean(1)               # [B]


def interval(reps: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates ``reps [B]`` (NaN replicates, where a metric was
    undefined on a resample, are left out).

    >>> [round(v, 6) for v in interval(np.arange(101.0))]
    [2.5, 97.5]
    """
    reps = np.asarray(reps, dtype=np.float64)
    reps = reps[~np.isnan(reps)]
    alpha = (1 - level) / 2
    return float(np.quantile(reps, alpha)), float(np.quantile(reps, 1 - alpha))


def bootstrap_p(diff_reps: np.ndarray) -> float:
    """Two-sided p-value that a difference is zero from its bootstrap replicates ``[B]``: twice the
    smaller share of replicates on either side of zero, with the +1 correction (never exactly 0).

    >>> bootstrap_p(np.ones(99))
    0.02
    >>> bootstrap_p(np.array([-1.0, 1.0] * 50))
    1.0
    """
    d = np.asarray(diff_reps, dtype=np.float64)
    d = d[~np.isnan(d)]
    below, above = (d <= 0).sum(), (d >= 0).sum()
    return float(min(1.0, 2 * (min(below, above) + 1) / (len(d) + 1)))


def normal_p(point: float, reps: np.ndarray) -> float:
    """Two-sided p-value that a difference is zero: ``point`` over the standard deviation of its bootstrap
    replicates ``reps [B]`` (the bootstrap standard error), referred to the normal distribution
    (``scipy.stats.norm``). Unlike :func:`bootstrap_p` it resolves p-values below 1/B, which a Holm
    correction over a section of many comparisons needs. Replicates that do not vary give 1.0 for a zero
    ``point`` and 0.0 otherwise.

    >>> round(normal_p(1.96, np.array([-1.0, 1.0] * 500)), 3)   # standard error 1.0005
    0.05
    """
    from scipy.stats import norm

    d = np.asarray(reps, dtype=np.float64)
    se = float(np.std(d[~np.isnan(d)], ddof=1))
    if not se > 0:
        return 1.0 if point == 0 else 0.0
    return float(2 * norm.sf(abs(point) / se))


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """McNemar's exact test (``statsmodels``, binomial on the discordant pairs) that two classifiers
    scored on the same samples have the same accuracy; ``correct_* [N]`` booleans.

    >>> a = np.array([1] * 10 + [0] * 0 + [1] * 5, bool); b = np.array([0] * 10 + [1] * 5, bool)
    >>> round(mcnemar_p(a, b), 4)     # 10 samples only a got right, 0 only b: 2 x 0.5**10
    0.002
    """
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    return float(mcnemar(table, exact=True).pvalue)


def holm(pvalues) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction (``statsmodels`` ``multipletests``) of ``pvalues [M]`` at
    :data:`ALPHA`: ``(reject [M] bool, adjusted [M])``; NaN p-values stay NaN and are not counted."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=np.float64)
    reject, adjusted = np.zeros(len(p), bool), np.full(len(p), np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        reject[ok], adjusted[ok], _, _ = multipletests(p[ok], alpha=ALPHA, method="holm")
    return reject, adjusted


@dataclass(frozen=True)
class Difference:
    """Row minus reference, in score points: the point estimate, its paired bootstrap CI, the p-value
    and which test gave it (``mcnemar`` or ``bootstrap``)."""

    value: float
    lo: float
    hi: float
    p: float
    test: str


def from_replicates(point: float, reps: np.ndarray, normal: bool = True) -> Difference:
    """A difference (or any estimate tested against zero) from its point ``point`` and bootstrap replicates
    ``reps [B]``: the percentile CI (:func:`interval`) and the p-value of :func:`normal_p` (``normal``) or
    :func:`bootstrap_p`."""
    lo, hi = interval(reps)
    return Difference(point, lo, hi, normal_p(point, reps) if normal else bootstrap_p(reps), "bootstrap")


def difference(boot: Bootstrap, preds: np.ndarray, ref_preds: np.ndarray, metric_name: str,
               key: str, ref_key: str, paired_seeds: bool = False, normal: bool = False) -> Difference:
    """``preds`` minus ``ref_preds`` (each ``[S, N]``, seeds x eval samples) on ``boot``'s shared
    resamples: the paired hierarchical bootstrap CI; the p-value from McNemar's exact test when the
    score is accuracy and each side has one seed, else from the bootstrap replicates (:func:`bootstrap_p`,
    or with ``normal`` :func:`normal_p`). With ``paired_seeds`` the two hold the same seeds in the same
    order (e.g. a method and dense transferred from the same source seed) and each replicate draws the
    same seeds for both (``key``'s draws), so what a seed shares between them cancels."""
    preds, ref_preds = np.atleast_2d(preds), np.atleast_2d(ref_preds)
    if paired_seeds and len(preds) != len(ref_preds):
        raise ValueError(f"paired seeds need as many seeds on each side ({len(preds)} vs {len(ref_preds)})")
    point, reps = boot.scores(preds, metric_name, key)
    ref_point, ref_reps = boot.scores(ref_preds, metric_name, key if paired_seeds else ref_key)
    if metric(metric_name).per_sample_mean and len(preds) == 1 and len(ref_preds) == 1:
        lo, hi = interval(reps - ref_reps)
        p = mcnemar_p(preds[0] == boot.labels, ref_preds[0] == boot.labels)
        return Difference(point - ref_point, lo, hi, p, "mcnemar")
    return from_replicates(point - ref_point, reps - ref_reps, normal)


def aligned_predictions(samples: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids [N], labels [N], preds [S, N])`` of one row's per-seed sample files (``ids``, ``label``,
    ``pred`` arrays as :func:`ccbench.reporting.records.load_samples` returns them), each put in id
    order. Seeds that do not hold the same ids with the same labels are an error (``ValueError``)."""
    ids, labels, arrays = aligned(samples)
    return ids, labels, arrays["pred"]


def aligned(samples: list[dict], fields: tuple[str, ...] = ("pred",)) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(ids [N], labels [N], {field: [S, N]})``: :func:`aligned_predictions` for any per-sample ``fields``
    of the seeds' sample files (e.g. ``pred`` and per-sample GMACs), each seed put in id order. Seeds that
    do not hold the same ids with the same labels are an error (``ValueError``); a missing field a
    ``KeyError``."""
    ids = labels = None
    out: dict[str, list] = {f: [] for f in fields}
    for s in samples:
        order = np.argsort(s["ids"], kind="stable")
        these_ids, these_labels = np.asarray(s["ids"])[order], np.asarray(s["label"])[order]
        if ids is None:
            ids, labels = these_ids, these_labels
        elif not (np.array_equal(ids, these_ids) and np.array_equal(labels, these_labels)):
            raise ValueError("the seeds of one row were evaluated on different samples")
        for f in fields:
            out[f].append(np.asarray(s[f])[order])
    return ids, labels, {f: np.stack(v) for f, v in out.items()}
