"""Routing statistics of the width family, from traces and labels (issue 5).

Input: ``expert_ids [S, L, N, K]`` (the trace field: expert of each pick, -1 = none) and one label
per sample. Every (token, pick) with an expert counts once ("top-k counts each pick"). Per layer:

* ``load``: share of picks per expert; ``load_max_over_mean``, ``load_p90`` (as a share),
  ``utilization`` (share of experts with >= 1 % of the picks), ``dead_experts`` (no pick at all),
  ``entropy_bits`` of the load and ``entropy_normalized`` (/ log2 E), ``jain`` fairness
  ``(sum x)^2 / (E sum x^2)``, ``tokens_without_expert`` (share of tokens no expert processed:
  dropped over capacity, or chosen by no expert);
* ``specialization``: from the expert x label count table, ``mi_over_h_label`` = I(E;Y)/H(Y) and
  ``nmi`` = I / ((H(E) + H(Y)) / 2) (arithmetic; 0 when H(E) = 0), each minus its mean over
  ``permutations`` shuffles of the sample labels (chance-corrected; raw values kept too).
"""
from __future__ import annotations

import numpy as np

from .trace import PAD_TOKEN

UTILIZATION_MIN_SHARE = 0.01


def _entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def mutual_information_bits(table: np.ndarray) -> tuple[float, float, float]:
    """``table [E, C]`` of counts -> ``(I(E;Y), H(E), H(Y))`` in bits.

    >>> [round(v, 6) for v in mutual_information_bits(np.array([[5, 0], [0, 5]]))]
    [1.0, 1.0, 1.0]
    >>> [round(v, 6) for v in mutual_information_bits(np.array([[5, 5], [5, 5]]))]
    [0.0, 1.0, 1.0]
    """
    total = table.sum()
    if total == 0:
        return 0.0, 0.0, 0.0
    p = table / total
    pe, py = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log2(p[nz] / np.outer(pe, py)[nz])).sum())
    return max(mi, 0.0), _entropy_bits(pe), _entropy_bits(py)


def _scores(table: np.ndarray) -> tuple[float, float]:
    mi, he, hy = mutual_information_bits(table)
    mi_over_hy = mi / hy if hy > 0 else 0.0
    nmi = mi / ((he + hy) / 2) if he > 0 and hy > 0 else 0.0
    return mi_over_hy, nmi


def _table(experts: np.ndarray, labels: np.ndarray, num_experts: int, num_labels: int) -> np.ndarray:
    return np.bincount(experts * num_labels + labels, minlength=num_experts * num_labels).reshape(
        num_experts, num_labels)


def layer_metrics(ids: np.ndarray, labels: np.ndarray, num_experts: int, permutations: int = 20,
                  seed: int = 0) -> dict:
    """Statistics of one layer: ``ids [S, N, K]`` expert per pick (-1 none; -2 a padding position,
    which is not a token and is left out), ``labels [S]`` ints."""
    s = ids.shape[0]
    valid = ids >= 0
    is_token = ~(ids == PAD_TOKEN).all(-1)                           # [S, N]
    picks = ids[valid]
    counts = np.bincount(picks, minlength=num_experts).astype(np.float64)
    load = counts / max(counts.sum(), 1)
    nz_mean = load.mean()
    label_ids, labels = np.unique(labels, return_inverse=True)
    per_pick_sample = np.broadcast_to(np.arange(s)[:, None, None], ids.shape)[valid]
    table = _table(picks, labels[per_pick_sample], num_experts, len(label_ids))
    mi_hy, nmi = _scores(table)
    rng = np.random.default_rng(seed)
    shuffled = [_scores(_table(picks, rng.permutation(labels)[per_pick_sample], num_experts, len(label_ids)))
                for _ in range(permutations)]
    chance_mi_hy = float(np.mean([v[0] for v in shuffled])) if shuffled else 0.0
    chance_nmi = float(np.mean([v[1] for v in shuffled])) if shuffled else 0.0
    return {
        "load": [round(float(v), 6) for v in load],
        "load_max_over_mean": round(float(load.max() / nz_mean), 4) if nz_mean > 0 else 0.0,
        "load_p90": round(float(np.quantile(load, 0.9)), 6),
        "utilization": round(float((load >= UTILIZATION_MIN_SHARE).mean()), 4),
        "dead_experts": int((counts == 0).sum()),
        "entropy_bits": round(_entropy_bits(load), 4),
        "entropy_normalized": round(_entropy_bits(load) / np.log2(num_experts), 4) if num_experts > 1 else 0.0,
        "jain": round(float(counts.sum() ** 2 / (num_experts * (counts ** 2).sum())), 4) if counts.any() else 0.0,
        "tokens_without_expert": round(float((~valid.any(-1))[is_token].mean()), 6) if is_token.any() else 0.0,
        "specialization": {"mi_over_h_label": round(mi_hy - chance_mi_hy, 6), "nmi": round(nmi - chance_nmi, 6),
                           "raw_mi_over_h_label": round(mi_hy, 6), "raw_nmi": round(nmi, 6),
                           "chance_permutations": permutations},
    }


def routing_metrics(expert_ids: np.ndarray, labels: np.ndarray, num_experts: int, soft: bool = False,
                    permutations: int = 20, seed: int = 0) -> dict:
    """Per-layer statistics (:func:`layer_metrics`) of ``expert_ids [S, L, N, K]`` and their mean
    over layers. ``soft`` marks Soft MoE, whose single pick per token is its largest combine weight."""
    layers = [layer_metrics(expert_ids[:, i], labels, num_experts, permutations, seed)
              for i in range(expert_ids.shape[1])]
    keys = ["load_max_over_mean", "load_p90", "utilization", "dead_experts", "entropy_normalized", "jain",
            "tokens_without_expert"]
    mean = {k: round(float(np.mean([lay[k] for lay in layers])), 4) for k in keys}
    for k in ("mi_over_h_label", "nmi"):
        mean[k] = round(float(np.mean([lay["specialization"][k] for lay in layers])), 4)
    return {"assignment": "argmax combine weight (soft)" if soft else "each selected pick",
            "num_experts": num_experts, "mean_over_layers": mean, "layers": layers}


def js_divergence_bits(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence between two expert-load distributions, in bits (0 = identical,
    1 = disjoint support). ``p``, ``q``: non-negative ``[E]`` (normalised here). Note scipy's
    ``jensenshannon`` returns the *square root* of the divergence, in nats by default.

    >>> js_divergence_bits(np.array([0.5, 0.5]), np.array([1.0, 1.0]))
    0.0
    >>> js_divergence_bits(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    1.0
    """
    p = np.asarray(p, dtype=np.float64) / np.sum(p)
    q = np.asarray(q, dtype=np.float64) / np.sum(q)
    m = (p + q) / 2

    def kl(a):
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return round(max(0.5 * kl(p) + 0.5 * kl(q), 0.0), 12)
