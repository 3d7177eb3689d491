"""``evit``: keep the attentive tokens, fuse the inattentive ones (Liang et al., ICLR 2022).

In the blocks at ``depth * {1, 2, 3} / 4`` (EViT's 4th, 7th and 10th of 12), after the attention
and before the MLP, the ``ceil(kappa * m)`` of the m non-class tokens with the highest class-token
attention (averaged over heads) are kept and the others are fused into one token, their average
weighted by that attention; the fused token is an ordinary token in later blocks. Tokens are
removed, so the MLP of that block and every later block run on the shorter sequence, and every
sample has the same length (no padding). ``kappa = 1`` runs the unmodified blocks (exactly dense).

ccbench choices: fine-tuned under the common budget at ``train_keep_rate`` 0.6 (EViT fine-tunes;
its keep-rate warm-up schedule is not used over a 2.7-epoch budget), then the keep rate is swept on
that one model. The fused token's weights are normalised to sum to 1 (a weighted *average*).

Text (padded batches): each sample keeps ``ceil(kappa * m_i)`` of its own ``m_i`` real non-class
tokens and fuses the rest of its real tokens; the batch carries the longest kept set with a padding
mask, so useful compute is counted per sample (``tokens_per_block`` = real tokens).
"""
from __future__ import annotations

import math

import torch

from ccbench.core.method import ConditionalModel, MethodOutput, input_fields
from ccbench.core.token_ops import (
    add_attention,
    block_attention,
    block_mlp,
    check_keep_ratio,
    gather_tokens,
    stage_blocks,
    tokens_trace_tensor,
)
from ccbench.core.trace import Trace

METADATA = {
    "name": "evit",
    "family": "token",
    "paper": "Liang et al. 2022, Not All Patches are What You Need: Expediting Vision Transformers via "
             "Token Reorganizations (ICLR)",
    "bibtex": "@inproceedings{liang2022evit, title={Not All Patches are What You Need: Expediting Vision "
              "Transformers via Token Reorganizations}, author={Liang, Youwei and Ge, Chongjian and Tong, "
              "Zhan and Song, Yibing and Wang, Jue and Xie, Pengtao}, booktitle={ICLR}, year={2022}}",
    "knob": {"name": "keep_rate", "default": 0.6, "direction": "lower = less compute",
             "sweep": [0.4, 0.5, 0.6, 0.7, 0.8, 0.9], "needs_retraining": False,
             "minimum": 0, "exclusive_minimum": True, "maximum": 1},
    "modalities": ["image", "text"],
    "description": "Top-k tokens by class-token attention kept at 1/4, 1/2, 3/4 depth, the rest fused "
                   "into one attention-weighted token; fine-tuned once at keep rate 0.6, knob swept.",
}


class EViT(ConditionalModel):
    """EViT on a :class:`ViTBackbone`; ``knob`` = keep rate kappa."""

    execution = "removed"

    def __init__(self, backbone, keep_rate: float = 0.6, train_keep_rate: float = 0.6):
        super().__init__(backbone, knob=check_keep_ratio(keep_rate, "keep rate"))
        self.train_keep_rate = check_keep_ratio(train_keep_rate, "train_keep_rate")
        self.stages = stage_blocks(len(backbone.blocks))

    def set_knob(self, value: float) -> None:
        """Keep rate kappa in (0, 1]."""
        self.knob = check_keep_ratio(value, "keep rate")

    def method_config(self) -> dict:
        """Hyperparameters for the record."""
        return {"stage_blocks": self.stages, "train_keep_rate": self.train_keep_rate,
                "fused_weights": "class attention, normalised"}

    def cost_units(self) -> dict[str, int]:
        """Fusing one inattentive token: one multiply-add per channel."""
        return {"evit_fused_token": self.config.embed_dim}

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """Keep-and-fuse at the stage blocks; the training path is the same (with gradients)."""
        kappa = self.train_keep_rate if self.training else float(self.knob)
        if hasattr(self.backbone, "tokenizer"):
            return self._forward_text(images, kappa)
        x = self.backbone.embed(images)
        b = x.shape[0]
        attn_counts, mlp_counts, fused = [], [], 0
        for i, block in enumerate(self.backbone.blocks):
            n = int(x.shape[1])
            attn_counts.append(n)
            keep = math.ceil(round(kappa * (n - 1), 9))
            if i in self.stages and keep < n - 1:
                res = block_attention(block, x)
                x = add_attention(block, x, res.out)
                order = res.cls_attn[:, 1:].argsort(dim=1, descending=True)
                kept = gather_tokens(x[:, 1:], order[:, :keep])
                rest = gather_tokens(x[:, 1:], order[:, keep:])
                w = torch.gather(res.cls_attn[:, 1:], 1, order[:, keep:])
                w = w / w.sum(1, keepdim=True)
                x = torch.cat([x[:, :1], kept, w[:, None, :] @ rest], dim=1)
                fused += n - 1 - keep
                x = block_mlp(block, x)
            else:
                x = block(x)
            mlp_counts.append(int(x.shape[1]))
        logits = self.backbone.classify(x[:, 0])
        trace = Trace({"tokens_per_block": tokens_trace_tensor(b, attn_counts, x.device),
                       "mlp_tokens_per_block": tokens_trace_tensor(b, mlp_counts, x.device),
                       "units/evit_fused_token": torch.full((b,), fused, dtype=torch.long, device=x.device)})
        return MethodOutput(logits, logits.new_zeros(()), trace)


    def _forward_text(self, inputs: torch.Tensor, kappa: float) -> MethodOutput:
        """Per-sample keep-and-fuse on a padded batch (see module docstring)."""
        x, keys = self.backbone.start(inputs)
        real = keys[:, 0, 0, :]                                     # [B, N]
        attn_counts, mlp_counts, rows = [], [], []
        fused = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        for i, block in enumerate(self.backbone.blocks):
            n = real.sum(1)
            attn_counts.append(n)
            rows.append(x.shape[1])                                  # the attention runs on the whole rows
            # per sample, of its m = n - 1 others; float64 and rounding as kept_patches does for images
            keep = torch.ceil(torch.round(kappa * (n - 1).double(), decimals=9)).long()
            if i in self.stages and bool((keep < n - 1).any()):
                out, cls_attn = block.attention_with_cls(x, keys)
                x = block.attn_norm(x + out)
                score = cls_attn[:, 1:].masked_fill(~real[:, 1:], -1.0)
                order = score.argsort(dim=1, descending=True)
                ranked = gather_tokens(x[:, 1:], order)               # real tokens first, best first
                w = torch.gather(score, 1, order).clamp_min(0)
                pos = torch.arange(order.shape[1], device=x.device)[None]
                to_fuse = (pos >= keep[:, None]) & (pos < (n - 1)[:, None])
                w = w * to_fuse
                has_fused = to_fuse.any(1)
                lo = int(keep.min())  # only the ranks some sample fuses are multiplied
                token = (w[:, None, lo:] / w.sum(1).clamp_min(1e-12)[:, None, None]) @ ranked[:, lo:]
                width = int(keep.max())
                x = torch.cat([x[:, :1], ranked[:, :width], token], dim=1)
                real = torch.cat([real[:, :1], pos[:, :width] < keep[:, None], has_fused[:, None]], dim=1)
                keys = real[:, None, None, :]
                fused += to_fuse.sum(1)
                x = block.feed_forward(x, keys)
            else:
                x = block(x, keys)
            mlp_counts.append(real.sum(1))
        logits = self.backbone.classify(x[:, 0])
        tokens = torch.stack(attn_counts, 1)
        trace = Trace({"tokens_per_block": tokens, "mlp_tokens_per_block": torch.stack(mlp_counts, 1),
                       "units/evit_fused_token": fused, **input_fields(self.backbone, inputs, tokens, rows)})
        return MethodOutput(logits, logits.new_zeros(()), trace)


def build(backbone, **config) -> EViT:
    """EViT around ``backbone``."""
    return EViT(backbone, **config)
