"""``static-depth``: the first k blocks of the backbone and its classifier, fine-tuned under the common
budget — the static model of equal compute every depth method must beat. One model per k (the
later blocks are removed from the model, not skipped)."""
from __future__ import annotations

import torch

from ccbench.core.method import ConditionalModel, MethodOutput, input_fields
from ccbench.core.trace import Trace

METADATA = {
    "name": "static-depth",
    "family": "static",
    "paper": "static baseline (no paper): a truncated backbone",
    "bibtex": "",
    "knob": {"name": "blocks", "default": 8, "direction": "lower = less compute", "sweep": [4, 6, 8],
             "needs_retraining": True,
             "integer": True, "minimum": 1},
    "modalities": ["image", "text"],
    "description": "The first k blocks + the classifier, fine-tuned under the common budget; one model per k.",
}


class StaticDepth(ConditionalModel):
    """The backbone truncated to its first ``blocks`` blocks."""

    execution = "removed"

    def __init__(self, backbone, blocks: int | None = None):
        super().__init__(backbone, knob=None)
        depth = len(backbone.blocks)
        blocks = round(2 * depth / 3) if blocks is None else blocks  # default: 8 of 12
        if float(blocks) != int(blocks) or not 1 <= int(blocks) <= depth:
            raise ValueError(f"blocks must be an integer in [1, {depth}], got {blocks}")
        self.knob = int(blocks)
        self.depth = depth  # the tier's depth: traces keep its width
        backbone.keep_blocks(self.knob)

    def set_knob(self, value) -> None:
        """Only the built depth: another needs its own trained model."""
        if int(value) != self.knob:
            raise ValueError(f"static-depth was built with {self.knob} blocks; another value needs its own model")

    def method_config(self) -> dict:
        """The depth defines the model."""
        return {"blocks": self.knob}

    def forward(self, inputs: torch.Tensor) -> MethodOutput:
        """The truncated backbone; the trace marks blocks beyond k as not run."""
        logits = self.backbone(inputs)
        n = self.backbone.input_tokens(inputs)
        tokens = torch.zeros(n.shape[0], self.depth, dtype=torch.long, device=n.device)
        tokens[:, :self.knob] = n[:, None]
        return MethodOutput(logits, logits.new_zeros(()),
                            Trace({"tokens_per_block": tokens, **input_fields(self.backbone, inputs, tokens)}))


def build(backbone, **config) -> StaticDepth:
    """Truncated backbone (``blocks`` = k)."""
    return StaticDepth(backbone, **config)
