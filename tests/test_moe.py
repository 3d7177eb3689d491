"""Width family: routing with hand-set routers, capacities, Soft MoE weights, MoEfication exactness,
routing statistics on hand-made cases."""
import math

import numpy as np
import pytest
import torch
from timm.layers import Mlp

from ccbench.baselines.width.moe import (
    ExpertChoiceMoE,
    MoEficationMLP,
    SoftMoE,
    TopKMoE,
    balanced_kmeans,
)
from ccbench.measurement.routing import (
    layer_metrics,
    mutual_information_bits,
    routing_metrics,
)

D = 4


def _mlp(hidden: int = 8) -> Mlp:
    torch.manual_seed(0)
    return Mlp(D, hidden)


def _hand_router(layer, experts: int) -> None:
    """Router = the first ``experts`` input channels: a token one-hot on channel e goes to expert e."""
    with torch.no_grad():
        layer.router.weight.zero_()
        for e in range(experts):
            layer.router.weight[e, e % D] = 10.0


def test_topk_sends_tokens_to_the_expected_experts_and_drops_over_capacity():
    layer = TopKMoE(_mlp(), D, num_experts=4, k=1, capacity_factor=1.0).eval()
    _hand_router(layer, 4)
    # 8 tokens: five want expert 0, one each for 1..3; capacity = ceil(1.0 * 1 * 8 / 4) = 2
    wants = [0, 0, 1, 0, 2, 0, 3, 0]
    x = torch.nn.functional.one_hot(torch.tensor(wants), D).float()[None]
    out = layer(x)
    ids = layer.routing.expert_ids[0, :, 0].tolist()
    assert ids == [0, 0, 1, -1, 2, -1, 3, -1]          # the 3rd, 4th and 5th asks for expert 0 are dropped
    assert torch.all(out[0, [3, 5, 7]] == 0)            # dropped tokens get no MLP output
    assert layer.routing.expert_rows.tolist() == [5]
    # kept tokens get exactly their expert's output (renormalised top-1 weight = 1)
    assert torch.allclose(out[0, 0], layer.experts[0](x[0, 0]), atol=1e-6)


def test_topk_second_choices_queue_after_all_first_choices():
    layer = TopKMoE(_mlp(), D, num_experts=4, k=2, capacity_factor=0.5).eval()   # capacity 1 per expert
    with torch.no_grad():
        layer.router.weight.copy_(torch.tensor([[3.0, 0, 0, 0], [2.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]))
    x = torch.tensor([[[1.0, 0, 0, 0], [1.0, 0, 0, 0]]])   # both tokens: first choice 0, second choice 1
    layer(x)
    assert layer.routing.expert_ids[0].tolist() == [[0, 1], [-1, -1]]


def test_expert_choice_respects_capacity():
    layer = ExpertChoiceMoE(_mlp(), D, num_experts=4, capacity_factor=1.0).eval()
    x = torch.randn(3, 10, D)
    layer(x)
    ids = layer.routing.expert_ids                          # [B, N, E]
    cap = math.ceil(1.0 * 10 / 4)
    for e in range(4):
        assert torch.all((ids == e).sum((1, 2)) == cap)     # every expert takes exactly its capacity per sample
    assert layer.routing.expert_rows.tolist() == [4 * cap] * 3
    w = layer.routing.weights
    taken = (ids >= 0).any(-1)
    assert torch.allclose(w.sum(-1)[taken], torch.ones(int(taken.sum())))


def test_soft_moe_weights_and_identity_dispatch_equal_the_dense_mlp():
    mlp = _mlp()
    layer = SoftMoE(mlp, D, num_experts=2, slots=3).eval()
    x = torch.randn(2, 5, D)
    dispatch, combine = layer.slot_weights(x)
    assert torch.allclose(dispatch.sum(1), torch.ones(2, 6))     # each slot: convex mix of tokens
    assert torch.allclose(combine.sum(2), torch.ones(2, 5))      # each token: convex mix of slots
    n = 5
    one = SoftMoE(mlp, D, num_experts=1, slots=n).eval()
    one.slot_logits = lambda t: 100.0 * torch.eye(n).expand(t.shape[0], -1, -1)
    assert torch.allclose(one(x), mlp(x), atol=1e-5)


def test_moefication_with_all_experts_is_exactly_dense_and_partitions_units():
    mlp = _mlp(hidden=16)
    layer = MoEficationMLP(mlp, D, num_experts=4, k=4).eval()
    x = torch.randn(2, 7, D)
    assert torch.equal(layer(x), mlp(x))
    assert sorted(layer.perm.tolist()) == list(range(16))
    assert torch.bincount(balanced_kmeans(torch.randn(16, 3), 4)).tolist() == [4, 4, 4, 4]
    layer.k = 2
    out = layer(x)
    assert layer.routing.expert_ids.shape == (2, 7, 2) and not torch.equal(out, mlp(x))


def test_topk_initial_upcycled_output_equals_dense_when_nothing_is_dropped():
    mlp = _mlp()
    layer = TopKMoE(mlp, D, num_experts=4, k=2, capacity_factor=4.0).eval()
    x = torch.randn(2, 6, D)
    assert torch.allclose(layer(x), mlp(x), atol=1e-6)


def test_routing_metrics_hand_case():
    # one layer, 2 samples x 2 tokens x 1 pick, E = 4: loads 2/4, 1/4, 1/4, 0
    ids = np.array([[[0], [1]], [[0], [2]]])
    m = layer_metrics(ids, np.array([0, 1]), num_experts=4, permutations=0)
    assert m["load"] == [0.5, 0.25, 0.25, 0.0]
    assert m["dead_experts"] == 1 and m["utilization"] == 0.75
    assert m["load_max_over_mean"] == 2.0
    assert m["entropy_bits"] == 1.5
    assert m["jain"] == round(16 / (4 * 6), 4)
    # table: expert 0 -> labels {0, 1}; expert 1 -> 0; expert 2 -> 1: I = H(Y) - H(Y|E) = 1 - 0.5 = 0.5 bits
    mi, he, hy = mutual_information_bits(np.array([[1, 1], [1, 0], [0, 1], [0, 0]]))
    assert (round(mi, 6), he, hy) == (0.5, 1.5, 1.0)
    assert m["specialization"]["raw_mi_over_h_label"] == 0.5
    assert m["specialization"]["raw_nmi"] == round(0.5 / 1.25, 6)
    dropped = layer_metrics(np.array([[[0], [-1]]]), np.array([0]), num_experts=2, permutations=0)
    assert dropped["tokens_without_expert"] == 0.5


def test_chance_corrected_nmi_zero_when_independent_one_for_a_bijection():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=400)
    random_ids = rng.integers(0, 4, size=(400, 1, 16, 1))
    bijection = np.broadcast_to(labels[:, None, None, None], (400, 1, 16, 1)).copy()
    r = routing_metrics(random_ids, labels, num_experts=4)["mean_over_layers"]
    b = routing_metrics(bijection, labels, num_experts=4)["mean_over_layers"]
    assert abs(r["nmi"]) < 0.01 and abs(r["mi_over_h_label"]) < 0.01
    assert b["nmi"] == pytest.approx(1.0, abs=0.01) and b["mi_over_h_label"] == pytest.approx(1.0, abs=0.01)
    one_expert = routing_metrics(np.zeros((10, 1, 3, 1), dtype=int), np.arange(10) % 2, num_experts=4)
    assert one_expert["layers"][0]["specialization"]["raw_nmi"] == 0.0    # H(E) = 0


@pytest.mark.parametrize("name", ["moe-topk", "moe-expert-choice", "soft-moe", "moefication"])
def test_width_method_trace_metrics_and_training(name, tiny_backbone):
    from ccbench.common import catalog

    model = catalog.methods().get(name).build(tiny_backbone)
    x = torch.randn(4, 3, 32, 32)
    if hasattr(model, "prepare"):
        model.prepare(x)
    model.train()
    out = model(x)
    model.loss(out, torch.tensor([0, 1, 2, 3])).backward()
    routers = [p for n, p in model.named_parameters() if "router" in n or "phi" in n]
    assert routers and all(p.grad is not None for p in routers)
    model.eval()
    out = model(x)
    extra = model.extra_metrics(out.trace, torch.tensor([0, 1, 0, 1]), out.logits.argmax(-1), lambda: [x])
    assert len(extra["routing"]["layers"]) == len(model.moe_blocks)
    assert 0 < extra["active_params_per_token"] <= extra["params_total"]


def test_moefication_router_regression_trains_the_router_alone():
    """With everything trainable (a full transfer), the routers' regression loss reaches the router only: before,
    its gradient through the layer's input collapsed a transferred body's features."""
    layer = MoEficationMLP(_mlp(hidden=16), D, num_experts=4, k=2).train()
    x = torch.randn(2, 7, D, requires_grad=True)
    out = layer(x)
    layer.routing.aux_loss.backward()
    assert x.grad is None
    assert all(p.grad is None for name, p in layer.named_parameters() if not name.startswith("router."))
    assert all(p.grad.abs().sum() > 0 for p in layer.router.parameters())
    out.sum().backward()                              # the layer's output still trains the experts and its input
    assert x.grad.abs().sum() > 0 and layer.experts[0][0].weight.grad.abs().sum() > 0


def test_moefication_all_experts_cache_follows_loaded_weights():
    mlp = _mlp(hidden=16)
    layer = MoEficationMLP(mlp, D, num_experts=4, k=4).eval()
    x = torch.randn(1, 3, D)
    before = layer(x)
    state = {k: v + 1.0 if k.startswith("experts.") else v for k, v in layer.state_dict().items()}
    layer.load_state_dict(state)
    assert not torch.allclose(layer(x), before)       # the cached reassembly was redone
