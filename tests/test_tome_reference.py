"""ToMe against a written-out reference of the authors' algorithm (facebookresearch/ToMe patched onto
timm: ``ToMeBlock`` / ``ToMeAttention`` / ``bipartite_soft_matching`` / ``merge_wavg``), re-stated
here from the paper and that code's behaviour, at every r including the large ones where blocks run
out of tokens to merge (issue 18)."""
import pytest
import torch

from ccbench.baselines.tome import ToMe
from ccbench.core.backbones import ViTBackbone, ViTConfig


@pytest.fixture
def deep_backbone():
    """17 tokens through 6 blocks: at large r the last blocks are left with t <= 2 tokens."""
    torch.manual_seed(0)
    return ViTBackbone(ViTConfig(img_size=32, patch_size=8, embed_dim=32, depth=6, num_heads=2,
                                 num_classes=5)).eval()


def reference_tome(backbone, images: torch.Tensor, r: int, bias_when_stopped: bool = True) -> torch.Tensor:
    """Logits of ToMe as the authors run it: explicit attention ``softmax(q k^T * scale + log size)``
    (no size term until the first merge), keys averaged over heads as the metric, bipartite matching
    with the class token protected, ``merge(x * size) / merge(size)`` in every block with ``r > 0``,
    a merge of ``min(r, (t - 1) // 2)`` tokens (none, but still the weighted average, at t <= 2).
    ``bias_when_stopped=False``: blocks that cannot merge run plain (no size term, no average)."""
    x = backbone.embed(images)
    size = None
    for block in backbone.blocks:
        attn = block.attn
        h = block.norm1(x)
        bsz, t, c = h.shape
        take = min(r, (t - 1) // 2)
        stopped = not bias_when_stopped and take <= 0
        heads = attn.num_heads
        qkv = attn.qkv(h).reshape(bsz, t, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        logits = (q @ k.transpose(-2, -1)) * attn.scale
        if size is not None and not stopped:
            logits = logits + size.log()[:, None, None, :, 0]
        out = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(bsz, t, c)
        x = x + attn.proj(out)
        if r > 0 and not stopped:
            if size is None:
                size = torch.ones_like(x[..., :1])
            if take > 0:
                metric = k.mean(1)
                metric = metric / metric.norm(dim=-1, keepdim=True)
                scores = metric[:, ::2] @ metric[:, 1::2].transpose(-1, -2)
                scores[:, 0, :] = -float("inf")
                best, partner = scores.max(dim=-1)
                edges = best.argsort(dim=-1, descending=True)[..., None]
                stay, go = edges[:, take:], edges[:, :take]
                into = partner[..., None].gather(1, go)
                stay = stay.sort(dim=1).values

                def merge(z):
                    src, dst = z[:, ::2], z[:, 1::2]
                    d = z.shape[-1]
                    kept = src.gather(1, stay.expand(-1, -1, d))
                    moved = src.gather(1, go.expand(-1, -1, d))
                    dst = dst.scatter_reduce(1, into.expand(-1, -1, d), moved, reduce="sum")
                    return torch.cat([kept, dst], dim=1)
            else:
                def merge(z):
                    return z
            x = merge(x * size)
            size = merge(size)
            x = x / size
        x = x + block.mlp(block.norm2(x))
    return backbone.classify(x[:, 0])


@pytest.mark.parametrize("r", [1, 2, 3, 5, 6, 7, 8, 12, 40])
def test_tome_equals_the_reference_bit_for_bit(r, deep_backbone):
    """From r = 5 the last blocks have t <= 2 and merge nothing but keep proportional attention.
    Head dim 16: scale 1/4, so (q * s) k^T = (q k^T) * s exactly. (r = 0 runs timm's own blocks,
    whose fused attention rounds differently from the written-out softmax: see the next test.)"""
    x = torch.randn(3, 3, 32, 32)
    model = ToMe(deep_backbone, r=r).eval()
    with torch.no_grad():
        ours = model(x).logits
        ref = reference_tome(deep_backbone, x, r)
    assert torch.equal(ours, ref)


def test_tome_r0_is_the_dense_backbone_and_close_to_the_reference(deep_backbone):
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ours = ToMe(deep_backbone, r=0).eval()(x).logits
        assert torch.equal(ours, deep_backbone(x))
        assert torch.allclose(ours, reference_tome(deep_backbone, x, 0), atol=1e-6)


@pytest.mark.parametrize("r", [2, 7, 12])
def test_tome_fused_attention_matches_the_reference(r, deep_backbone):
    x = torch.randn(3, 3, 32, 32)
    model = ToMe(deep_backbone, r=r).eval()
    model.fused_attention = True
    with torch.no_grad():
        ours = model(x)
        ref = reference_tome(deep_backbone, x, r)
    assert torch.allclose(ours.logits, ref, atol=1e-5)
    model.fused_attention = False
    assert torch.equal(model(x).trace["tokens_per_block"], ours.trace["tokens_per_block"])


def test_large_r_keeps_proportional_attention_after_merging_stops(deep_backbone):
    """r = 8 on 17 tokens: 17 -> 9 -> 5 -> 3 -> 2, then two blocks that cannot merge; they keep the
    log-size bias (the merged tokens stand for unequal numbers of patches), as the reference does,
    and dropping it there (ccbench before issue 18) gives other logits."""
    x = torch.randn(2, 3, 32, 32)
    model = ToMe(deep_backbone, r=8).eval()
    with torch.no_grad():
        out = model(x)
        ref = reference_tome(deep_backbone, x, 8)
        old = reference_tome(deep_backbone, x, 8, bias_when_stopped=False)
    assert out.trace["tokens_per_block"][0].tolist() == [17, 9, 5, 3, 2, 2]
    assert out.trace["mlp_tokens_per_block"][0].tolist() == [9, 5, 3, 2, 2, 2]
    assert torch.equal(out.logits, ref)
    assert (old - ref).abs().max() > 1e-4
