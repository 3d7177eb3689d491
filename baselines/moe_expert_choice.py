"""``moe-expert-choice``: expert-choice routing (Zhou et al. 2022) in every other block, upcycled
from the dense MLPs; each expert takes ``ceil(c * N / E)`` tokens of each sample. Fine-tuned at
capacity factor c = 1; c is swept on that model."""
from __future__ import annotations

from ccbench.baselines.width.moe import ExpertChoiceMoE
from ccbench.baselines.width.moe_model import MoEModel
from ccbench.core.backbones import ViTBackbone

METADATA = {
    "name": "moe-expert-choice",
    "family": "width",
    "paper": "Zhou et al. 2022, Mixture-of-Experts with Expert Choice Routing (NeurIPS)",
    "bibtex": "@inproceedings{zhou2022expertchoice, title={Mixture-of-Experts with Expert Choice Routing}, "
              "author={Zhou, Yanqi and Lei, Tao and Liu, Hanxiao and Du, Nan and Huang, Yanping and Zhao, "
              "Vincent and Dai, Andrew and Chen, Zhifeng and Le, Quoc and Laudon, James}, booktitle={NeurIPS}, "
              "year={2022}}",
    "knob": {"name": "capacity", "default": 1.0, "direction": "lower = less compute", "sweep": [0.5, 1.0, 2.0],
             "needs_retraining": False,
             "minimum": 0, "exclusive_minimum": True},
    "modalities": ["image"],
    "constant_by_construction": [
        {"metrics": ["utilization", "dead_experts", "entropy", "jain", "load_imbalance", "class_specialization"],
         "why": "every expert takes exactly its capacity from every sample: the load is uniform and each "
                "sample's expert distribution is the same"}],
    "description": "E = 8 upcycled experts in every other block; each expert takes its top ceil(c N / E) "
                   "tokens per sample; trained at c = 1.",
}


class ExpertChoiceModel(MoEModel):
    """Knob = capacity factor ``c`` (expert rows per sample = about c x tokens)."""

    def __init__(self, backbone: ViTBackbone, capacity: float = 1.0, num_experts: int = 8):
        self.hparams = {"num_experts": num_experts, "train_capacity": capacity}
        dim = backbone.config.embed_dim
        super().__init__(backbone, lambda mlp: ExpertChoiceMoE(mlp, dim, num_experts, capacity), knob=capacity)

    def set_knob(self, value) -> None:
        """Capacity factor > 0."""
        if float(value) <= 0:
            raise ValueError(f"capacity must be > 0, got {value}")
        self.knob = float(value)
        for layer in self.moe_layers:
            layer.capacity_factor = self.knob

    def method_config(self) -> dict:
        """Hyperparameters for the record."""
        return {**self.hparams, "moe_blocks": self.moe_blocks, "combine": "p / stop_grad(sum selected p)"}

    def routing_macs_per_token(self) -> int:
        """The router: one D x E linear."""
        return self.config.embed_dim * self.hparams["num_experts"]


def build(backbone: ViTBackbone, **config) -> ExpertChoiceModel:
    """Expert-choice MoE around ``backbone``."""
    return ExpertChoiceModel(backbone, **config)
