"""Summary statistics used in records and tables."""
from __future__ import annotations

import torch


def bootstrap_ci(values: torch.Tensor, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values [N]`` (resampling samples with replacement),
    in the units of ``values``. Seeded, so the same values give the same interval.

    >>> lo, hi = bootstrap_ci(torch.tensor([1.0] * 90 + [0.0] * 10))
    >>> 0.82 < lo < 0.87 and 0.93 < hi < 0.97
    True
    """
    v = values.double().flatten()
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(v), (n_boot, len(v)), generator=g)
    means = v[idx].mean(1)
    alpha = (1 - level) / 2
    return (torch.quantile(means, alpha).item(), torch.quantile(means, 1 - alpha).item())


def distribution(values: torch.Tensor, scale: float = 1.0, digits: int = 4) -> dict:
    """``{mean, median, p90, max}`` of ``values [N]`` times ``scale``, rounded."""
    v = values.double().flatten() * scale
    return {"mean": round(v.mean().item(), digits), "median": round(v.median().item(), digits),
            "p90": round(torch.quantile(v, 0.9).item(), digits), "max": round(v.max().item(), digits)}


def bootstrap_ci_metric(metric, pred, label, n_boot: int = 1000, level: float = 0.95,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``metric(pred[idx], label[idx])`` over resampled examples
    (``pred``/``label`` numpy ``[N]``), in the metric's units; for metrics that are not a mean
    (F1, Matthews, correlations). Resamples where the metric is undefined (nan) are skipped.

    >>> import numpy as np
    >>> lo, hi = bootstrap_ci_metric(lambda p, y: 100 * float((p == y).mean()), np.array([1] * 90 + [0] * 10),
    ...                              np.ones(100, dtype=int))
    >>> 82 < lo < 87 and 93 < hi < 97
    True
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(pred), len(pred))
        v = metric(pred[idx], label[idx])
        if v == v:
            values.append(v)
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))
