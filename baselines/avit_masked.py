"""``avit-masked``: A-ViT executed the way the released code executes it (reference, not a method).

Same halting, same weights (it evaluates the ``avit`` fine-tuned model), same decisions and the same
trace, but every block still runs on the full sequence: halted tokens are zeroed and masked out of
attention instead of being removed, and finished samples stay in the batch until the last block.
Its record shows what that costs: executed MACs are dense although useful MACs are not, and the
batch-1 speedup stays near 1 (NVlabs/A-ViT issues 1, 7, 12).
"""
from __future__ import annotations

import torch

from ccbench.core.backbones import ViTBackbone
from ccbench.core.method import MethodOutput

from .avit import AViT

METADATA = {  # paper, bibtex and knob are inherited from "avit"
    "name": "avit-masked",
    "family": "token",
    "trains": False,
    "evaluates_checkpoint_of": "avit",
    "description": "Reference: avit's model with halted tokens zeroed and masked, never removed.",
}


class AViTMasked(AViT):
    """:class:`AViT` whose inference always takes the full-sequence, masked path (zeroing halted
    tokens as the released code does)."""

    execution = "masked"

    def __init__(self, backbone: ViTBackbone, **config):
        super().__init__(backbone, **{**config, "execution": "mask"})

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """Full-sequence masked forward (halted tokens zeroed)."""
        return self._forward_masked(images, zero_halted=True)


def build(backbone: ViTBackbone, **config) -> AViTMasked:
    """A-ViT with the released code's masked execution, around ``backbone``."""
    return AViTMasked(backbone, **config)
