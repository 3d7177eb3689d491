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

from ccbench.core.trace import PAD_TOKEN

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


def expert_counts(ids: np.ndarray, num_experts: int) -> np.ndarray:
    """Picks per expert, ``[E]`` int, of one layer's ``ids [S, N, K]`` (expert per pick; negative: no
    expert, i.e. dropped or padding).

    >>> expert_counts(np.array([[[0, 1], [1, -1]]]), 3).tolist()
    [1, 2, 0]
    """
    return np.bincount(ids[ids >= 0], minlength=num_experts)


def layer_metrics(ids: np.ndarray, labels: np.ndarray, num_experts: int, permutations: int = 20,
                  seed: int = 0) -> dict:
    """Statistics of one layer: ``ids [S, N, K]`` expert per pick (-1 none; -2 a padding position,
    which is not a token and is left out), ``labels [S]`` ints."""
    s = ids.shape[0]
    valid = ids >= 0
    is_token = ~(ids == PAD_TOKEN).all(-1)                           # [S, N]
    picks = ids[valid]
    counts = expert_counts(ids, num_experts).astype(np.float64)
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


def routing_shift(ref_ids: np.ndarray, tgt_ids: np.ndarray, num_experts: int, seed: int = 0) -> dict:
    """Per MoE layer: JS divergence in bits between the expert loads of ``ref_ids`` and ``tgt_ids``
    (``[S, L, N, K]`` expert per pick, -1 dropped, -2 padding), and the chance-corrected NMI between
    expert and domain on a 50/50 mix (the same number of samples from each, seeded)."""
    rng = np.random.default_rng(seed)
    n = min(len(ref_ids), len(tgt_ids))
    a = ref_ids[rng.permutation(len(ref_ids))[:n]]
    b = tgt_ids[rng.permutation(len(tgt_ids))[:n]]
    width = max(a.shape[2], b.shape[2])  # text: pad the token axis to the longer of the two

    def pad(x):
        out = np.full(x.shape[:2] + (width, x.shape[3]), PAD_TOKEN, dtype=x.dtype)
        out[:, :, :x.shape[2]] = x
        return out

    mixed = np.concatenate([pad(a), pad(b)])
    domain = np.repeat([0, 1], n)
    layers = []
    for layer in range(ref_ids.shape[1]):
        load_ref = expert_counts(ref_ids[:, layer], num_experts)
        load_tgt = expert_counts(tgt_ids[:, layer], num_experts)
        mix = layer_metrics(mixed[:, layer], domain, num_experts, seed=seed)["specialization"]
        layers.append({"js_bits": js_divergence_bits(load_ref, load_tgt), "domain_nmi": mix["nmi"],
                       "domain_nmi_raw": mix["raw_nmi"]})
    return {"js_bits_mean": round(float(np.mean([x["js_bits"] for x in layers])), 6),
            "domain_nmi_mean": round(float(np.mean([x["domain_nmi"] for x in layers])), 6),
            "mix_samples_per_domain": int(n), "layers": layers}


def module_reuse(source_ids: np.ndarray, target_ids: np.ndarray, num_experts: int, k: int) -> dict:
    """Per MoE layer: the ``k`` experts with the most source picks, their share of the source picks and
    of the target picks. ``*_ids [S, L, N, K]`` (-1 dropped, -2 padding)."""
    layers = []
    for layer in range(source_ids.shape[1]):
        src = expert_counts(source_ids[:, layer], num_experts)
        tgt = expert_counts(target_ids[:, layer], num_experts)
        top = np.argsort(-src, kind="stable")[:k]
        layers.append({"top_experts": [int(e) for e in top],
                       "source_share": round(float(src[top].sum() / max(src.sum(), 1)), 4),
                       "target_share": round(float(tgt[top].sum() / max(tgt.sum(), 1)), 4)})
    return {"k": k, "uniform_share": round(k / num_experts, 4),
            "target_share_mean": round(float(np.mean([x["target_share"] for x in layers])), 4),
            "source_share_mean": round(float(np.mean([x["source_share"] for x in layers])), 4), "layers": layers}
