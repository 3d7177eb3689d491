"""Property-based tests (hypothesis) of the invariants the benchmark's numbers rest on: the cost
table, MoE dispatch, halting, traces, the bootstrap interval and the chance-corrected NMI.

Examples are few and tiny (``max_examples`` small, no deadline) so that the file stays fast on two
cores; each property is also checked against a written-out reference, not the current outputs."""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccbench.core.backbones import ViTConfig
from ccbench.core.trace import PAD_TOKEN, PADDING_EMBEDDED, PADDING_TOKENS, Trace
from ccbench.measurement.cost import CostTable, useful_macs

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

CFG = ViTConfig(img_size=32, patch_size=8, embed_dim=8, depth=4, num_heads=2, num_classes=3)
N = CFG.num_tokens  # 17


def _table(**units):
    return CostTable.from_config(CFG, units=units)


# ------------------------------------------------------------------ cost: monotone, dense when nothing skipped

token_rows = st.lists(st.integers(0, N), min_size=CFG.depth, max_size=CFG.depth)


@FAST
@given(token_rows, token_rows, st.integers(0, 5), st.integers(0, 5))
def test_useful_macs_are_monotone_in_tokens_and_units(a, b, ua, ub):
    lo = torch.tensor([[min(x, y) for x, y in zip(a, b)]])
    hi = torch.tensor([[max(x, y) for x, y in zip(a, b)]])
    t = _table(router=7)
    small = useful_macs(t, Trace({"tokens_per_block": lo, "units/router": torch.tensor([min(ua, ub)])}))
    big = useful_macs(t, Trace({"tokens_per_block": hi, "units/router": torch.tensor([max(ua, ub)])}))
    assert small.item() <= big.item()
    # written out: embedding + head + each block on its tokens + 7 per router unit
    ref = t.patch_embed + t.head + sum(t.block(n) for n in hi[0].tolist()) + 7 * max(ua, ub)
    assert big.item() == ref


@FAST
@given(st.integers(0, CFG.depth), st.integers(0, CFG.depth))
def test_useful_macs_grow_with_blocks_kept_and_equal_dense_when_all_run(k1, k2):
    def kept(k):
        return useful_macs(_table(), Trace({"tokens_per_block": torch.tensor([[N] * k + [0] * (CFG.depth - k)])}))

    assert (kept(min(k1, k2)) <= kept(max(k1, k2))).all()
    assert kept(CFG.depth).item() == _table().dense_macs()
    assert kept(k1).item() == _table().dense_macs() - (CFG.depth - k1) * _table().block(N)


@FAST
@given(st.integers(1, 8), st.integers(2, 6), st.integers(1, 3))
def test_expert_rows_add_their_cost_and_dense_trace_is_dense(rows, experts, batch):
    t = _table(expert_row=11)
    dense = Trace({"tokens_per_block": torch.full((batch, CFG.depth), N)})
    assert useful_macs(t, dense).tolist() == [t.dense_macs()] * batch
    mlp_off = torch.zeros(batch, CFG.depth, dtype=torch.long)
    moe = Trace({"tokens_per_block": dense["tokens_per_block"], "mlp_tokens_per_block": mlp_off,
                 "units/expert_row": torch.full((batch,), rows * experts)})
    expected = t.dense_macs() - CFG.depth * t.mlp_part(N) + 11 * rows * experts
    assert useful_macs(t, moe).tolist() == [expected] * batch


# ------------------------------------------------------------------ MoE dispatch conserves tokens

def _mlp(d):
    from timm.layers import Mlp
    torch.manual_seed(0)
    return Mlp(d, 2 * d)


@FAST
@given(st.integers(2, 6), st.integers(1, 3), st.floats(0.2, 3.0), st.integers(1, 12), st.integers(0, 10 ** 6))
def test_topk_dispatch_sends_each_token_to_at_most_k_experts_within_capacity(experts, k, factor, tokens, seed):
    from ccbench.baselines.width.moe import TopKMoE

    d = 4
    layer = TopKMoE(_mlp(d), d, num_experts=experts, k=k, capacity_factor=factor).eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        layer.router.weight.normal_()
        x = torch.randn(2, tokens, d)
        out = layer(x)
    ids, w = layer.routing.expert_ids, layer.routing.weights                  # [B, N, k]
    kk = min(k, experts)
    assert ids.shape == (2, tokens, kk)
    for b in range(2):
        for n in range(tokens):
            picked = [e for e in ids[b, n].tolist() if e >= 0]
            assert len(picked) == len(set(picked)) <= kk                       # distinct, at most k
        for e in range(experts):
            assert int((ids[b] == e).sum()) <= layer.capacity(tokens)           # capacity respected
    assert layer.routing.expert_rows.tolist() == (ids >= 0).sum((1, 2)).tolist()
    assert torch.all(w[ids < 0] == 0) and torch.all(w.sum(-1) <= 1 + 1e-5)
    if layer.capacity(tokens) >= tokens:                                       # nothing can overflow
        assert (ids >= 0).all() and torch.allclose(w.sum(-1), torch.ones(2, tokens), atol=1e-5)
    # the output is the weighted sum of each token's kept experts (written out token by token)
    with torch.no_grad():
        for b in range(2):
            for n in range(tokens):
                ref = sum((w[b, n, j] * layer.experts[e](x[b, n]) for j, e in enumerate(ids[b, n].tolist()) if e >= 0),
                          torch.zeros(d))
                assert torch.allclose(out[b, n], ref, atol=1e-5)


@FAST
@given(st.integers(2, 6), st.floats(0.2, 3.0), st.integers(1, 12), st.integers(0, 10 ** 6))
def test_expert_choice_takes_exactly_its_capacity_per_sample(experts, factor, tokens, seed):
    from ccbench.baselines.width.moe import ExpertChoiceMoE

    layer = ExpertChoiceMoE(_mlp(4), 4, num_experts=experts, capacity_factor=factor).eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        layer(torch.randn(2, tokens, 4))
    ids = layer.routing.expert_ids                                              # [B, N, E]
    cap = min(tokens, math.ceil(factor * tokens / experts))
    for e in range(experts):
        assert ((ids == e).sum((1, 2)) == cap).all()
    assert layer.routing.expert_rows.tolist() == [cap * experts] * 2
    w = layer.routing.weights
    took = (ids >= 0).any(-1)
    assert torch.allclose(w.sum(-1)[took], torch.ones(int(took.sum())), atol=1e-5)
    assert torch.all(w[ids < 0] == 0)


# ------------------------------------------------------------------ halting

@FAST
@given(st.integers(1, 6), st.floats(0.05, 1.0), st.integers(0, 10 ** 6))
def test_halting_depth_is_the_first_block_reaching_the_threshold(depth, threshold, seed):
    from ccbench.core.sampling import HaltingState, halting_step

    g = torch.Generator().manual_seed(seed)
    h = torch.rand(depth, 3, 5, generator=g)
    state = HaltingState.start(3, 5)
    total = torch.zeros(3, 5)
    for i in range(depth):
        state, w = halting_step(state, h[i], threshold, i, last=i == depth - 1)
        total += w
    assert torch.allclose(total, torch.ones(3, 5), atol=1e-5)
    # reference: the first block whose cumulative score reaches the threshold, else the last
    cum, expected = torch.zeros(3, 5), torch.full((3, 5), depth - 1)
    for i in range(depth - 1):
        cum = cum + h[i]
        expected = torch.where((cum >= threshold) & (expected == depth - 1), i, expected)
    assert torch.equal(state.halt_block, expected)
    assert ((state.halt_block >= 0) & (state.halt_block < depth)).all()       # depths within [1, L]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(threshold=st.floats(0.05, 0.999))
def test_avit_halting_within_depth_and_no_token_outlives_its_class_token(threshold, tiny_backbone):
    from ccbench.baselines.avit import build

    torch.manual_seed(0)
    x = torch.randn(6, 3, 32, 32)
    model = build(tiny_backbone)
    model.prepare(x)
    model.eval()
    model.set_knob(threshold)
    depth = len(tiny_backbone.blocks)
    for mode in ("remove", "mask"):
        model.mode = mode
        tr = model(x).trace
        halt, tokens = tr["halt_block"], tr["tokens_per_block"]
        assert ((halt >= 0) & (halt < depth)).all()
        assert (halt <= halt[:, :1]).all()                                    # the class-token rule
        for i in range(depth):                                                # tokens alive at block i
            assert torch.equal(tokens[:, i], torch.where(halt[:, 0] >= i, (halt >= i).sum(1), 0))


# ------------------------------------------------------------------ traces

per_token = st.lists(st.integers(1, 6), min_size=1, max_size=4)


@FAST
@given(per_token, st.integers(0, 10 ** 6))
def test_trace_cat_pads_per_token_fields_and_select_inverts_it(lengths, seed):
    g = torch.Generator().manual_seed(seed)
    parts = [Trace({"tokens_per_block": torch.randint(0, 9, (1, 3), generator=g),
                    "input_tokens": torch.tensor([n]),
                    "halt_block": torch.randint(0, 3, (1, n), generator=g),
                    "expert_weights": torch.rand(1, 2, n, 1, generator=g)}) for n in lengths]
    whole = Trace.cat(parts)
    longest = max(lengths)
    assert whole.batch_size == len(lengths) and whole["halt_block"].shape == (len(lengths), longest)
    for i, (n, part) in enumerate(zip(lengths, parts)):
        row = whole.select(torch.tensor([i]))
        assert torch.equal(row["halt_block"][:, :n], part["halt_block"])
        assert (row["halt_block"][:, n:] == PAD_TOKEN).all()                  # integer fields: PAD_TOKEN
        assert torch.equal(row["expert_weights"][..., :n, :], part["expert_weights"])
        assert (row["expert_weights"][..., n:, :] == 0).all()                 # float fields: 0
    t = CostTable.from_config(CFG)
    assert torch.equal(useful_macs(t, whole), torch.cat([useful_macs(t, p) for p in parts]))


@pytest.mark.parametrize("name,knob", [("tome", 2), ("evit", 0.5), ("dynamicvit", 0.5), ("random-drop", 0.5),
                                       ("avit", 0.6), ("early-exit", 0.35), ("patience", 1), ("layer-skip", None),
                                       ("static-depth", None), ("moe-topk", 1), ("moe-expert-choice", 0.5),
                                       ("soft-moe", 2), ("moefication", 2)])
def test_traces_do_not_depend_on_the_batch(name, knob, tiny_backbone):
    from ccbench.common import catalog

    model = catalog.methods().get(name).build(tiny_backbone)
    torch.manual_seed(1)
    x = torch.randn(5, 3, 32, 32)
    if hasattr(model, "prepare"):
        model.prepare(x)
    model.eval()
    if knob is not None:
        model.set_knob(knob)
    with torch.no_grad():
        batched = model(x).trace
        singles = Trace.cat([model(x[i:i + 1]).trace for i in range(5)])
    assert set(batched) == set(singles)
    for field in batched:
        if field in (PADDING_TOKENS, PADDING_EMBEDDED):  # padding to a batch's longest row is the batch's own:
            assert not singles[field].any(), field       # a batch of one pads nothing
            continue
        if batched[field].is_floating_point():
            assert torch.allclose(batched[field], singles[field], atol=1e-5), field
        else:
            assert torch.equal(batched[field], singles[field]), field


# ------------------------------------------------------------------ bootstrap CI of a proportion

@settings(max_examples=12, deadline=None)
@given(st.integers(200, 600), st.floats(0.2, 0.8), st.sampled_from([0.9, 0.95]), st.integers(0, 100))
def test_bootstrap_ci_width_is_within_ten_percent_of_the_normal_approximation(n, p, level, seed):
    from ccbench.measurement.stats import bootstrap_ci

    ones = round(p * n)
    phat = ones / n
    lo, hi = bootstrap_ci(torch.tensor([1.0] * ones + [0.0] * (n - ones)), level=level, seed=seed)
    z = {0.9: 1.644854, 0.95: 1.959964}[level]
    normal = 2 * z * math.sqrt(phat * (1 - phat) / n)
    assert abs((hi - lo) / normal - 1) < 0.10
    assert lo < phat < hi


# ------------------------------------------------------------------ chance-corrected NMI

@settings(max_examples=10, deadline=None)
@given(st.integers(12, 40), st.integers(2, 6), st.integers(2, 4), st.integers(0, 10 ** 6))
def test_chance_corrected_nmi_is_zero_on_average_for_independent_small_samples(samples, experts, labels, seed):
    from ccbench.measurement.routing import layer_metrics

    rng = np.random.default_rng(seed)
    corrected = []
    for _ in range(12):
        ids = rng.integers(0, experts, size=(samples, 2, 1))
        spec = layer_metrics(ids, rng.integers(0, labels, size=samples), experts, permutations=30, seed=seed)
        corrected.append(spec["specialization"]["nmi"])
    assert abs(np.mean(corrected)) < 0.06


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 6), st.integers(0, 10 ** 6))
def test_nmi_of_a_bijection_is_one_raw_and_near_one_corrected(classes, seed):
    from ccbench.measurement.routing import layer_metrics

    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(300) % classes)
    relabel = rng.permutation(classes)                                         # any one-to-one expert naming
    ids = np.broadcast_to(relabel[labels][:, None, None], (300, 3, 1)).copy()
    spec = layer_metrics(ids, labels, classes, permutations=10, seed=seed)["specialization"]
    assert spec["raw_nmi"] == pytest.approx(1.0, abs=1e-6) and spec["raw_mi_over_h_label"] == pytest.approx(1.0, abs=1e-6)
    assert spec["nmi"] == pytest.approx(1.0, abs=0.03)
