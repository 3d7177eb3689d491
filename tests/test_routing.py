"""``ccbench.measurement.routing`` by hand (issue 22, mutation survivors): load statistics at their thresholds and
precision, degenerate layers (no pick, one expert, one label), the defaults the records are computed
with, and the Jensen-Shannon divergence of two loads. Every expected value is worked out in the
docstring or comment next to it, not read off the code."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ccbench.core.trace import PAD_TOKEN as PAD
from ccbench.measurement.routing import (
    js_divergence_bits,
    layer_metrics,
    mutual_information_bits,
    routing_metrics,
)


def _layer(counts: list[int]) -> np.ndarray:
    """``ids [S, 1, 1]``: one token per sample, one pick, expert ``e`` repeated ``counts[e]`` times."""
    return np.repeat(np.arange(len(counts)), counts)[:, None, None]


def test_utilization_counts_experts_with_at_least_one_percent_of_the_picks():
    """200 picks as 197 / 2 / 1 / 0: shares 0.985, exactly 0.01, 0.005 and 0. Experts at >= 1 % are
    used: 2 of 4 (one at exactly 1 % counts; the one at 0.5 % does not); one dead expert."""
    m = layer_metrics(_layer([197, 2, 1, 0]), np.zeros(200, dtype=int), num_experts=4, permutations=0)
    assert m["load"] == [0.985, 0.01, 0.005, 0.0]
    assert m["utilization"] == 0.5 and m["dead_experts"] == 1
    # max over mean: 0.985 / 0.25; the 90th percentile of (0, 0.005, 0.01, 0.985) interpolates
    # 0.01 + 0.7 (0.985 - 0.01) = 0.6925
    assert m["load_max_over_mean"] == 3.94 and m["load_p90"] == 0.6925


def test_load_statistics_of_thirds_at_their_record_precision():
    """Loads 2/3, 1/3 over E = 2 (3 picks). Entropy H = log2 3 - 2/3 = 0.918296 bits (4 digits:
    0.9183), normalised by log2 2 = 1; Jain (3^2) / (2 (2^2 + 1^2)) = 0.9; max over mean (2/3) / (1/2)
    = 1.3333; p90 1/3 + 0.9 / 3 = 0.633333. Loads have 6 digits, the rest 4."""
    m = layer_metrics(_layer([2, 1]), np.zeros(3, dtype=int), num_experts=2, permutations=0)
    h = math.log2(3) - 2 / 3
    assert m["load"] == [0.666667, 0.333333]
    assert m["entropy_bits"] == round(h, 4) == 0.9183 and m["entropy_normalized"] == 0.9183
    assert m["jain"] == 0.9 and m["load_max_over_mean"] == 1.3333 and m["load_p90"] == 0.633333
    assert m["utilization"] == 1.0 and m["tokens_without_expert"] == 0.0


def test_entropy_is_normalised_by_log2_of_the_expert_count():
    """Uniform over 2 of E = 4 experts: 1 bit, normalised 1 / log2 4 = 0.5. One expert: no
    normalisation possible, 0."""
    m = layer_metrics(_layer([1, 1, 0, 0]), np.zeros(2, dtype=int), num_experts=4, permutations=0)
    assert m["entropy_bits"] == 1.0 and m["entropy_normalized"] == 0.5
    one = layer_metrics(_layer([3]), np.zeros(3, dtype=int), num_experts=1, permutations=0)
    assert one["entropy_normalized"] == 0.0 and one["load"] == [1.0] and one["utilization"] == 1.0


def test_a_single_pick_is_the_whole_load():
    """One pick: load 1 for its expert (a share of picks, not of a floor of two)."""
    m = layer_metrics(_layer([0, 1]), np.zeros(1, dtype=int), num_experts=2, permutations=0)
    assert m["load"] == [0.0, 1.0] and m["load_max_over_mean"] == 2.0


def test_a_layer_where_every_pick_was_dropped_has_zero_statistics():
    """Every pick dropped (-1): no load, and ratios over an empty load are 0, not NaN; every token
    went without an expert."""
    m = layer_metrics(np.full((3, 2, 1), -1), np.array([0, 1, 0]), num_experts=2, permutations=0)
    assert m["load"] == [0.0, 0.0] and m["load_max_over_mean"] == 0.0 and m["jain"] == 0.0
    assert m["dead_experts"] == 2 and m["tokens_without_expert"] == 1.0
    assert m["specialization"]["raw_nmi"] == 0.0 and m["specialization"]["raw_mi_over_h_label"] == 0.0


def test_an_empty_count_table_carries_no_information():
    """No counts: I = H(E) = H(Y) = 0 (not NaN)."""
    assert mutual_information_bits(np.zeros((2, 2))) == (0.0, 0.0, 0.0)


def test_specialization_is_zero_when_a_side_has_no_entropy():
    """One label (H(Y) = 0) or one expert and one label (H(E) = H(Y) = 0): I(E;Y) = 0, and both
    scores are 0, not a division by zero."""
    one_label = layer_metrics(_layer([2, 2]), np.zeros(4, dtype=int), num_experts=2, permutations=0)
    assert one_label["specialization"]["raw_mi_over_h_label"] == 0.0 and one_label["specialization"]["raw_nmi"] == 0.0
    both = layer_metrics(_layer([4]), np.zeros(4, dtype=int), num_experts=1, permutations=0)
    assert both["specialization"]["raw_nmi"] == 0.0 and both["specialization"]["raw_mi_over_h_label"] == 0.0


def test_specialization_scores_at_their_record_precision():
    """Experts (0, 0, 1) for labels (0, 1, 1): table [[1, 1], [0, 1]] / 3. H(E) = H(Y) = h(1/3) =
    0.918296; I = H(Y) - H(Y|E) = h(1/3) - 2/3 = 0.251629; I/H(Y) = 0.274018 = NMI (equal entropies)."""
    ids = np.array([0, 0, 1])[:, None, None]
    m = layer_metrics(ids, np.array([0, 1, 1]), num_experts=2, permutations=0)
    h = -(1 / 3) * math.log2(1 / 3) - (2 / 3) * math.log2(2 / 3)
    mi = h - 2 / 3
    assert m["specialization"]["raw_mi_over_h_label"] == round(mi / h, 6) == 0.274018
    assert m["specialization"]["raw_nmi"] == 0.274018
    # no permutations: the chance correction subtracts 0
    assert m["specialization"]["nmi"] == 0.274018 and m["specialization"]["mi_over_h_label"] == 0.274018


def test_routing_metrics_mean_over_layers_at_four_digits():
    """Two layers over E = 3 with loads (1/3, 1/3, 1/3) and (1, 0, 0): utilization 1 and 1/3, Jain 1
    and 1/3, dead experts 0 and 2. The mean over layers is taken of the layers' recorded (4-digit)
    values: (1 + 0.3333) / 2 = 0.66665, rounded to 4 digits; dead experts mean 1.0."""
    ids = np.stack([np.array([0, 1, 2]), np.array([0, 0, 0])], axis=1)[:, :, None, None]  # [3, 2, 1, 1]
    r = routing_metrics(ids, np.zeros(3, dtype=int), num_experts=3, permutations=0)
    assert [lay["utilization"] for lay in r["layers"]] == [1.0, 0.3333]
    assert r["mean_over_layers"]["utilization"] == round((1 + 0.3333) / 2, 4)
    assert r["mean_over_layers"]["jain"] == round((1 + 0.3333) / 2, 4)
    assert r["mean_over_layers"]["dead_experts"] == 1.0 and r["mean_over_layers"]["nmi"] == 0.0  # one label
    assert len(r["layers"]) == 2 and r["num_experts"] == 3


def test_specialization_means_over_layers_at_four_digits():
    """NMI 0.274018 in each of two identical layers (see the precision test): mean 0.274."""
    ids = np.stack([np.array([0, 0, 1])] * 2, axis=1)[:, :, None, None]
    r = routing_metrics(ids, np.array([0, 1, 1]), num_experts=2, permutations=0)
    assert r["mean_over_layers"]["nmi"] == 0.274 and r["mean_over_layers"]["mi_over_h_label"] == 0.274


def test_records_use_twenty_permutations_seed_zero_and_each_selected_pick():
    """The defaults the width methods' records are computed with: 20 label shuffles for the chance
    correction, seed 0, and (not Soft MoE) every selected pick counted."""
    rng = np.random.default_rng(3)
    ids, labels = rng.integers(0, 4, size=(40, 1, 4, 1)), rng.integers(0, 3, size=40)
    r = routing_metrics(ids, labels, num_experts=4)
    assert r["assignment"] == "each selected pick"
    assert r["layers"][0]["specialization"]["chance_permutations"] == 20
    assert r == routing_metrics(ids, labels, num_experts=4, soft=False, permutations=20, seed=0)
    layer = layer_metrics(ids[:, 0], labels, num_experts=4)
    assert layer["specialization"]["chance_permutations"] == 20
    assert layer == layer_metrics(ids[:, 0], labels, num_experts=4, permutations=20, seed=0)


def test_js_divergence_by_hand_at_twelve_digits():
    """p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4); KL(p||m) = log2(4/3), KL(q||m) = (log2(2/3) +
    log2 2) / 2; JS = their mean, rounded to 12 digits. (Equal loads give 0: the doctest.)"""
    want = 0.5 * math.log2(4 / 3) + 0.5 * 0.5 * (math.log2(2 / 3) + 1.0)
    assert js_divergence_bits(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == round(want, 12)


@pytest.mark.parametrize("p,q", [([3, 1], [1, 3]), ([1, 2, 3], [3, 2, 1])])
def test_js_divergence_is_symmetric(p, q):
    """JS(p, q) = JS(q, p) and lies in [0, 1] bits."""
    a, b = js_divergence_bits(np.array(p, float), np.array(q, float)), js_divergence_bits(np.array(q, float), np.array(p, float))
    assert a == b and 0 < a < 1


def test_load_entropy_has_four_digits():
    """Loads 3/4, 1/4: H = 2 - (3/4) log2 3 = 0.811278 bits, recorded as 0.8113 (E = 2: normalised the same)."""
    m = layer_metrics(_layer([3, 1]), np.zeros(4, dtype=int), num_experts=2, permutations=0)
    assert round(2 - 0.75 * math.log2(3), 4) == m["entropy_bits"] == m["entropy_normalized"] == 0.8113


def test_an_expert_per_sample_explains_any_labels_by_chance_alone():
    """Eight samples, each routed to its own expert, labels 0/1: any labelling (also every shuffle)
    gives I = H(Y) = 1 bit, H(E) = 3 bits, so raw I/H(Y) = 1 and NMI = 1 / 2; the chance-corrected
    scores subtract the same values: 0."""
    spec = layer_metrics(np.arange(8)[:, None, None], np.array([0, 1] * 4), num_experts=8)["specialization"]
    assert spec["raw_mi_over_h_label"] == 1.0 and spec["raw_nmi"] == 0.5
    assert spec["mi_over_h_label"] == 0.0 and spec["nmi"] == 0.0


def test_share_of_tokens_without_an_expert_has_six_digits():
    """Three tokens, one whose only pick was dropped (-1): 1/3 = 0.333333."""
    m = layer_metrics(np.array([[[0], [-1], [1]]]), np.array([0]), num_experts=2, permutations=0)
    assert m["tokens_without_expert"] == 0.333333


def _h(p: float) -> float:
    """Binary entropy in bits."""
    return -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def test_per_sample_weighting_counts_each_sample_once_and_per_pick_each_pick():
    """Sample A (label 0) routes 4 tokens to experts 0, 0, 0, 1; sample B (label 1) one token to expert 1.
    Per sample: A weighs (3/4, 1/4), B (0, 1), each half: H(Y) = 1, H(E) = h(3/8), H(E|Y) = h(1/4) / 2.
    Per pick: 5 picks, table [[3, 0], [1, 1]]: H(Y) = h(1/5), H(E) = h(2/5), H(E|Y) = (4/5) h(1/4)."""
    ids = np.full((2, 4, 1), PAD)
    ids[0, :, 0] = [0, 0, 0, 1]
    ids[1, 0, 0] = 1
    spec = layer_metrics(ids, np.array([0, 1]), num_experts=2, permutations=0)["specialization"]
    mi_sample = _h(3 / 8) - _h(1 / 4) / 2
    mi_pick = _h(2 / 5) - 0.8 * _h(1 / 4)
    assert spec["weighting"] == "per sample"
    assert spec["raw_mi_over_h_label"] == round(mi_sample / 1.0, 6)
    assert spec["raw_nmi"] == round(mi_sample / ((_h(3 / 8) + 1) / 2), 6)
    assert spec["per_pick"]["raw_mi_over_h_label"] == round(mi_pick / _h(1 / 5), 6)
    assert spec["per_pick"]["raw_nmi"] == round(mi_pick / ((_h(2 / 5) + _h(1 / 5)) / 2), 6)
    assert spec["raw_nmi"] != spec["per_pick"]["raw_nmi"]


def test_the_chance_correction_reports_the_standard_error_of_its_mean():
    """Experts (0, 0, 1) for labels (0, 1, 1): a shuffle gives NMI a = 0.274018 (labels (0,1,1) or (1,0,1))
    or 1 (labels (1,1,0): a bijection). With n1 shuffles at 1 of R, the chance mean is
    (n1 + (R - n1) a) / R and its standard error sqrt(n1 (R - n1) / (R (R - 1))) (1 - a) / sqrt(R)."""
    r = 40
    spec = layer_metrics(np.array([0, 0, 1])[:, None, None], np.array([0, 1, 1]), num_experts=2,
                         permutations=r, seed=5)["specialization"]
    h = _h(1 / 3)
    a = (h - 2 / 3) / h
    n1 = r * (spec["chance_nmi"] - a) / (1 - a)
    assert abs(n1 - round(n1)) < 1e-3 and 0 < round(n1) < r   # both outcomes occurred
    n1 = round(n1)
    se = math.sqrt(n1 * (r - n1) / (r * (r - 1))) * (1 - a) / math.sqrt(r)
    assert spec["chance_nmi_se"] == round(se, 6)
    assert spec["nmi"] == round(spec["raw_nmi"] - spec["chance_nmi"], 6)
    # every shuffle alike (an expert per sample): no spread, standard error 0
    same = layer_metrics(np.arange(8)[:, None, None], np.array([0, 1] * 4), num_experts=8)["specialization"]
    assert same["chance_nmi_se"] == 0.0 and same["per_pick"]["chance_nmi_se"] == 0.0


def test_requested_load_its_imbalance_and_the_drop_rate():
    """Router asked 0, 0, 0, 1 (one padding position, -2, asks nothing); capacity dropped two of the
    three picks of expert 0. Requested counts (3, 1): shares 0.75 / 0.25, max/mean 3/2 = 1.5, CV = std/mean
    = 1/2 = 0.5; drop rate 2/4. The processed load is (1/2, 1/2)."""
    requested = np.array([[[0], [0], [0], [1], [PAD]]])
    ids = np.array([[[0], [-1], [-1], [1], [PAD]]])
    m = layer_metrics(ids, np.array([0]), num_experts=2, permutations=0, requested=requested)
    assert m["requested"] == {"load": [0.75, 0.25], "max_over_mean": 1.5, "cv": 0.5, "drop_rate": 0.5}
    assert m["load"] == [0.5, 0.5] and m["load_cv"] == 0.0
    r = routing_metrics(ids[:, None], np.array([0]), num_experts=2, permutations=0, requested=requested[:, None])
    assert r["mean_over_layers"]["requested_drop_rate"] == 0.5 and r["requested"] is True


def test_position_specialization_by_hand_and_its_chance_correction():
    """Every sample sends even tokens to expert 0 and odd ones to expert 1 (N = 4, E = 2): I(E; P) =
    H(E) = 1 bit, H(P) = 2 bits, NMI = 1 / 1.5. Shuffling each sample's positions destroys it: the
    corrected MI stays near 1 bit. Random experts: the corrected NMI is near 0."""
    ids = np.tile(np.arange(4) % 2, (200, 1))[:, :, None]
    pos = layer_metrics(ids, np.zeros(200, dtype=int), num_experts=2, position_buckets="token")["position"]
    assert pos["raw_mi_bits"] == 1.0 and pos["raw_nmi"] == round(2 / 3, 6) and pos["positions"] == 4
    assert 0.9 < pos["mi_bits"] < 1.0 and pos["chance_mi_bits"] > 0 and pos["chance_permutations"] == 20
    noise = np.random.default_rng(0).integers(0, 2, size=(200, 4, 1))
    assert abs(layer_metrics(noise, np.zeros(200, dtype=int), 2, position_buckets="token")["position"]["nmi"]) < 0.01


def test_position_shuffles_keep_padding_in_place():
    """Within-sample shuffles permute each sample's real tokens among their own positions only."""
    from ccbench.measurement.routing import _shuffled_positions

    is_token = np.array([[True, True, True, False, False], [True, False, False, False, False]])
    out = _shuffled_positions(is_token, np.random.default_rng(0))
    assert sorted(out[0, :3].tolist()) == [0, 1, 2] and sorted(out[0, 3:].tolist()) == [3, 4]
    assert out[1, 0] == 0 and sorted(out[1].tolist()) == [0, 1, 2, 3, 4]


def test_routing_recomputes_from_a_samples_file():
    """What a run record's routing section states (experts, shuffles, seed, position buckets, requested)
    is enough to recompute it from the per-sample arrays."""
    from ccbench.measurement.routing import routing_from_samples

    rng = np.random.default_rng(4)
    requested = rng.integers(0, 4, size=(30, 2, 6, 1))
    ids = np.where(rng.random(requested.shape) < 0.2, -1, requested)
    labels = rng.integers(0, 3, size=30)
    r = routing_metrics(ids, labels, 4, permutations=7, seed=3, requested=requested, position_buckets="log2")
    samples = {"trace.expert_ids": ids.astype(np.int16), "trace.expert_requested": requested.astype(np.int16),
               "label": labels.astype(np.int16)}
    assert routing_from_samples(r, samples) == r


def _committed_routing_records():
    """The committed run records (``results/``) whose routing section recomputes from their samples file
    (written since issue 24: requested picks stored)."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "results"
    found = []
    for path in sorted(root.rglob("*.json")):
        if path.name.startswith(("shift-", "transfer-")):
            continue
        routing = json.loads(path.read_text()).get("metrics", {}).get("routing") or {}
        if "requested" in routing:
            found.append(path)
    return found


@pytest.mark.parametrize("path", _committed_routing_records(), ids=lambda p: p.stem)
def test_every_routing_figure_of_a_committed_record_recomputes_from_its_samples_file(path):
    import json

    from ccbench.measurement.routing import routing_from_samples
    from ccbench.reporting.records import load_samples

    stored = json.loads(path.read_text())["metrics"]["routing"]
    again = routing_from_samples(stored, load_samples(path))
    declared = stored.pop("constant_by_construction", None)  # the method's METADATA, not a measured figure
    assert declared is None or set(declared) == {"statistics", "why"}
    assert json.loads(json.dumps(again)) == stored


def _committed_shift_routing_records():
    """The committed shift records whose samples file keeps each split's expert ids (since issue 24)."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "results"
    return [p for p in sorted(root.rglob("shift-*.json"))
            if any("domain_weighting" in c.get("routing_shift", {}) for c in json.loads(p.read_text())["conditions"])]


@pytest.mark.parametrize("path", _committed_shift_routing_records(), ids=lambda p: p.stem)
def test_every_routing_shift_figure_of_a_committed_shift_record_recomputes_from_its_samples_file(path):
    import json

    from ccbench.measurement.routing import routing_shift

    record = json.loads(path.read_text())
    with np.load(path.with_name(path.name[:-len(".json")] + ".samples.npz")) as z:
        for condition in record["conditions"]:
            stored = condition["routing_shift"]
            again = routing_shift(z["reference.expert_ids"], z[f"{condition['condition']}.expert_ids"],
                                  stored["num_experts"], stored["seed"])
            assert json.loads(json.dumps(again)) == stored, condition["condition"]
