"""``random-drop``: the control for learned token selection — drop random patch tokens.

At the same blocks as DynamicViT (``depth * {1, 2, 3} / 4``) keep ``ceil(rho^s * N)`` patch tokens
chosen uniformly at random (the class token always stays) and remove the rest. Fine-tuned under the
common budget with the same random dropping at ``train_keep_ratio`` (0.6, DynamicViT's), then the
keep ratio is swept on that one model, exactly like ``dynamicvit`` — so at equal compute the two
differ only in *which* tokens are kept.

Randomness at evaluation comes from a generator re-seeded with ``seed`` at every call, and one draw
of scores per stage is shared by every sample of the batch (the kept positions are random but the same
for each image), so a sample's prediction does not depend on the batch it is in: ``ccbench validate``'s
determinism check (batch 1 vs batch N) holds. Drawing per sample made it depend on the sample's place in
the batch (the first records of the ranking re-run failed that check and were not kept).
"""
from __future__ import annotations

import torch

from ccbench.core.backbones import ViTBackbone
from ccbench.core.method import ConditionalModel, MethodOutput
from ccbench.core.token_ops import (
    check_keep_ratio,
    stage_blocks,
    staged_keep_forward,
    tokens_trace_tensor,
)
from ccbench.core.trace import Trace

METADATA = {
    "name": "random-drop",
    "family": "token",
    "paper": "control (no paper): uniform random token dropping at DynamicViT's stages and ratios",
    "bibtex": "",
    "knob": {"name": "keep_ratio", "default": 0.6, "direction": "lower = less compute",
             "sweep": [0.4, 0.5, 0.6, 0.7, 0.8, 0.9], "needs_retraining": False,
             "minimum": 0, "exclusive_minimum": True, "maximum": 1},
    "modalities": ["image"],
    "description": "Keeps ceil(rho^s N) uniformly random patch tokens after stage s (DynamicViT's "
                   "schedule); fine-tuned at rho = 0.6 with the same dropping. The floor a learned "
                   "selector must beat.",
}


class RandomDrop(ConditionalModel):
    """Random token dropping on a :class:`ViTBackbone`; ``knob`` = keep ratio rho."""

    execution = "removed"

    def __init__(self, backbone: ViTBackbone, keep_ratio: float = 0.6, train_keep_ratio: float = 0.6,
                 seed: int = 0):
        super().__init__(backbone, knob=check_keep_ratio(keep_ratio))
        self.train_keep_ratio = check_keep_ratio(train_keep_ratio, "train_keep_ratio")
        self.seed = seed
        self.stages = stage_blocks(len(backbone.blocks))

    def set_knob(self, value: float) -> None:
        """Inference keep ratio rho in (0, 1]."""
        self.knob = check_keep_ratio(value)

    def method_config(self) -> dict:
        """Hyperparameters for the record."""
        return {"stage_blocks": self.stages, "train_keep_ratio": self.train_keep_ratio, "eval_seed": self.seed,
                "eval_draw": "one per stage, shared by the batch"}

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """Random scores -> top-k keep at each stage (training: fresh noise at ``train_keep_ratio``)."""
        if self.training:
            rho, gen = self.train_keep_ratio, None
        else:
            rho, gen = float(self.knob), torch.Generator(device=images.device).manual_seed(self.seed)

        def scorer(stage: int, patches: torch.Tensor) -> torch.Tensor:
            if gen is None:   # training: fresh noise per sample
                return torch.rand(patches.shape[:2], device=patches.device)
            # evaluation: one draw shared by the batch, so a sample's tokens do not depend on its batch
            return torch.rand(patches.shape[1], generator=gen, device=patches.device).expand(patches.shape[0], -1)

        with torch.set_grad_enabled(self.training and torch.is_grad_enabled()):
            logits, counts, _ = staged_keep_forward(self.backbone, images, self.stages, rho, scorer)
        trace = Trace({"tokens_per_block": tokens_trace_tensor(images.shape[0], counts, logits.device)})
        return MethodOutput(logits, logits.new_zeros(()), trace)


def build(backbone: ViTBackbone, **config) -> RandomDrop:
    """Random-drop control around ``backbone``."""
    return RandomDrop(backbone, **config)
