"""``dense``: the tier's backbone fine-tuned under the same budget as every method; the reference row."""
from __future__ import annotations

import torch

from ccbench.core.backbones import ViTBackbone
from ccbench.core.method import ConditionalModel, MethodOutput, dense_trace

METADATA = {
    "name": "dense",
    "family": "dense",
    "paper": "Touvron et al. 2021 (DeiT)",
    "bibtex": "@inproceedings{touvron2021deit, title={Training data-efficient image transformers \\& "
              "distillation through attention}, author={Touvron, Hugo and Cord, Matthieu and Douze, "
              "Matthijs and Massa, Francisco and Sablayrolles, Alexandre and J{\\'e}gou, Herv{\\'e}}, "
              "booktitle={ICML}, year={2021}}",
    "knob": {"name": "none", "default": None, "direction": "none"},
    "modalities": ["image", "text"],
    "description": "Every block on every token; fine-tuned from the tier backbone (text: the tier's pretrained "
                   "encoder with a new head) with the common budget.",
}


class Dense(ConditionalModel):
    """The backbone run densely; its trace says every block saw every token."""

    def forward(self, inputs: torch.Tensor) -> MethodOutput:
        """Dense logits and an all-tokens trace (text: the real tokens of each sample)."""
        logits = self.backbone(inputs)
        return MethodOutput(logits, logits.new_zeros(()), dense_trace(self.backbone, inputs))


def build(backbone: ViTBackbone) -> Dense:
    """Wrap ``backbone`` (modified in place by training)."""
    return Dense(backbone)
