"""``moe-topk``: token-choice top-k MoE (Switch / V-MoE) in every other block, upcycled from the
dense MLPs, fine-tuned at k = 1 under the common budget; k is swept on that model (V-MoE evaluates
other k than it trained with). Capacity factor 1.25 per sample; load-balancing and z-loss."""
from __future__ import annotations

from ccbench.baselines.width.moe import TopKMoE
from ccbench.baselines.width.moe_model import MoEModel
from ccbench.core.backbones import ViTBackbone

METADATA = {
    "name": "moe-topk",
    "family": "width",
    "paper": "Riquelme et al. 2021, Scaling Vision with Sparse Mixture of Experts (NeurIPS); Shazeer et al. 2017, "
             "Sparsely-Gated Mixture-of-Experts (ICLR); Fedus et al. 2022, Switch Transformers (JMLR)",
    "bibtex": "@inproceedings{riquelme2021vmoe, title={Scaling Vision with Sparse Mixture of Experts}, "
              "author={Riquelme, Carlos and Puigcerver, Joan and Mustafa, Basil and Neumann, Maxim and "
              "Jenatton, Rodolphe and Pinto, Andr{\\'e} Susano and Keysers, Daniel and Houlsby, Neil}, "
              "booktitle={NeurIPS}, year={2021}}\n"
              "@inproceedings{shazeer2017moe, title={Outrageously Large Neural Networks: The Sparsely-Gated "
              "Mixture-of-Experts Layer}, author={Shazeer, Noam and Mirhoseini, Azalia and Maziarz, Krzysztof and "
              "Davis, Andy and Le, Quoc and Hinton, Geoffrey and Dean, Jeff}, booktitle={ICLR}, year={2017}}\n"
              "@article{fedus2022switch, title={Switch Transformers: Scaling to Trillion Parameter Models with Simple "
              "and Efficient Sparsity}, author={Fedus, William and Zoph, Barret and Shazeer, Noam}, "
              "journal={Journal of Machine Learning Research}, volume={23}, number={120}, pages={1--39}, year={2022}}",
    "knob": {"name": "k", "default": 1, "direction": "lower = less compute", "sweep": [1, 2],
             "needs_retraining": False,
             "integer": True, "minimum": 1},
    "modalities": ["image"],
    "description": "E = 8 upcycled experts in every other block, top-k token choice with capacity factor "
                   "1.25 per sample, Switch load balancing + router z-loss; trained at k = 1.",
}


class TopKMoEModel(MoEModel):
    """Knob = experts per token ``k``."""

    def __init__(self, backbone: ViTBackbone, k: int = 1, num_experts: int = 8, capacity_factor: float = 1.25,
                 balance_weight: float = 0.01, z_weight: float = 1e-3):
        self.hparams = {"num_experts": num_experts, "capacity_factor": capacity_factor, "train_k": k,
                        "balance_weight": balance_weight, "z_weight": z_weight}
        dim = backbone.config.embed_dim
        super().__init__(backbone, lambda mlp: TopKMoE(mlp, dim, num_experts, k, capacity_factor, balance_weight,
                                                       z_weight), knob=k)

    def set_knob(self, value) -> None:
        """Experts per token: an integer in [1, E]."""
        self.set_experts_per_token(value)

    def method_config(self) -> dict:
        """Hyperparameters for the record."""
        return {**self.hparams, "moe_blocks": self.moe_blocks, "combine": "p / stop_grad(sum selected p)"}

    def routing_macs_per_token(self) -> int:
        """The router: one D x E linear."""
        return self.config.embed_dim * self.hparams["num_experts"]


def build(backbone: ViTBackbone, **config) -> TopKMoEModel:
    """Top-k MoE around ``backbone`` (its MLPs are upcycled in place)."""
    return TopKMoEModel(backbone, **config)
