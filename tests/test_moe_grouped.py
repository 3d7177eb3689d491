"""Grouped MoE execution (issue 18): the batched-matmul path against the reference loop over experts,
gradients, the weight cache, and the audit identity executed MACs = useful + declared padding."""
import pytest
import torch
from timm.layers import Mlp

from ccbench.baselines.width.moe import (
    ExpertBank,
    ExpertChoiceMoE,
    MoEficationMLP,
    SoftMoE,
    TopKMoE,
    expert_bank,
)
from ccbench.common import catalog
from ccbench.core.trace import declared_padding_macs
from ccbench.measurement.cost import CostTable, executed_macs, useful_macs

D = 16
LAYERS = [(TopKMoE, {"k": 1}), (TopKMoE, {"k": 2, "capacity_factor": 0.5}),
          (ExpertChoiceMoE, {"capacity_factor": 0.5}), (SoftMoE, {"slots": 2}), (MoEficationMLP, {"k": 2})]


def _layer(cls, kw):
    torch.manual_seed(0)
    layer = cls(Mlp(D, 32), D, num_experts=4, **kw)
    with torch.no_grad():   # experts that differ (upcycled copies are identical at the start)
        for p in layer.experts.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return layer


def _reference(layer, x):
    """The same layer through the loop over experts (``run_experts``)."""
    bank = expert_bank(layer)
    bank.grouped = False
    try:
        return layer(x)
    finally:
        bank.grouped = True


@pytest.mark.parametrize("max_padding", [0.0, float("inf")])   # sorted slices / always one padded bmm
@pytest.mark.parametrize("cls,kw", LAYERS)
def test_grouped_layer_equals_the_loop_over_experts(cls, kw, max_padding, monkeypatch):
    monkeypatch.setattr(ExpertBank, "max_padding", max_padding)
    layer = _layer(cls, kw).eval()
    x = torch.randn(3, 9, D)
    grouped = layer(x)
    ids, pad = layer.routing.expert_ids.clone(), layer.routing.padding_rows
    assert torch.allclose(grouped, _reference(layer, x), atol=1e-5)
    assert torch.equal(layer.routing.expert_ids, ids)
    assert layer.routing.padding_rows == 0                          # the loop never pads
    if cls in (ExpertChoiceMoE, SoftMoE) or max_padding == 0:
        assert pad == 0                                             # equal rows per expert, or no padding


@pytest.mark.parametrize("cls,kw", LAYERS)
def test_grouped_training_gradients_equal_the_loop(cls, kw):
    layer = _layer(cls, kw).train()
    x = torch.randn(2, 9, D)
    grads = []
    for grouped in (True, False):
        layer.zero_grad()
        out = layer(x) if grouped else _reference(layer, x)
        (out.square().sum() + layer.routing.aux_loss).backward()
        grads.append([p.grad.clone() if p.grad is not None else None for p in layer.parameters()])
    for a, b in zip(*grads):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-4)


def test_stacked_weight_cache_follows_loaded_weights():
    layer = _layer(TopKMoE, {"k": 2}).eval()
    x = torch.randn(1, 6, D)
    before = layer(x)
    state = {k: v + 1.0 if k.startswith("experts.") else v for k, v in layer.state_dict().items()}
    layer.load_state_dict(state)
    after = layer(x)
    assert not torch.allclose(after, before)
    assert torch.allclose(after, _reference(layer, x), atol=1e-5)
    assert not any("bank" in k for k in layer.state_dict())


def test_padding_rows_count_the_busiest_expert(monkeypatch):
    monkeypatch.setattr(ExpertBank, "max_padding", float("inf"))
    layer = TopKMoE(Mlp(D, 32), D, num_experts=4, k=1, capacity_factor=4.0).eval()
    with torch.no_grad():
        layer.router.weight.zero_()
        for e in range(4):
            layer.router.weight[e, e] = 10.0
    wants = [0, 0, 0, 1, 2]                                          # expert 0 has 3 rows, 3 has none
    layer(torch.nn.functional.one_hot(torch.tensor(wants), D).float()[None])
    assert layer.routing.expert_rows.tolist() == [5]
    assert layer.routing.padding_rows == 4 * 3 - 5
    monkeypatch.setattr(ExpertBank, "max_padding", 1.0)           # 7 padded rows > 1.0 * 5: slices instead
    layer(torch.nn.functional.one_hot(torch.tensor(wants), D).float()[None])
    assert layer.routing.padding_rows == 0


@pytest.mark.parametrize("max_padding", [0.25, float("inf")])
@pytest.mark.parametrize("name", ["moe-topk", "moe-expert-choice", "soft-moe", "moefication"])
def test_executed_equals_useful_plus_declared_padding(name, max_padding, tiny_backbone, tiny_config, monkeypatch):
    monkeypatch.setattr(ExpertBank, "max_padding", max_padding)
    model = catalog.methods().get(name).build(tiny_backbone)
    x = torch.randn(5, 3, 32, 32)
    if hasattr(model, "prepare"):
        model.prepare(x)
    model.eval()
    table = CostTable.from_config(tiny_config, units=model.cost_units())
    for xi in (x[:1], x[1:2], x):
        trace = model(xi).trace
        useful = useful_macs(table, trace).sum().item()
        padding = declared_padding_macs(trace, table.units).sum().item()
        assert executed_macs(model, xi).macs == pytest.approx(useful + padding, rel=1e-9)
        if name in ("moe-expert-choice", "soft-moe"):
            assert padding == 0
