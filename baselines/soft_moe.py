"""``soft-moe``: Soft MoE (Puigcerver et al., ICLR 2024) in every other block, upcycled from the
dense MLPs; ``slots`` per expert, one model trained per value (the slot parameters change shape)."""
from __future__ import annotations

from ccbench.baselines.width.moe import SoftMoE
from ccbench.baselines.width.moe_model import MoEModel
from ccbench.core.backbones import ViTBackbone

METADATA = {
    "name": "soft-moe",
    "family": "width",
    "paper": "Puigcerver et al. 2024, From Sparse to Soft Mixtures of Experts (ICLR)",
    "bibtex": "@inproceedings{puigcerver2024softmoe, title={From Sparse to Soft Mixtures of Experts}, "
              "author={Puigcerver, Joan and Riquelme, Carlos and Mustafa, Basil and Houlsby, Neil}, "
              "booktitle={ICLR}, year={2024}}",
    "knob": {"name": "slots", "default": 2, "direction": "lower = less compute", "sweep": [1, 2, 4],
             "needs_retraining": True,
             "integer": True, "minimum": 1},
    "modalities": ["image"],
    "description": "E = 8 upcycled experts in every other block; each processes `slots` softmax-weighted "
                   "mixes of the sample's tokens, outputs combined back per token; no token dropped.",
}


class SoftMoEModel(MoEModel):
    """Knob = slots per expert (fixed at construction: it shapes the slot parameters)."""

    soft_routing = True

    def __init__(self, backbone: ViTBackbone, slots: int = 2, num_experts: int = 8):
        self.hparams = {"num_experts": num_experts, "slots": int(slots)}
        dim = backbone.config.embed_dim
        super().__init__(backbone, lambda mlp: SoftMoE(mlp, dim, num_experts, int(slots)), knob=int(slots))

    def set_knob(self, value) -> None:
        """Slots cannot change after construction (they are parameters): only the built value is accepted."""
        if int(value) != self.hparams["slots"]:
            raise ValueError(f"soft-moe was built with {self.hparams['slots']} slots per expert; "
                             f"a different value needs its own model (the knob needs retraining)")

    def method_config(self) -> dict:
        """Hyperparameters for the record."""
        return {**self.hparams, "moe_blocks": self.moe_blocks}

    def routing_macs_per_token(self) -> int:
        """Slot logits, dispatch and combine: three D x (E * slots) products per token."""
        return 3 * self.config.embed_dim * self.hparams["num_experts"] * self.hparams["slots"]


def build(backbone: ViTBackbone, **config) -> SoftMoEModel:
    """Soft MoE around ``backbone``."""
    return SoftMoEModel(backbone, **config)
