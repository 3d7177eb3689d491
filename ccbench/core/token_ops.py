"""Token operations shared by the token-family methods (DynamicViT, EViT, ToMe, random-drop).

A timm ``Block`` is ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``. Methods that act between the
two halves, or that need the attention map or the keys, call :func:`block_attention` and
:func:`block_mlp` instead of the block. The attention is written out with ``matmul`` so that fvcore
counts it (``2 * n^2 * D`` MACs, the cost table's convention) and so that the class-token attention
row and the keys are available.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def stage_blocks(depth: int, stages: int = 3) -> list[int]:
    """Indices of the blocks *before which* tokens are pruned: after 1/4, 1/2, 3/4 of the depth
    (DynamicViT's and EViT's placement).

    >>> stage_blocks(12)
    [3, 6, 9]
    >>> stage_blocks(4)
    [1, 2, 3]
    """
    return [max(1, round(depth * s / (stages + 1))) for s in range(1, stages + 1)]


def kept_patches(num_patches: int, rho: float, stage: int) -> int:
    """Patch tokens kept after pruning stage ``stage`` (1-based): ``ceil(rho^stage * N)``, at least 1.

    >>> [kept_patches(64, 0.7, s) for s in (1, 2, 3)]
    [45, 32, 22]
    """
    # round first so that e.g. 0.7**2 * 64 = 31.359999... is not pushed over an integer by float error
    return max(1, math.ceil(round(rho ** stage * num_patches, 9)))


def check_keep_ratio(value: float, name: str = "keep ratio") -> float:
    """Validate a keep ratio in ``(0, 1]``."""
    value = float(value)
    if not 0 < value <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    return value


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x [B, N, D]``, ``index [B, K]`` (token positions) -> ``[B, K, D]``."""
    return torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[-1]))


def keep_class_and_patches(x: torch.Tensor, patch_index: torch.Tensor) -> torch.Tensor:
    """Keep the class token (position 0) and the patch tokens ``patch_index [B, K]`` (indices into
    ``x[:, 1:]``): ``[B, N, D] -> [B, 1 + K, D]``."""
    return torch.cat([x[:, :1], gather_tokens(x[:, 1:], patch_index)], dim=1)


@dataclass
class AttentionResult:
    """``out [B, N, D]``: the attention branch (after proj, before the residual); ``cls_attn [B, N]``:
    the class token's attention over all keys, averaged over heads (None from the fused path);
    ``keys [B, N, Dh]``: keys averaged over heads (ToMe's similarity metric)."""

    out: torch.Tensor
    cls_attn: torch.Tensor | None
    keys: torch.Tensor


def block_attention(block: nn.Module, x: torch.Tensor, key_bias: torch.Tensor | None = None,
                    key_policy: torch.Tensor | None = None, fused: bool = False) -> AttentionResult:
    """The attention branch of a timm ``Block`` on ``x [B, N, D]``, written out.

    ``key_bias [B, N]`` is added to every query's logits for each key (ToMe's ``log(size)``);
    ``key_policy [B, N]`` in [0, 1] scales each key's unnormalised weight, with every token always
    attending to itself (DynamicViT's attention masking; differentiable in the policy).

    ``fused``: the attention through ``F.scaled_dot_product_attention`` (``key_bias`` as a float mask;
    fvcore counts it through ccbench's handle, the same MACs); the same result up to float rounding,
    without the attention map (``cls_attn`` is None). Not with ``key_policy``."""
    attn_mod = block.attn
    b, n, c = x.shape
    h = attn_mod.num_heads
    qkv = attn_mod.qkv(block.norm1(x)).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn_mod.q_norm(q), attn_mod.k_norm(k)
    if fused and key_policy is None:
        mask = None if key_bias is None else key_bias[:, None, None, :].to(q.dtype)
        drop = attn_mod.attn_drop.p if attn_mod.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, scale=attn_mod.scale)
        out = attn_mod.proj_drop(attn_mod.proj(attn_mod.norm(out.transpose(1, 2).reshape(b, n, c))))
        return AttentionResult(out, None, k.mean(1))
    logits = (q * attn_mod.scale) @ k.transpose(-2, -1)            # [B, H, N, N]
    if key_bias is not None:
        logits = logits + key_bias[:, None, None, :]
    if key_policy is None:
        attn = logits.softmax(dim=-1)
    else:
        eye = torch.eye(n, dtype=x.dtype, device=x.device)
        policy = key_policy[:, None, None, :] * (1 - eye) + eye       # [B, 1, N, N]
        weights = torch.exp(logits - logits.amax(-1, keepdim=True)) * policy
        attn = weights / (weights.sum(-1, keepdim=True) + 1e-6)
    attn = attn_mod.attn_drop(attn)
    out = (attn @ v).transpose(1, 2).reshape(b, n, c)
    out = attn_mod.proj_drop(attn_mod.proj(attn_mod.norm(out)))
    return AttentionResult(out, attn[:, :, 0].mean(1), k.mean(1))


def add_attention(block: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``x + drop_path1(ls1(out))``: the block's first residual."""
    return x + block.drop_path1(block.ls1(out))


def block_mlp(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The block's second half: ``x + drop_path2(ls2(mlp(norm2(x))))``."""
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


def tokens_trace_tensor(batch: int, counts: list[int], device=None) -> torch.Tensor:
    """``[B, depth]`` long tensor with every row equal to ``counts`` (same tokens for every sample)."""
    return torch.tensor(counts, dtype=torch.long, device=device).expand(batch, -1).clone()


def staged_keep_forward(backbone: nn.Module, images: torch.Tensor, stages: list[int], keep_ratio: float,
                        scorer) -> tuple[torch.Tensor, list[int], int]:
    """Run ``backbone`` on ``images [B, 3, H, W]`` keeping, before block ``stages[s-1]``, the
    ``ceil(keep_ratio^s * N)`` patch tokens (N = patches embedded) with the highest
    ``scorer(s - 1, patch_tokens [B, m, D]) -> [B, m]`` scores; the class token always stays and
    dropped tokens are removed, so every sample has the same length (no padding).

    Returns ``(logits [B, C], tokens per block: list[int], patch tokens scored: int)``. The scorer
    runs at every stage, also when nothing is dropped, because its cost is real."""
    x = backbone.embed(images)
    num_patches = int(x.shape[1]) - 1
    counts, scored, stage = [], 0, 0
    for i, block in enumerate(backbone.blocks):
        if stage < len(stages) and i == stages[stage]:
            keep = kept_patches(num_patches, keep_ratio, stage + 1)
            current = int(x.shape[1]) - 1
            scored += current
            scores = scorer(stage, x[:, 1:])
            if keep < current:
                x = keep_class_and_patches(x, scores.topk(keep, dim=1).indices)
            stage += 1
        counts.append(int(x.shape[1]))
        x = block(x)
    return backbone.classify(x[:, 0]), counts, scored
