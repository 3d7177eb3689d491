"""``tome``: Token Merging (Bolya et al., ICLR 2023), off the shelf on the dense fine-tuned model.

In every block, between the attention and the MLP, the tokens are split alternately into sets A
(even positions, holding the class token) and B (odd); each token of A is matched to its most
similar token of B by cosine similarity of the keys (averaged over heads), and the ``r`` best-matched
A tokens are merged into their B partners by a size-weighted average (the class token is never
merged). Each token's size (how many patches it stands for) adds ``log(size)`` to the attention
logits as a key (proportional attention), in every block after the first merge, also once too few
tokens remain to merge (as the authors' code does). The sequence shrinks by ``r`` per block for every
sample alike (no padding). ``r = 0`` runs the unmodified blocks: exactly dense.

Execution (issue 18): ``x * size`` and ``size`` are merged as one ``[B, N, D + 1]`` tensor (one gather,
one scatter-add, one concatenation per block instead of two of each: the same sums, bit for bit).
The attention is written out (``ToMe.fused_attention = False``, the default: it equals the authors'
explicit softmax bit for bit); ``True`` runs it through ``scaled_dot_product_attention`` with
``log(size)`` as a float mask (same MACs, equal up to float rounding).

Decision overhead counted as useful MACs: the A x B similarity matmul, ``|A| * |B| * head_dim``
per block (unit ``tome_pair``); normalisation, argmax, sorting and the scatter-add are element-wise
(0 MACs by fvcore's convention).
"""
from __future__ import annotations

import torch

from ccbench.core.backbones import ViTBackbone
from ccbench.core.method import ConditionalModel, MethodOutput
from ccbench.core.token_ops import (
    add_attention,
    block_attention,
    block_mlp,
    gather_tokens,
    tokens_trace_tensor,
)
from ccbench.core.trace import Trace

METADATA = {
    "name": "tome",
    "family": "token",
    "paper": "Bolya et al. 2023, Token Merging: Your ViT But Faster (ICLR)",
    "bibtex": "@inproceedings{bolya2023tome, title={Token Merging: Your {ViT} But Faster}, author={Bolya, "
              "Daniel and Fu, Cheng-Yang and Dai, Xiaoliang and Zhang, Peizhao and Feichtenhofer, Christoph "
              "and Hoffman, Judy}, booktitle={ICLR}, year={2023}}",
    "knob": {"name": "r", "default": 3, "direction": "higher = less compute", "sweep": [0, 1, 2, 3, 4, 5],
             "needs_retraining": False,
             "integer": True, "minimum": 0},
    "modalities": ["image"],
    "trains": False,
    "evaluates_checkpoint_of": "dense",
    "description": "Bipartite soft matching on keys merges r tokens per block (size-weighted average, "
                   "proportional attention); off the shelf on the dense fine-tuned model.",
}


def bipartite_merge_plan(keys: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plan ToMe's merge of ``r`` tokens given keys ``[B, N, Dh]`` (token 0 = class token, never merged).

    Returns ``(unmerged_a [B, Na - r], merged_a [B, r], partner_b [B, r])``: indices into set A (even
    positions) of the A tokens that stay, of those merged, and of each merged token's partner in
    set B (odd positions). ``unmerged_a`` is sorted, so the class token stays first."""
    metric = keys / keys.norm(dim=-1, keepdim=True)
    a, b = metric[:, ::2], metric[:, 1::2]
    scores = a @ b.transpose(-1, -2)                       # [B, Na, Nb]
    scores[:, 0, :] = -torch.inf                           # protect the class token
    best, partner = scores.max(dim=-1)
    order = best.argsort(dim=-1, descending=True)
    merged, unmerged = order[:, :r], order[:, r:]
    return unmerged.sort(dim=-1).values, merged, torch.gather(partner, 1, merged)


def merge_tokens(x: torch.Tensor, size: torch.Tensor, plan) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a merge plan to tokens ``x [B, N, D]`` with sizes ``size [B, N, 1]``: merged A tokens
    are added into their B partners as a size-weighted average. Returns the shorter ``x`` and ``size``
    (``[B, N - r, ...]``: unmerged A tokens, then all of B)."""
    unmerged, merged, partner = plan
    t = torch.cat([x * size, size], dim=-1)                     # one merge for both: [B, N, D + 1]
    a, b = t[:, ::2], t[:, 1::2]
    dst = b.scatter_add(1, partner[..., None].expand(-1, -1, t.shape[-1]), gather_tokens(a, merged))
    t = torch.cat([gather_tokens(a, unmerged), dst], dim=1)
    weighted, size = t[..., :-1], t[..., -1:]
    return weighted / size, size


class ToMe(ConditionalModel):
    """Token Merging on a :class:`ViTBackbone`; ``knob`` = tokens merged per block ``r``."""

    execution = "removed"
    fused_attention = False  # True: scaled_dot_product_attention (see the module docstring)

    def __init__(self, backbone: ViTBackbone, r: int = 3):
        super().__init__(backbone)
        self.set_knob(r)

    def set_knob(self, value) -> None:
        """Tokens merged per block: a non-negative integer."""
        if float(value) != int(value) or int(value) < 0:
            raise ValueError(f"r must be a non-negative integer, got {value}")
        self.knob = int(value)

    def method_config(self) -> dict:
        """Hyperparameters for the record."""
        return {"proportional_attention": True, "metric": "keys averaged over heads", "protect_class_token": True}

    def cost_units(self) -> dict[str, int]:
        """One A x B similarity: a dot product over the head dimension."""
        return {"tome_pair": self.config.embed_dim // self.config.num_heads}

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """Merge ``r`` tokens per block (fewer when fewer than ``2r + 1`` remain)."""
        x = self.backbone.embed(images)
        b = x.shape[0]
        size = x.new_ones(b, x.shape[1], 1)
        attn_counts, mlp_counts, pairs, merged = [], [], 0, False
        for block in self.backbone.blocks:
            n = int(x.shape[1])
            r = min(self.knob, (n - 1) // 2)
            attn_counts.append(n)
            if r > 0 or merged:   # proportional attention in every block after the first merge
                res = block_attention(block, x, key_bias=size[..., 0].log(), fused=self.fused_attention)
                x = add_attention(block, x, res.out)
                if r > 0:
                    x, size = merge_tokens(x, size, bipartite_merge_plan(res.keys, r))
                    pairs += ((n + 1) // 2) * (n // 2)
                    merged = True
                else:   # the authors' size-weighted average with nothing to merge: (x * size) / size
                    x = (x * size) / size
                x = block_mlp(block, x)
            else:
                x = block(x)
            mlp_counts.append(int(x.shape[1]))
        logits = self.backbone.classify(x[:, 0])
        trace = Trace({"tokens_per_block": tokens_trace_tensor(b, attn_counts, x.device),
                       "mlp_tokens_per_block": tokens_trace_tensor(b, mlp_counts, x.device),
                       "units/tome_pair": torch.full((b,), pairs, dtype=torch.long, device=x.device)})
        return MethodOutput(logits, logits.new_zeros(()), trace)


def build(backbone: ViTBackbone, **config) -> ToMe:
    """ToMe around ``backbone`` (no training: evaluates the dense fine-tuned model)."""
    return ToMe(backbone, **config)
