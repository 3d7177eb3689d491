"""A-ViT: hand-checked halting, and removal of halted tokens equals masking them out."""
import pytest
import torch

from ccbench.baselines.avit import build
from ccbench.core.backbones import ViTBackbone, ViTConfig


def _scripted(model, scores):
    """Make the model's halting scores come from ``scores`` (one ``[B, N]`` tensor per block)."""
    calls = iter(scores)
    model.halting_scores = lambda block_out: next(calls)


def test_hand_checked_halting_depths_remainders_and_output():
    torch.manual_seed(0)
    cfg = ViTConfig(img_size=16, patch_size=8, embed_dim=16, depth=3, num_heads=2, num_classes=3)
    bb = ViTBackbone(cfg)
    model = build(bb, threshold=0.99, ponder_weight=1.0, prior_weight=0.0)
    h0 = torch.tensor([[0.2, 0.5, 1.0, 0.3, 0.0]])
    h1 = torch.tensor([[0.5, 0.6, 0.9, 0.3, 0.0]])
    h2 = torch.tensor([[0.1, 0.1, 0.1, 0.1, 0.1]])  # ignored: forced to 1 at the last block
    x = torch.randn(1, 3, 16, 16)
    model.train()
    _scripted(model, [h0, h1, h2])
    out = model(x)
    # token 0 (class): 0.2+0.5 < 0.99 -> halts at the last block with r = 0.3; rho = 3 + 0.3
    # token 1: 0.5+0.6 >= 0.99 at block 1, r = 0.5, rho = 2.5; token 2: halts at block 0, r = 1, rho = 2
    # token 3: r = 1 - 0.6 = 0.4, rho = 3.4; token 4: never scores, r = 1, rho = 4
    assert out.trace["halt_block"].tolist() == [[2, 1, 0, 2, 2]]
    assert out.trace["tokens_per_block"].tolist() == [[5, 4, 3]]
    assert out.aux_loss.item() == pytest.approx((3.3 + 2.5 + 2.0 + 3.4 + 4.0) / 5, abs=1e-5)
    # the classifier reads the class token's halting-weighted states: 0.2, 0.5, then r = 0.3
    with torch.no_grad():
        t = bb.embed(x)
        s0 = bb.blocks[0](t)
        keys1 = torch.tensor([[True, True, False, True, True]])
        s1 = torch.where(keys1[..., None], bb.blocks[1](s0, attn_mask=keys1[:, None, None, :]), s0)
        keys2 = torch.tensor([[True, False, False, True, True]])
        s2 = bb.blocks[2](s1, attn_mask=keys2[:, None, None, :])
        expected = bb.classify(0.2 * s0[:, 0] + 0.5 * s1[:, 0] + 0.3 * s2[:, 0])
    assert torch.allclose(out.logits, expected, atol=1e-5)


def test_removing_halted_tokens_equals_masking_them(tiny_backbone):
    model = build(tiny_backbone)
    x = torch.randn(12, 3, 32, 32)
    model.prepare(x)  # puts halting in the working range
    model.eval()
    for threshold in (0.99, 0.6, 0.3):
        model.set_knob(threshold)
        model.mode = "mask"
        masked = model(x)
        model.mode = "remove"
        removed = model(x)
        assert torch.allclose(masked.logits, removed.logits, atol=1e-5)
        assert torch.equal(masked.trace["tokens_per_block"], removed.trace["tokens_per_block"])
        assert torch.equal(masked.trace["halt_block"], removed.trace["halt_block"])
        singles = [model(x[i:i + 1]) for i in range(len(x))]
        assert torch.allclose(torch.cat([o.logits for o in singles]), removed.logits, atol=1e-5)
        for field in ("tokens_per_block", "halt_block"):
            assert torch.equal(torch.cat([o.trace[field] for o in singles]), removed.trace[field])
    tokens = removed.trace["tokens_per_block"]
    assert (tokens[:, 0] == tiny_backbone.config.num_tokens).all()
    assert (tokens[:, 1:] <= tokens[:, :-1]).all()  # tokens only ever leave
    assert (tokens == 0).any()  # some samples stop early at threshold 0.3


def test_lower_threshold_means_less_compute(tiny_backbone):
    model = build(tiny_backbone)
    x = torch.randn(16, 3, 32, 32)
    model.prepare(x)
    model.eval()
    work = []
    for threshold in (0.99, 0.7, 0.4):
        model.set_knob(threshold)
        work.append(model(x).trace["tokens_per_block"].sum().item())
    assert work[0] > work[1] > work[2]


def test_prepare_sets_beta_to_reach_target_depth(tiny_backbone):
    model = build(tiny_backbone, target_depth=2.0)
    x = torch.randn(32, 3, 32, 32)
    model.prepare(x)
    model.eval()
    depth_run = (model(x).trace["tokens_per_block"] > 0).sum(1).float().mean().item()
    assert abs(depth_run - 2.0) < 0.5
    assert model.training is False


def test_training_gradients_reach_backbone(tiny_backbone):
    model = build(tiny_backbone)
    x = torch.randn(4, 3, 32, 32)
    model.prepare(x)
    model.train()
    out = model(x)
    model.loss(out, torch.tensor([0, 1, 2, 3])).backward()
    assert torch.isfinite(out.logits).all()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # every backbone part on the path to the logits gets a non-zero gradient, not just any parameter
    vit = tiny_backbone.vit
    parts = [("patch_embed", vit.patch_embed.proj.weight), ("cls_token", vit.cls_token), ("pos_embed", vit.pos_embed),
             ("head", vit.head.weight), ("final norm", vit.norm.weight)]
    for i, blk in enumerate(vit.blocks):
        parts += [(f"block {i} qkv", blk.attn.qkv.weight), (f"block {i} fc1", blk.mlp.fc1.weight),
                  (f"block {i} fc2", blk.mlp.fc2.weight)]
    for name, param in parts:
        assert param.grad is not None and param.grad.abs().sum() > 0, name
