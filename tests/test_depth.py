"""Depth family: exit rules, compaction, skipping, static depth and exit diagnostics."""
import numpy as np
import pytest
import torch

from ccbench.common import catalog
from ccbench.core.exits import exit_diagnostics
from ccbench.measurement.cost import CostTable, executed_macs, useful_macs


def _model(name, backbone, **config):
    return catalog.methods().get(name).build(backbone, **config).eval()


def test_threshold_zero_exits_first_above_one_exits_last_with_hand_macs(tiny_backbone, tiny_config):
    model = _model("early-exit", tiny_backbone)
    table = CostTable.from_config(tiny_config, units=model.cost_units())
    x = torch.randn(4, 3, 32, 32)
    head = 5 * tiny_config.embed_dim + tiny_config.embed_dim * tiny_config.num_classes  # LayerNorm + linear
    block = table.block(tiny_config.num_tokens)
    model.set_knob(0.0)
    first = model(x)
    assert first.trace["exit_block"].tolist() == [0] * 4
    assert useful_macs(table, first.trace).tolist() == [table.patch_embed + block + head] * 4
    assert torch.allclose(first.logits, model.exit_heads[0](model.backbone.blocks[0](model.backbone.embed(x))[:, 0]))
    model.set_knob(1.01)
    last = model(x)
    depth = tiny_config.depth
    assert last.trace["exit_block"].tolist() == [depth - 1] * 4
    assert useful_macs(table, last.trace).tolist() == [table.dense_macs() + (depth - 1) * head] * 4
    assert torch.allclose(last.logits, tiny_backbone(x), atol=1e-6)
    model.set_knob(0.0)
    assert executed_macs(model, x[:1]).macs == table.patch_embed + block + head


def test_patience_zero_exits_first_one_at_first_agreement(tiny_backbone):
    model = _model("patience", tiny_backbone)
    x = torch.randn(6, 3, 32, 32)
    preds = model.all_exit_logits(x).argmax(-1)                 # [B, depth]
    model.set_knob(0)
    assert model(x).trace["exit_block"].tolist() == [0] * 6
    model.set_knob(1)
    exits = model(x).trace["exit_block"].tolist()
    depth = preds.shape[1]
    for b in range(6):
        agree = [i for i in range(1, depth) if preds[b, i] == preds[b, i - 1]]
        assert exits[b] == (agree[0] if agree else depth - 1)


@pytest.mark.parametrize("name,knob", [("early-exit", 0.35), ("patience", 1)])
def test_compaction_matches_batch1(name, knob, tiny_backbone):
    model = _model(name, tiny_backbone)
    model.set_knob(knob)
    x = torch.randn(8, 3, 32, 32)
    batched = model(x)
    singles = [model(x[i:i + 1]) for i in range(8)]
    assert torch.allclose(batched.logits, torch.cat([s.logits for s in singles]), atol=1e-5)
    assert batched.trace["exit_block"].tolist() == [s.trace["exit_block"].item() for s in singles]


def test_skipped_block_is_exactly_the_identity(tiny_backbone, tiny_config):
    model = _model("layer-skip", tiny_backbone, target=0.5)
    with torch.no_grad():
        model.gates[2].bias.copy_(torch.tensor([-5.0, 5.0]))   # block 2 off for every sample
    x = torch.randn(3, 3, 32, 32)
    out = model(x)
    bb = model.backbone
    h = bb.embed(x)
    for i, block in enumerate(bb.blocks):
        if i != 2:
            h = block(h)
    assert torch.equal(out.logits, bb.classify(h[:, 0]))
    assert out.trace["tokens_per_block"][:, 2].tolist() == [0, 0, 0]


def test_layer_skip_mixed_gates_batch_equals_single(tiny_backbone):
    model = _model("layer-skip", tiny_backbone, target=0.5)
    torch.manual_seed(1)
    with torch.no_grad():
        for g in model.gates:
            torch.nn.init.normal_(g.weight, std=2.0)
            g.bias.zero_()
    x = torch.randn(8, 3, 32, 32)
    out = model(x)
    ran = out.trace["tokens_per_block"] > 0
    assert 0 < ran.float().mean() < 1 and not torch.all(ran == ran[:1])  # samples really differ
    single = torch.cat([model(x[i:i + 1]).logits for i in range(8)])
    assert torch.allclose(out.logits, single, atol=1e-5)


def test_static_depth_runs_the_first_k_blocks(tiny_backbone, tiny_config):
    model = _model("static-depth", tiny_backbone, blocks=2)
    assert len(model.backbone.blocks) == 2
    trace = model(torch.randn(2, 3, 32, 32)).trace
    assert trace["tokens_per_block"].tolist() == [[17, 17, 0, 0]] * 2


def test_exit_diagnostics_hand_case():
    all_preds = np.array([[1, 0, 0], [1, 1, 1], [0, 0, 1], [0, 1, 0], [2, 2, 2]])
    labels = np.array([1, 1, 1, 1, 0])
    exit_block = np.array([0, 2, 2, 1, 0])
    final = np.array([1, 1, 1, 1, 2])
    d = exit_diagnostics(all_preds, exit_block, final, labels, [0, 1, 2])
    assert d["exit_histogram"] == {0: 2, 1: 1, 2: 2}
    assert d["overthinking_rate"] == 0.4                       # samples 0 and 3
    assert d["accuracy_of_each_exit_alone"] == {0: 40.0, 1: 40.0, 2: 40.0}
    assert d["accuracy_of_exited_predictions"] == {0: 50.0, 1: 100.0, 2: 100.0}
    assert d["mean_blocks_run"] == 2.0


def test_early_exit_trains_every_head(tiny_backbone):
    model = catalog.methods().get("early-exit").build(tiny_backbone).train()
    out = model(torch.randn(4, 3, 32, 32))
    model.loss(out, torch.tensor([0, 1, 2, 3])).backward()
    assert all(h[1].weight.grad is not None and h[1].weight.grad.abs().sum() > 0 for h in model.exit_heads)


def test_calibration_drops_thresholds_every_sample_passes_at_the_first_head():
    """max-softmax >= 1/C always, so tau <= 1/C is one operating point (all exit at block 1): not calibrated."""
    from ccbench.core.backbones import ViTBackbone, ViTConfig

    sweep = catalog.methods().metadata("early-exit")["knob"]["sweep"]
    for classes, kept in ((2, [v for v in sweep if v > 0.5]), (10, sweep)):
        backbone = ViTBackbone(ViTConfig(img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2,
                                         num_classes=classes))
        model = _model("early-exit", backbone)
        assert model.calibration_sweep(sweep) == kept
        model.set_knob(min(sweep))
        x = torch.randn(5, 3, 32, 32)
        if classes == 2:  # the dropped values really are degenerate: everything leaves at the first head
            assert (model(x).trace["exit_block"] == 0).all()
    assert _model("early-exit", backbone, criterion="entropy").calibration_sweep(sweep) == sweep
    assert _model("patience", backbone).calibration_sweep([1, 2, 3]) == [1, 2, 3]
