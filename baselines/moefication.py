"""``moefication``: split each chosen dense MLP into experts and route to the top k (Zhang et al., 2022).

Hidden units of the dense MLP are grouped into E = 8 experts by balanced k-means on the first
layer's normalised weight rows; a linear router per layer is trained by regression (MSE) to predict
each expert's positive activation mass, with the backbone and the experts frozen (only routers
train, under the common budget); at inference the top-k experts by predicted mass run (knob k).
k = E is the dense model, exactly. On images the experts come from the tier backbone (pretrained on the
task, not fine-tuned), so the k = E row is that backbone's accuracy; on text the encoder's head is new,
so MoEfication splits the fine-tuned ``dense`` model of the same task (as the paper does with fine-tuned
BERT/T5) and its k = E row is ``dense``'s score.

MoEfication assumed ReLU's natural sparsity; ViT-Ti uses GELU. ``prepare`` measures the backbone's
activation sparsity (share of hidden GELU outputs <= 0 on the calibration images) and the record
carries it.
"""
from __future__ import annotations

import torch

from ccbench.baselines.width.moe import MoEficationMLP
from ccbench.baselines.width.moe_model import MoEModel
from ccbench.core.method import MethodOutput

METADATA = {
    "name": "moefication",
    "family": "width",
    "paper": "Zhang et al. 2022, MoEfication: Transformer Feed-forward Layers are Mixtures of Experts (Findings of ACL)",
    "bibtex": "@inproceedings{zhang2022moefication, title={{MoEfication}: Transformer Feed-forward Layers are "
              "Mixtures of Experts}, author={Zhang, Zhengyan and Lin, Yankai and Liu, Zhiyuan and Li, Peng and "
              "Sun, Maosong and Zhou, Jie}, booktitle={Findings of ACL}, year={2022}}",
    "knob": {"name": "k", "default": 4, "direction": "lower = less compute", "sweep": [2, 4, 6, 8],
             "needs_retraining": False,
             "integer": True, "minimum": 1},
    "modalities": ["image", "text"],
    "starts_from": {"text": "dense"},
    "constant_by_construction": [
        {"metrics": ["utilization", "dead_experts", "entropy", "jain", "load_imbalance", "class_specialization",
                     "position_specialization", "tokens_without_expert"],
         "knob_at_least": 8, "why": "at k = E = 8 every expert processes every token"}],
    "description": "Dense MLPs of every other block split into 8 experts by balanced k-means; routers "
                   "trained by regression on activation mass with experts frozen; top-k experts run.",
}


class MoEficationModel(MoEModel):
    """Knob = experts per token ``k``; only the routers train."""

    def __init__(self, backbone, k: int = 4, num_experts: int = 8):
        self.hparams = {"num_experts": num_experts, "split": "balanced k-means on fc1 rows",
                        "router": "linear, MSE on positive activation mass"}
        dim = backbone.config.embed_dim
        super().__init__(backbone, lambda mlp: MoEficationMLP(mlp, dim, num_experts, k), knob=k)
        self.register_buffer("activation_sparsity", torch.tensor(float("nan")))
        for name, p in self.named_parameters():
            p.requires_grad = ".router." in name

    def set_knob(self, value) -> None:
        """Experts per token: an integer in [1, E]."""
        self.set_experts_per_token(value)

    def method_config(self) -> dict:
        """Hyperparameters for the record, with the measured GELU sparsity."""
        return {**self.hparams, "moe_blocks": self.moe_blocks,
                "backbone_activation_sparsity": round(float(self.activation_sparsity), 4)}

    def routing_macs_per_token(self) -> int:
        """The router: one D x E linear."""
        return self.config.embed_dim * self.hparams["num_experts"]

    def loss(self, out: MethodOutput, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Only the routers' regression loss (nothing else trains)."""
        return out.aux_loss

    def transfer_loss(self, out: MethodOutput, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Under ``ccbench transfer`` the new head (and, by protocol, experts or routers) trains: the default
        loss, the task loss of the (dense-path) logits plus the routers' regression loss."""
        return super().loss(out, labels, label_smoothing)

    @torch.no_grad()
    def prepare(self, images: torch.Tensor) -> None:
        """Measure the share of hidden activations <= 0 in the MoE blocks on ``images``."""
        zeros, total = 0, 0
        hooks = []

        def count(_module, _inp, output):
            nonlocal zeros, total
            zeros += int((output <= 0).sum())
            total += output.numel()

        for layer in self.moe_layers:
            hooks.append(layer.act.register_forward_hook(count))
        was = self.training
        self.train()  # the dense path computes every hidden unit
        self(images)
        self.train(was)
        for h in hooks:
            h.remove()
        self.activation_sparsity.fill_(zeros / max(total, 1))


def build(backbone, **config) -> MoEficationModel:
    """MoEfication of ``backbone``'s MLPs in every other block."""
    return MoEficationModel(backbone, **config)
