"""``dynamicvit``: learned token sparsification (Rao et al., NeurIPS 2021), tokens removed at inference.

Prediction modules before blocks ``depth * {1, 2, 3} / 4`` score the patch tokens (keep / drop) from
a local feature and a policy-weighted global one. Training keeps the full sequence: the decision is
a Gumbel-Softmax straight-through sample (``ccbench.core.sampling``) multiplied into the previous policy,
and dropped tokens are masked out of every later attention as keys (each token still attends to
itself). Inference keeps the ``ceil(rho^s * N)`` highest-scoring of the N original patch tokens
after stage s (the class token is always kept) and physically removes the rest, so every sample in
a batch has the same length (no padding).

Loss: cross-entropy + ``ratio_weight * mean_s mean_b (keep share_s,b - rho^s)^2`` + distillation from
the frozen tier backbone (the dense model before fine-tuning): ``distill_weight * KL(teacher ||
student)`` on the logits and ``token_distill_weight * MSE`` on the final patch tokens that are kept.
Weights 2.0 / 0.5 / 0.5 as in the paper's code.

ccbench choice: one model is fine-tuned at ``train_keep_ratio`` and the knob (the inference keep
ratio) is swept on it; the paper retrains per ratio. The record's config gives both.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ccbench.core.backbones import ViTBackbone
from ccbench.core.method import ConditionalModel, MethodOutput
from ccbench.core.sampling import gumbel_softmax
from ccbench.core.token_ops import (
    add_attention,
    block_attention,
    block_mlp,
    check_keep_ratio,
    stage_blocks,
    staged_keep_forward,
    tokens_trace_tensor,
)
from ccbench.core.trace import Trace

METADATA = {
    "name": "dynamicvit",
    "family": "token",
    "paper": "Rao et al. 2021, DynamicViT: Efficient Vision Transformers with Dynamic Token Sparsification (NeurIPS)",
    "bibtex": "@inproceedings{rao2021dynamicvit, title={{DynamicViT}: Efficient Vision Transformers with "
              "Dynamic Token Sparsification}, author={Rao, Yongming and Zhao, Wenliang and Liu, Benlin and "
              "Lu, Jiwen and Zhou, Jie and Hsieh, Cho-Jui}, booktitle={NeurIPS}, year={2021}}",
    "knob": {"name": "keep_ratio", "default": 0.6, "direction": "lower = less compute",
             "sweep": [0.4, 0.5, 0.6, 0.7, 0.8, 0.9], "needs_retraining": False,
             "minimum": 0, "exclusive_minimum": True, "maximum": 1},
    "modalities": ["image"],
    "description": "Prediction modules at 1/4, 1/2, 3/4 depth keep ceil(rho^s N) patch tokens; Gumbel "
                   "straight-through masks in training, tokens removed at inference. Fine-tuned once at "
                   "keep ratio 0.6 with ratio loss and distillation; the knob is swept on that model.",
}


class TokenPredictor(nn.Module):
    """DynamicViT's prediction module: ``[B, N, D]`` tokens and ``[B, N]`` policy -> ``[B, N, 2]``
    log-probabilities of (keep, drop). Local half of the features plus the policy-weighted mean of
    the global half, then a 3-layer MLP."""

    def __init__(self, dim: int):
        super().__init__()
        self.in_conv = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())
        self.out_conv = nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, dim // 4),
                                      nn.GELU(), nn.Linear(dim // 4, 2), nn.LogSoftmax(dim=-1))

    @staticmethod
    def macs_per_token(dim: int) -> int:
        """MACs to score one token (LayerNorm 5/element, linears in x out; pooling counts 0)."""
        return 5 * dim + dim * dim + dim * (dim // 2) + (dim // 2) * (dim // 4) + (dim // 4) * 2

    def forward(self, x: torch.Tensor, policy: torch.Tensor | None = None) -> torch.Tensor:
        x = self.in_conv(x)
        half = x.shape[-1] // 2
        local, glob = x[..., :half], x[..., half:]
        if policy is None:
            pooled = glob.mean(1, keepdim=True)
        else:
            w = policy[..., None]
            pooled = (glob * w).sum(1, keepdim=True) / (w.sum(1, keepdim=True) + 1e-6)
        return self.out_conv(torch.cat([local, pooled.expand_as(glob)], dim=-1))


class DynamicViT(ConditionalModel):
    """DynamicViT on a :class:`ViTBackbone`; ``knob`` = keep ratio rho at inference."""

    execution = "removed"

    def __init__(self, backbone: ViTBackbone, keep_ratio: float = 0.6, train_keep_ratio: float = 0.6,
                 ratio_weight: float = 2.0, distill_weight: float = 0.5, token_distill_weight: float = 0.5,
                 gumbel_tau: float = 1.0):
        super().__init__(backbone, knob=check_keep_ratio(keep_ratio))
        self.train_keep_ratio = check_keep_ratio(train_keep_ratio, "train_keep_ratio")
        self.ratio_weight, self.distill_weight = ratio_weight, distill_weight
        self.token_distill_weight, self.gumbel_tau = token_distill_weight, gumbel_tau
        self.stages = stage_blocks(len(backbone.blocks))
        self.predictors = nn.ModuleList(TokenPredictor(backbone.config.embed_dim) for _ in self.stages)
        # the frozen teacher lives outside the module tree: not trained, saved or counted
        teacher = copy.deepcopy(backbone).eval()
        teacher.requires_grad_(False)
        self._teacher = [teacher]

    def set_knob(self, value: float) -> None:
        """Inference keep ratio rho in (0, 1]."""
        self.knob = check_keep_ratio(value)

    def method_config(self) -> dict:
        """Hyperparameters for the record."""
        return {"stage_blocks": self.stages, "train_keep_ratio": self.train_keep_ratio,
                "ratio_weight": self.ratio_weight, "distill_weight": self.distill_weight,
                "token_distill_weight": self.token_distill_weight, "gumbel_tau": self.gumbel_tau}

    def cost_units(self) -> dict[str, int]:
        """One predictor row per patch token scored."""
        return {"dvit_predictor_token": TokenPredictor.macs_per_token(self.config.embed_dim)}

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """Masked Gumbel training path, or removing inference path."""
        return self._forward_train(images) if self.training else self._forward_infer(images)

    def _forward_train(self, images: torch.Tensor) -> MethodOutput:
        x = self.backbone.embed(images)
        b, n, _ = x.shape
        policy = x.new_ones(b, n - 1)
        keep_shares, ratio_loss = [], x.new_zeros(())
        stage = 0
        for i, block in enumerate(self.backbone.blocks):
            if stage < len(self.stages) and i == self.stages[stage]:
                scores = self.predictors[stage](x[:, 1:], policy)
                keep = gumbel_softmax(scores, tau=self.gumbel_tau, hard=True)[..., 0]
                policy = keep * policy
                share = policy.mean(1)
                ratio_loss = ratio_loss + ((share - self.train_keep_ratio ** (stage + 1)) ** 2).mean()
                keep_shares.append(share.detach())
                stage += 1
            if stage == 0:
                x = block(x)
            else:
                full = torch.cat([policy.new_ones(b, 1), policy], dim=1)
                x = add_attention(block, x, block_attention(block, x, key_policy=full).out)
                x = block_mlp(block, x)
        logits = self.backbone.classify(x[:, 0])
        teacher = self._teacher[0].to(x.device)
        with torch.no_grad():
            t = teacher.embed(images)
            for block in teacher.blocks:
                t = block(t)
            t_logits = teacher.classify(t[:, 0])
        kl = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(t_logits, -1), reduction="batchmean",
                      log_target=True)
        w = policy[..., None]
        token_mse = (((x[:, 1:] - t[:, 1:]) ** 2) * w).sum() / (w.sum() * x.shape[-1] + 1e-6)
        aux = (self.ratio_weight * ratio_loss / len(self.stages) + self.distill_weight * kl
               + self.token_distill_weight * token_mse)
        # training trace: tokens that still count as alive (masked, not removed)
        counts = torch.zeros(b, len(self.backbone.blocks), dtype=torch.long, device=x.device)
        bounds = self.stages + [len(self.backbone.blocks)]
        counts[:, :bounds[0]] = n
        for s, share in enumerate(keep_shares):
            counts[:, bounds[s]:bounds[s + 1]] = 1 + (share * (n - 1)).round().long()[:, None]
        return MethodOutput(logits, aux, Trace({"tokens_per_block": counts}))

    @torch.no_grad()
    def _forward_infer(self, images: torch.Tensor) -> MethodOutput:
        logits, counts, scored = staged_keep_forward(
            self.backbone, images, self.stages, float(self.knob),
            lambda stage, patches: self.predictors[stage](patches)[..., 0])
        b = images.shape[0]
        trace = Trace({"tokens_per_block": tokens_trace_tensor(b, counts, logits.device),
                       "units/dvit_predictor_token": torch.full((b,), scored, dtype=torch.long,
                                                                device=logits.device)})
        return MethodOutput(logits, logits.new_zeros(()), trace)


def build(backbone: ViTBackbone, **config) -> DynamicViT:
    """DynamicViT around ``backbone`` (the frozen teacher is a copy of it as given)."""
    return DynamicViT(backbone, **config)
