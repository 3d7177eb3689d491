"""Routing statistics of the width family, from traces and labels (issues 5 and 24).

Input: ``expert_ids [S, L, N, K]`` (the trace field: expert of each pick, -1 = none, -2 = padding) and
one label per sample. Per layer:

* ``load``: share of the *processed* picks per expert (after capacity drops); ``load_max_over_mean``,
  ``load_cv`` (coefficient of variation), ``load_p90`` (as a share), ``utilization`` (share of experts
  with >= 1 % of the picks), ``dead_experts`` (no pick at all), ``entropy_bits`` of the load and
  ``entropy_normalized`` (/ log2 E), ``jain`` fairness ``(sum x)^2 / (E sum x^2)``,
  ``tokens_without_expert`` (share of tokens no expert processed: dropped over capacity, or chosen by no
  expert);
* ``requested`` (token-choice top-k, from the ``expert_requested`` trace field): the router's own top-k
  choices before capacity: their load, its ``max_over_mean`` and ``cv`` (the imbalance load-balancing
  losses fight), and ``drop_rate`` (share of requested picks over capacity);
* ``specialization`` (expert vs class): ``mi_over_h_label`` = I(E;Y)/H(Y) and ``nmi`` = I / ((H(E) +
  H(Y)) / 2) (arithmetic; 0 when H(E) = 0), each minus its mean over ``permutations`` shuffles of the
  sample labels (chance-corrected; raw values, the chance mean and its standard error kept too). The
  headline weights **each sample equally** (``weighting: per sample``: a sample contributes its
  distribution over experts, its picks normalised to 1); ``per_pick`` beside it counts every processed
  (token, pick) once (a sample with more surviving picks weighs more; records before issue 24 hold only
  this one, at the top level);
* ``position`` (token-level specialization): I(E; position) over the processed picks, position = token
  index (images: 0 the class token, then the patches) or, for text, a log2 bucket of it; chance-corrected
  by shuffling the positions of each sample's real tokens (``permutations`` times).

Entropies and mutual information come from ``scipy.stats.entropy`` (scikit-learn's ``mutual_info_score``
casts a contingency table to integers, and the per-sample table has fractional weights); the
Jensen-Shannon divergence from ``scipy.spatial.distance.jensenshannon``.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from ccbench.core.trace import PAD_TOKEN

UTILIZATION_MIN_SHARE = 0.01
PERMUTATIONS = 20    # chance shuffles of the records
POSITION_BUCKETS = ("token", "log2")  # images: each token index; text: log2 buckets of it


def _entropy_bits(p: np.ndarray) -> float:
    p = np.asarray(p, dtype=np.float64).ravel()
    return float(entropy(p, base=2)) if p.sum() > 0 else 0.0


def mutual_information_bits(table: np.ndarray) -> tuple[float, float, float]:
    """``table [E, C]`` of counts or weights -> ``(I(E;Y), H(E), H(Y))`` in bits, with
    I = H(E) + H(Y) - H(E, Y).

    >>> [round(v, 6) for v in mutual_information_bits(np.array([[5, 0], [0, 5]]))]
    [1.0, 1.0, 1.0]
    >>> [round(v, 6) for v in mutual_information_bits(np.array([[5, 5], [5, 5]]))]
    [0.0, 1.0, 1.0]
    """
    table = np.asarray(table, dtype=np.float64)
    if table.sum() == 0:
        return 0.0, 0.0, 0.0
    he, hy = _entropy_bits(table.sum(1)), _entropy_bits(table.sum(0))
    mi = he + hy - _entropy_bits(table)
    return max(mi, 0.0), he, hy


def _scores(table: np.ndarray) -> tuple[float, float]:
    mi, he, hy = mutual_information_bits(table)
    mi_over_hy = mi / hy if hy > 0 else 0.0
    nmi = mi / ((he + hy) / 2) if he > 0 and hy > 0 else 0.0
    return mi_over_hy, nmi


def expert_counts(ids: np.ndarray, num_experts: int) -> np.ndarray:
    """Picks per expert, ``[E]`` int, of one layer's ``ids [S, N, K]`` (expert per pick; negative: no
    expert, i.e. dropped or padding).

    >>> expert_counts(np.array([[[0, 1], [1, -1]]]), 3).tolist()
    [1, 2, 0]
    """
    return np.bincount(ids[ids >= 0], minlength=num_experts)


def sample_expert_counts(ids: np.ndarray, num_experts: int) -> np.ndarray:
    """Picks per sample and expert, ``[S, E]`` int, of one layer's ``ids [S, N, K]``.

    >>> sample_expert_counts(np.array([[[0], [0]], [[1], [-1]]]), 2).tolist()
    [[2, 0], [0, 1]]
    """
    s = ids.shape[0]
    valid = ids >= 0
    rows = np.broadcast_to(np.arange(s).reshape((s,) + (1,) * (ids.ndim - 1)), ids.shape)[valid]
    return np.bincount(rows * num_experts + ids[valid], minlength=s * num_experts).reshape(s, num_experts)


def _weights(counts: np.ndarray, per_sample: bool) -> np.ndarray:
    """``counts [S, E]`` -> each sample's weight per expert: its picks (per pick) or its distribution
    over experts, summing to 1 (per sample; a sample with no pick weighs 0)."""
    counts = counts.astype(np.float64)
    if not per_sample:
        return counts
    total = counts.sum(1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def _label_table(weights: np.ndarray, labels: np.ndarray, num_labels: int) -> np.ndarray:
    """``weights [S, E]``, ``labels [S]`` (0 .. C-1) -> expert x label table ``[E, C]``."""
    return weights.T @ np.eye(num_labels)[labels]


def _corrected(raw: tuple[float, float], shuffled: list[tuple[float, float]]) -> dict:
    """Raw ``(I/H(Y), NMI)``, the same minus their mean over label shuffles, and that mean's
    standard error (sample standard deviation / sqrt(permutations))."""
    mi_hy, nmi = raw
    chance_mi_hy = float(np.mean([v[0] for v in shuffled])) if shuffled else 0.0
    chance_nmi = float(np.mean([v[1] for v in shuffled])) if shuffled else 0.0
    se = float(np.std([v[1] for v in shuffled], ddof=1) / np.sqrt(len(shuffled))) if len(shuffled) > 1 else 0.0
    return {"mi_over_h_label": round(mi_hy - chance_mi_hy, 6), "nmi": round(nmi - chance_nmi, 6),
            "raw_mi_over_h_label": round(mi_hy, 6), "raw_nmi": round(nmi, 6),
            "chance_nmi": round(chance_nmi, 6), "chance_nmi_se": round(se, 6)}


def label_specialization(ids: np.ndarray, labels: np.ndarray, num_experts: int, permutations: int = PERMUTATIONS,
                         seed: int = 0) -> dict:
    """Chance-corrected specialization of one layer's ``ids [S, N, K]`` for ``labels [S]`` (any
    values): the per-sample weighting at the top level (``weighting``), the per-pick one under
    ``per_pick``; the same ``permutations`` shuffles of the sample labels serve both."""
    label_ids, labels = np.unique(labels, return_inverse=True)
    counts = sample_expert_counts(ids, num_experts)
    rng = np.random.default_rng(seed)
    shuffles = [rng.permutation(labels) for _ in range(permutations)]
    out = {}
    for name, per_sample in (("per_sample", True), ("per_pick", False)):
        w = _weights(counts, per_sample)
        raw = _scores(_label_table(w, labels, len(label_ids)))
        out[name] = _corrected(raw, [_scores(_label_table(w, y, len(label_ids))) for y in shuffles])
    return {"weighting": "per sample", **out["per_sample"], "per_pick": out["per_pick"],
            "chance_permutations": permutations}


def position_index(ids: np.ndarray, buckets: str) -> tuple[np.ndarray, int]:
    """Position of each token of ``ids [S, N, K]``, ``[N]`` ints, and the number of positions: the
    token index (``"token"``) or its log2 bucket (``"log2"``: 0, 1, 2-3, 4-7, ...).

    >>> position_index(np.zeros((1, 6, 1)), "log2")[0].tolist()
    [0, 1, 2, 2, 3, 3]
    """
    if buckets not in POSITION_BUCKETS:
        raise ValueError(f"position buckets {buckets!r}: use one of {POSITION_BUCKETS}")
    n = ids.shape[1]
    pos = np.arange(n)
    if buckets == "log2":
        pos = np.where(pos == 0, 0, np.floor(np.log2(np.maximum(pos, 1))).astype(np.int64) + 1)
    return pos, int(pos.max()) + 1


def _position_table(ids: np.ndarray, positions: np.ndarray, num_experts: int, num_positions: int) -> np.ndarray:
    """``ids [S, N, K]``, ``positions [S, N]`` -> expert x position counts of the processed picks."""
    valid = ids >= 0
    pos = np.broadcast_to(positions[..., None], ids.shape)[valid]
    return np.bincount(ids[valid] * num_positions + pos, minlength=num_experts * num_positions).reshape(
        num_experts, num_positions)


def _shuffled_positions(is_token: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Token index ``[S, N]`` after shuffling each sample's real tokens among their own positions
    (padding positions stay padding)."""
    s, n = is_token.shape
    keys = np.where(is_token, rng.random((s, n)), 2.0)
    order = np.argsort(keys, axis=1)                                        # random real positions first
    ranked = np.argsort(np.where(is_token, 0, 1) * n + np.arange(n), axis=1)  # real positions ascending first
    out = np.empty_like(order)
    np.put_along_axis(out, ranked, order, axis=1)
    return out


def position_specialization(ids: np.ndarray, num_experts: int, buckets: str = "token",
                            permutations: int = PERMUTATIONS, seed: int = 0) -> dict:
    """Token-level specialization of one layer's ``ids [S, N, K]``: mutual information between expert
    and position over the processed picks (bits, and normalised as NMI), raw and minus its mean over
    ``permutations`` within-sample shuffles of the real tokens' positions, with that mean's standard
    error. ``counts`` ``[E, P]``: the table (for the heatmap)."""
    pos_of, num_positions = position_index(ids, buckets)
    is_token = ~(ids == PAD_TOKEN).all(-1)
    table = _position_table(ids, np.broadcast_to(pos_of, is_token.shape), num_experts, num_positions)
    mi, he, hp = mutual_information_bits(table)
    rng = np.random.default_rng(seed)
    null = []
    for _ in range(permutations):
        t = _position_table(ids, pos_of[_shuffled_positions(is_token, rng)], num_experts, num_positions)
        m, a, b = mutual_information_bits(t)
        null.append((m, m / ((a + b) / 2) if a > 0 and b > 0 else 0.0))
    nmi = mi / ((he + hp) / 2) if he > 0 and hp > 0 else 0.0
    chance_mi = float(np.mean([v[0] for v in null])) if null else 0.0
    chance_nmi = float(np.mean([v[1] for v in null])) if null else 0.0
    se = float(np.std([v[0] for v in null], ddof=1) / np.sqrt(len(null))) if len(null) > 1 else 0.0
    return {"buckets": buckets, "positions": num_positions, "weighting": "per pick",
            "mi_bits": round(mi - chance_mi, 6), "nmi": round(nmi - chance_nmi, 6),
            "raw_mi_bits": round(mi, 6), "raw_nmi": round(nmi, 6), "chance_mi_bits": round(chance_mi, 6),
            "chance_mi_bits_se": round(se, 6), "chance_permutations": permutations}


def _imbalance(counts: np.ndarray) -> tuple[float, float]:
    """``(max / mean, coefficient of variation)`` of per-expert counts (0, 0 when empty)."""
    mean = counts.mean()
    if mean == 0:
        return 0.0, 0.0
    return round(float(counts.max() / mean), 4), round(float(counts.std() / mean), 4)


def requested_load(ids: np.ndarray, requested: np.ndarray, num_experts: int) -> dict:
    """What the router asked for in one layer: ``requested [S, N, K]`` the top-k choices before capacity
    (negative: padding), ``ids`` the processed ones (-1 where dropped). Their load (shares), its
    imbalance (``max_over_mean``, ``cv``) and the share of requested picks dropped (``drop_rate``).

    >>> requested_load(np.array([[[0], [-1], [1]]]), np.array([[[0], [0], [1]]]), 2)["drop_rate"]
    0.333333
    """
    counts = expert_counts(requested, num_experts).astype(np.float64)
    asked = requested >= 0
    dropped = asked & (ids < 0)
    max_over_mean, cv = _imbalance(counts)
    return {"load": [round(float(v), 6) for v in counts / max(counts.sum(), 1)], "max_over_mean": max_over_mean,
            "cv": cv, "drop_rate": round(float(dropped.sum() / max(asked.sum(), 1)), 6)}


def layer_metrics(ids: np.ndarray, labels: np.ndarray, num_experts: int, permutations: int = PERMUTATIONS,
                  seed: int = 0, requested: np.ndarray | None = None, position_buckets: str | None = None) -> dict:
    """Statistics of one layer: ``ids [S, N, K]`` expert per pick (-1 none; -2 a padding position,
    which is not a token and is left out), ``labels [S]`` ints; ``requested [S, N, K]`` the router's
    choices before capacity (token choice only); ``position_buckets`` (``"token"`` or ``"log2"``) adds
    the position specialization."""
    valid = ids >= 0
    is_token = ~(ids == PAD_TOKEN).all(-1)                           # [S, N]
    counts = expert_counts(ids, num_experts).astype(np.float64)
    load = counts / max(counts.sum(), 1)
    nz_mean = load.mean()
    out = {
        "load": [round(float(v), 6) for v in load],
        "load_max_over_mean": round(float(load.max() / nz_mean), 4) if nz_mean > 0 else 0.0,
        "load_cv": _imbalance(counts)[1],
        "load_p90": round(float(np.quantile(load, 0.9)), 6),
        "utilization": round(float((load >= UTILIZATION_MIN_SHARE).mean()), 4),
        "dead_experts": int((counts == 0).sum()),
        "entropy_bits": round(_entropy_bits(load), 4),
        "entropy_normalized": round(_entropy_bits(load) / np.log2(num_experts), 4) if num_experts > 1 else 0.0,
        "jain": round(float(counts.sum() ** 2 / (num_experts * (counts ** 2).sum())), 4) if counts.any() else 0.0,
        "tokens_without_expert": round(float((~valid.any(-1))[is_token].mean()), 6) if is_token.any() else 0.0,
        "specialization": label_specialization(ids, labels, num_experts, permutations, seed),
    }
    if requested is not None:
        out["requested"] = requested_load(ids, requested, num_experts)
    if position_buckets is not None:
        out["position"] = position_specialization(ids, num_experts, position_buckets, permutations, seed)
    return out


def routing_metrics(expert_ids: np.ndarray, labels: np.ndarray, num_experts: int, soft: bool = False,
                    permutations: int = PERMUTATIONS, seed: int = 0, requested: np.ndarray | None = None,
                    position_buckets: str | None = None) -> dict:
    """Per-layer statistics (:func:`layer_metrics`) of ``expert_ids [S, L, N, K]`` (and ``requested``,
    same shape) and their mean over layers. ``soft`` marks Soft MoE, whose single pick per token is its
    largest combine weight. Everything needed to recompute it from a samples file is recorded
    (:func:`routing_from_samples`)."""
    layers = [layer_metrics(expert_ids[:, i], labels, num_experts, permutations, seed,
                            None if requested is None else requested[:, i], position_buckets)
              for i in range(expert_ids.shape[1])]
    keys = ["load_max_over_mean", "load_cv", "load_p90", "utilization", "dead_experts", "entropy_normalized",
            "jain", "tokens_without_expert"]
    mean = {k: round(float(np.mean([lay[k] for lay in layers])), 4) for k in keys}
    for k in ("mi_over_h_label", "nmi"):
        mean[k] = round(float(np.mean([lay["specialization"][k] for lay in layers])), 4)
        mean[f"{k}_per_pick"] = round(float(np.mean([lay["specialization"]["per_pick"][k] for lay in layers])), 4)
    # the standard error of a mean of correlated estimates is at most the mean of their standard errors
    mean["nmi_chance_se_bound"] = round(float(np.mean([lay["specialization"]["chance_nmi_se"] for lay in layers])), 6)
    mean["specialization_weighting"] = "per sample"
    if requested is not None:
        for k in ("max_over_mean", "cv", "drop_rate"):
            mean[f"requested_{k}"] = round(float(np.mean([lay["requested"][k] for lay in layers])), 4)
    if position_buckets is not None:
        for k in ("mi_bits", "nmi"):
            mean[f"position_{k}"] = round(float(np.mean([lay["position"][k] for lay in layers])), 4)
    return {"assignment": "argmax combine weight (soft)" if soft else "each selected pick",
            "num_experts": num_experts, "chance_permutations": permutations, "seed": seed,
            "position_buckets": position_buckets, "requested": requested is not None,
            "mean_over_layers": mean, "layers": layers}


def routing_from_samples(routing: dict, samples: dict[str, np.ndarray]) -> dict:
    """:func:`routing_metrics` recomputed from a run record's samples file (``trace.expert_ids``,
    ``trace.expert_requested``, ``label``) with the settings its ``routing`` section states."""
    requested = samples["trace.expert_requested"].astype(np.int64) if routing.get("requested") else None
    return routing_metrics(samples["trace.expert_ids"].astype(np.int64), samples["label"], routing["num_experts"],
                           soft=routing["assignment"].endswith("(soft)"), permutations=routing["chance_permutations"],
                           seed=routing["seed"], requested=requested, position_buckets=routing["position_buckets"])


def js_divergence_bits(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence between two expert-load distributions, in bits (0 = identical,
    1 = disjoint support). ``p``, ``q``: non-negative ``[E]`` (normalised here). scipy's
    ``jensenshannon`` returns the *distance*, the square root of the divergence: squared here.

    >>> js_divergence_bits(np.array([0.5, 0.5]), np.array([1.0, 1.0]))
    0.0
    >>> js_divergence_bits(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    1.0
    """
    d = float(jensenshannon(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64), base=2))
    return round(max(d * d, 0.0), 12)


def routing_shift(ref_ids: np.ndarray, tgt_ids: np.ndarray, num_experts: int, seed: int = 0) -> dict:
    """Per MoE layer: JS divergence in bits between the expert loads of ``ref_ids`` and ``tgt_ids``
    (``[S, L, N, K]`` expert per pick, -1 dropped, -2 padding), and the chance-corrected NMI between
    expert and domain on a 50/50 mix (the same number of samples from each, seeded) in both weightings:
    ``domain_nmi`` per sample (each domain weighs exactly half), ``domain_nmi_per_pick`` per processed
    pick (a domain with more drops weighs less; ``mix_pick_share_reference`` says how much)."""
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
        mix = label_specialization(mixed[:, layer], domain, num_experts, seed=seed)
        picks_a, picks_b = int((a[:, layer] >= 0).sum()), int((b[:, layer] >= 0).sum())
        layers.append({"js_bits": js_divergence_bits(load_ref, load_tgt), "domain_nmi": mix["nmi"],
                       "domain_nmi_raw": mix["raw_nmi"], "domain_nmi_chance_se": mix["chance_nmi_se"],
                       "domain_nmi_per_pick": mix["per_pick"]["nmi"],
                       "mix_pick_share_reference": round(picks_a / max(picks_a + picks_b, 1), 6)})
    return {"js_bits_mean": round(float(np.mean([x["js_bits"] for x in layers])), 6),
            "domain_nmi_mean": round(float(np.mean([x["domain_nmi"] for x in layers])), 6),
            "domain_nmi_per_pick_mean": round(float(np.mean([x["domain_nmi_per_pick"] for x in layers])), 6),
            "domain_weighting": "per sample", "num_experts": num_experts, "seed": seed,
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
