"""``static-res``: the dense backbone at a lower input resolution — fewer tokens for every sample.

The static model of equal compute that a conditional token method has to beat: the same backbone,
fine-tuned under the same budget, but every image is resized (bilinear, antialiased) from the tier's
resolution to ``resolution`` px inside the model, so it embeds ``(resolution / patch)^2`` patches;
position embeddings are resampled bicubically to that grid. One model is trained per resolution
(the knob needs retraining). Resizing counts as input preprocessing (0 MACs, like the resize every
method's input goes through before the model).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ccbench.core.backbones import ViTBackbone
from ccbench.core.method import ConditionalModel, MethodOutput
from ccbench.core.token_ops import tokens_trace_tensor
from ccbench.core.trace import Trace

METADATA = {
    "name": "static-res",
    "family": "static",
    "paper": "static baseline (no paper): the dense model at a lower input resolution",
    "bibtex": "",
    "knob": {"name": "resolution", "default": 96, "direction": "lower = less compute", "sweep": [112, 96, 80],
             "needs_retraining": True,
             "integer": True, "minimum": 1},
    "modalities": ["image"],
    "description": "Dense backbone on images resized to a lower resolution (fewer patch tokens for every "
                   "sample), fine-tuned at that resolution under the common budget; one model per value.",
}


class StaticResolution(ConditionalModel):
    """The dense backbone on images resized to ``resolution`` px (a multiple of the patch size)."""

    execution = "removed"

    def __init__(self, backbone: ViTBackbone, resolution: int = 96):
        super().__init__(backbone)
        self.set_knob(resolution)

    def set_knob(self, value) -> None:
        """Input resolution in px: a positive multiple of the patch size."""
        p = self.config.patch_size
        if float(value) != int(value) or int(value) < p or int(value) % p:
            raise ValueError(f"resolution must be a positive multiple of the patch size {p}, got {value}")
        self.knob = int(value)

    def method_config(self) -> dict:
        """The resolution defines the model (one trained model per value)."""
        return {"resolution": self.knob, "resize": "bilinear, antialias"}

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """Resize ``[B, 3, H, W]`` to the knob's resolution, then run the dense backbone."""
        if images.shape[-1] != self.knob or images.shape[-2] != self.knob:
            images = F.interpolate(images, size=(self.knob, self.knob), mode="bilinear", antialias=True,
                                   align_corners=False)
        logits = self.backbone(images)
        patches = (self.knob // self.config.patch_size) ** 2
        b = images.shape[0]
        trace = Trace({"tokens_per_block": tokens_trace_tensor(b, [patches + 1] * self.config.depth, images.device),
                       "patches": torch.full((b,), patches, dtype=torch.long, device=images.device)})
        return MethodOutput(logits, logits.new_zeros(()), trace)


def build(backbone: ViTBackbone, **config) -> StaticResolution:
    """Static-resolution model around ``backbone``."""
    return StaticResolution(backbone, **config)
