"""The token family: exactness at the no-op knob, keep counts, merging, gradients, batch independence."""
import math

import pytest
import torch

from ccbench.baselines.dynamicvit import build as build_dynamicvit
from ccbench.baselines.tome import bipartite_merge_plan, merge_tokens
from ccbench.common import catalog
from ccbench.core.token_ops import kept_patches, stage_blocks
from ccbench.measurement.cost import CostTable, useful_macs


@pytest.mark.parametrize("name,noop", [("tome", 0), ("evit", 1.0), ("dynamicvit", 1.0), ("random-drop", 1.0)])
def test_noop_knob_reproduces_dense_logits(name, noop, tiny_backbone):
    x = torch.randn(3, 3, 32, 32)
    dense = tiny_backbone(x)
    model = catalog.methods().get(name).build(tiny_backbone).eval()
    model.set_knob(noop)
    out = model(x)
    if name in ("tome", "evit"):  # the unmodified blocks run: bit-identical
        assert torch.equal(out.logits, dense)
    else:
        assert torch.allclose(out.logits, dense, atol=1e-5)
    assert torch.all(out.trace["tokens_per_block"] == tiny_backbone.config.num_tokens)


@pytest.mark.parametrize("rho", [0.3, 0.5, 0.7])
def test_dynamicvit_keeps_ceil_rho_s_n_patch_tokens(rho, tiny_backbone, tiny_config):
    model = build_dynamicvit(tiny_backbone).eval()
    model.set_knob(rho)
    tokens = model(torch.randn(2, 3, 32, 32)).trace["tokens_per_block"]
    n = tiny_config.num_patches
    stages = stage_blocks(tiny_config.depth)
    expected = [n + 1] * tiny_config.depth
    for s, start in enumerate(stages, 1):
        for i in range(start, tiny_config.depth):
            expected[i] = 1 + math.ceil(rho ** s * n - 1e-9)
    assert tokens.tolist() == [expected, expected]
    assert kept_patches(64, 0.7, 2) == 32  # 0.49 * 64 = 31.36 -> 32


def test_dynamicvit_training_reaches_predictors_and_keeps_teacher_out(tiny_backbone):
    model = build_dynamicvit(tiny_backbone, train_keep_ratio=0.5).train()
    out = model(torch.randn(4, 3, 32, 32))
    assert out.aux_loss > 0
    model.loss(out, torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.predictors[0].parameters())
    assert not any("teacher" in k for k in model.state_dict())
    # the teacher is the backbone as given, frozen
    assert all(not p.requires_grad for p in model._teacher[0].parameters())


def test_random_drop_keeps_the_configured_fraction_and_is_reproducible(tiny_backbone, tiny_config):
    model = catalog.methods().get("random-drop").build(tiny_backbone).eval()
    model.set_knob(0.5)
    x = torch.randn(4, 3, 32, 32)
    a, b = model(x), model(x)
    assert torch.equal(a.logits, b.logits)
    last = a.trace["tokens_per_block"][:, -1]
    assert torch.all(last == 1 + math.ceil(0.5 ** 3 * tiny_config.num_patches))


def test_tome_merge_is_a_size_weighted_average_and_protects_the_class_token():
    # tokens 0..4; keys make token 2 (set A) identical to token 3 (set B)
    keys = torch.tensor([[[1.0, 0], [0, 1], [1, 1], [1, 1.01], [-1, 0.2]]])
    unmerged, merged, partner = bipartite_merge_plan(keys, 1)
    assert merged.tolist() == [[1]] and partner.tolist() == [[1]]   # A[1] = token 2 -> B[1] = token 3
    assert unmerged[0, 0].item() == 0                                 # class token stays, first
    x = torch.arange(5.0).reshape(1, 5, 1).repeat(1, 1, 2)
    size = torch.tensor([[[1.0], [1.0], [3.0], [1.0], [1.0]]])
    merged_x, merged_size = merge_tokens(x, size, (unmerged, merged, partner))
    assert merged_x.shape == (1, 4, 2)
    # the merged token: (3 * 2 + 1 * 3) / 4 = 2.25, size 4
    assert merged_size[0, -1, 0].item() == 4.0
    assert merged_x[0, -1, 0].item() == pytest.approx(2.25)
    assert merged_x[0, 0, 0].item() == 0.0


@pytest.mark.parametrize("name,knob", [("tome", 2), ("evit", 0.5), ("dynamicvit", 0.5), ("static-res", 24),
                                       ("random-drop", 0.5)])
def test_batch_predictions_do_not_depend_on_the_batch(name, knob, tiny_backbone):
    model = catalog.methods().get(name).build(tiny_backbone).eval()
    model.set_knob(knob)
    x = torch.randn(5, 3, 32, 32)
    batched = model(x).logits
    single = torch.cat([model(x[i:i + 1]).logits for i in range(5)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_static_res_counts_fewer_patches(tiny_backbone, tiny_config):
    model = catalog.methods().get("static-res").build(tiny_backbone, resolution=24).eval()
    trace = model(torch.randn(2, 3, 32, 32)).trace
    table = CostTable.from_config(tiny_config)
    small = table.patch_embed * 9 / 16 + tiny_config.depth * table.block(10) + table.head
    assert useful_macs(table, trace).tolist() == [small, small]
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model.set_knob(30)
