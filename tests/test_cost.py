"""Useful MACs from traces against fvcore's executed MACs."""
import pytest
import torch

from ccbench.baselines.avit import build as build_avit
from ccbench.baselines.dense import build as build_dense
from ccbench.common import catalog
from ccbench.core.backbones import ViTConfig
from ccbench.core.trace import declared_padding_macs
from ccbench.measurement.cost import CostTable, executed_macs, useful_macs
from ccbench.reporting.record_schema import NO_KNOB


def test_dense_useful_equals_fvcore_executed(tiny_backbone, tiny_config):
    model = build_dense(tiny_backbone).eval()
    x = torch.randn(3, 3, 32, 32)
    table = CostTable.from_config(tiny_config)
    useful = useful_macs(table, model(x).trace)
    assert torch.all(useful == table.dense_macs())
    audit = executed_macs(model, x)
    assert audit.macs == int(useful.sum().item())
    assert "aten::scaled_dot_product_attention" not in audit.unsupported_ops  # our handle counts it


def test_timm_deit_tiny_reference_count():
    import timm

    model = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    audit = executed_macs(model, torch.randn(1, 3, 224, 224))
    # timm's results CSV: 1.26 GMACs; the table applies the final norm to one token, timm to 197
    assert round(audit.macs / 1e9, 2) == 1.26
    cfg = ViTConfig(img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3, num_classes=1000)
    assert abs(CostTable.from_config(cfg).dense_macs() - audit.macs) == 5 * 192 * 196


def test_avit_batch1_executed_equals_useful_and_batchN_pads(tiny_backbone, tiny_config):
    model = build_avit(tiny_backbone)
    x = torch.randn(8, 3, 32, 32)
    model.prepare(x)
    model.eval()
    model.set_knob(0.5)
    table = CostTable.from_config(tiny_config)
    useful = useful_macs(table, model(x).trace)
    for i in range(4):
        assert executed_macs(model, x[i:i + 1]).macs == int(useful[i].item())
    assert useful.max() < table.dense_macs()
    batch = executed_macs(model, x).macs
    assert batch >= useful.sum().item()  # padding to the longest sample is executed, not useful


def test_block_cost_hand_count():
    cfg = ViTConfig(img_size=16, patch_size=8, embed_dim=4, depth=1, num_heads=1, mlp_ratio=2.0, num_classes=3)
    t = CostTable.from_config(cfg)
    n, d, h = 5, 4, 8
    assert t.block(n) == n * (10 * d + 4 * d * d + 2 * d * h) + 2 * n * n * d
    assert t.patch_embed == 4 * d * 3 * 64
    assert t.head == 5 * d + d * 3


def test_timm_deit_small_reference_count():
    import timm

    model = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    audit = executed_macs(model, torch.randn(1, 3, 224, 224))
    assert abs(audit.macs / 1e9 - 4.61) / 4.61 < 0.01  # timm's results CSV: 4.61 GMACs


TINY_SAVING_KNOB = {"tome": 2, "static-res": 24, "soft-moe": 2, "moe-topk": 1, "moe-expert-choice": 0.5,
                    "moefication": 2, "early-exit": 0.3, "patience": 1,
                    "static-depth": None, "layer-skip": None}   # None: the built (trained) value


def _branch_only_units(name: str, table: CostTable, trace) -> tuple[int, int]:
    """``(MACs of one unit, how many units at most)`` whose result may only decide a Python branch, which
    fvcore drops from the traced graph (``test_cost_toys.test_fvcore_drops_a_head_that_only_drives_a_branch``;
    DESIGN.md section 4): the exit heads whose logits were not the output (fewer when a head's logits
    also feed a later decision, e.g. patience comparing consecutive predictions), and layer-skip's gates."""
    if name in ("early-exit", "patience"):
        heads = int(trace["units/exit_head"].item())
        output_head = 1 - int(trace["final_head_runs"].item())   # the exit head that gave the logits
        return table.units["exit_head"], heads - output_head
    if name == "layer-skip":
        return table.units["skip_gate"], int(trace["units/skip_gate"].item())
    return 1, 0


@pytest.mark.parametrize("name", catalog.methods().names())
def test_every_method_useful_vs_executed_at_batch1(name, tiny_backbone, tiny_config):
    """Methods that physically skip compute: executed == useful + declared padding exactly at batch 1, up to the
    documented counter gap (branch-only heads and gates, which fvcore drops); methods that mask:
    executed is the dense count and exceeds useful by more than the 2 % flag threshold whenever they
    skip anything."""
    model = catalog.methods().get(name).build(tiny_backbone)
    x = torch.randn(6, 3, 32, 32)
    if hasattr(model, "prepare"):
        model.prepare(x)
    model.eval()
    if catalog.methods().metadata(name)["knob"]["name"] != NO_KNOB and TINY_SAVING_KNOB.get(name, 0.5) is not None:  # skips compute on the tiny backbone
        model.set_knob(TINY_SAVING_KNOB.get(name, 0.5))
    table = CostTable.from_config(tiny_config, units=model.cost_units())
    for i in range(3):
        xi = x[i:i + 1]
        trace = model(xi).trace
        useful = useful_macs(table, trace).item()
        padding = declared_padding_macs(trace, table.units).item()  # grouped MoE: padded expert rows
        executed = executed_macs(model, xi).macs
        if model.execution == "masked":
            assert executed == table.dense_macs()
            if useful < table.dense_macs():
                assert executed > 1.02 * useful
        else:
            assert useful == int(useful)
            unit, most = _branch_only_units(name, table, trace)
            gap = int(useful + padding) - executed                    # whole branch-only units, never anything else
            assert gap % unit == 0 and 0 <= gap // unit <= most, (gap, unit, most)
