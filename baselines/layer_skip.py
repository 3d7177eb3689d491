"""``layer-skip``: a learned gate per block decides per sample whether the block runs (survey Eqs. 7-8).

Before block i a gate reads the mean of the (real, non-padding) tokens entering it, ``g_i = Linear(D, 2)(mean_t x_t)``
(the class token alone carries no image information before the first block); in training the decision
is a Gumbel-Softmax straight-through sample (``ccbench.core.sampling``) and the block's output is
``g * block(x) + (1 - g) * x``; the loss adds ``budget_weight * |mean executed share - target|`` (the
budget loss of peekvit). At inference the gate is hard (argmax) and a skipped block is not computed:
at batch N only the samples whose gate is on are gathered and run (compaction), so savings survive
batching. The knob is the target share of executed blocks, set at training time (one model per
value).
"""
from __future__ import annotations

import torch
from torch import nn

from ccbench.core.method import (
    ConditionalModel,
    MethodOutput,
    input_fields,
    masked_mean,
)
from ccbench.core.sampling import gumbel_softmax
from ccbench.core.trace import Trace

METADATA = {
    "name": "layer-skip",
    "family": "depth",
    "paper": "Wang et al. 2018, SkipNet: Learning Dynamic Routing in Convolutional Networks (ECCV); budget "
             "loss as in Devoto et al., peekvit",
    "bibtex": "@inproceedings{wang2018skipnet, title={{SkipNet}: Learning Dynamic Routing in Convolutional "
              "Networks}, author={Wang, Xin and Yu, Fisher and Dou, Zi-Yi and Darrell, Trevor and Gonzalez, "
              "Joseph E.}, booktitle={ECCV}, year={2018}}",
    "knob": {"name": "target", "default": 0.67, "direction": "lower = less compute", "sweep": [0.5, 0.67, 0.83],
             "needs_retraining": True, "value_is_share": True,
             "minimum": 0, "exclusive_minimum": True, "maximum": 1},
    "modalities": ["image", "text"],
    "description": "Per-block Gumbel gates on the mean token, budget loss |executed share - target|; skipped "
                   "blocks are not computed (compaction at batch N); one model per target.",
}


class LayerSkip(ConditionalModel):
    """Gated blocks; ``target`` = share of blocks to execute (training-time knob)."""

    execution = "removed"

    def __init__(self, backbone, target: float = 0.67, budget_weight: float = 1.0,
                 gumbel_tau: float = 1.0):
        super().__init__(backbone, knob=None)
        if not 0 < float(target) <= 1:
            raise ValueError(f"target must be in (0, 1], got {target}")
        self.knob = float(target)
        self.budget_weight, self.gumbel_tau = budget_weight, gumbel_tau
        d = backbone.config.embed_dim
        self.gates = nn.ModuleList(nn.Linear(d, 2) for _ in backbone.blocks)
        for gate in self.gates:  # start by running every block: "run" logit ahead by 3
            nn.init.zeros_(gate.weight)
            gate.bias.data = torch.tensor([3.0, 0.0])

    def set_knob(self, value) -> None:
        """Only the trained target: another needs its own model."""
        if float(value) != self.knob:
            raise ValueError(f"layer-skip was trained for target {self.knob}; another value needs its own model")

    def method_config(self) -> dict:
        """Hyperparameters for the record."""
        return {"target": self.knob, "budget_weight": self.budget_weight, "gumbel_tau": self.gumbel_tau,
                "gate_input": "mean of the tokens entering the block"}

    def cost_units(self) -> dict[str, int]:
        """One gate on one sample's mean token: a D x 2 linear (the mean counts 0 MACs)."""
        return {"skip_gate": self.config.embed_dim * 2}

    def forward(self, inputs: torch.Tensor) -> MethodOutput:
        """Soft-straight-through gates in training; hard gates and compaction at inference."""
        x, keys = self.backbone.start(inputs)
        b = x.shape[0]
        n = self.backbone.input_tokens(inputs)
        depth = len(self.backbone.blocks)
        ran = []
        for i, block in enumerate(self.backbone.blocks):
            logits = self.gates[i](masked_mean(x, keys))
            if self.training:
                g = gumbel_softmax(logits, tau=self.gumbel_tau, hard=True)[:, 0]
                x = g[:, None, None] * block(x, keys) + (1 - g[:, None, None]) * x
                ran.append(g)
            else:
                on = logits[:, 0] >= logits[:, 1]
                if bool(on.all()):
                    x = block(x, keys)
                elif bool(on.any()):
                    idx = on.nonzero().squeeze(1)
                    x = x.index_copy(0, idx, block(x[idx], None if keys is None else keys[idx]))
                ran.append(on.to(x.dtype))
        logits = self.backbone.classify(x[:, 0])
        executed = torch.stack(ran, 1)                               # [B, depth]
        aux = logits.new_zeros(())
        if self.training:
            aux = self.budget_weight * (executed.mean() - self.knob).abs()
        tokens = (executed.detach() * n[:, None]).long()
        trace = Trace({"tokens_per_block": tokens,
                       "units/skip_gate": torch.full((b,), depth, dtype=torch.long, device=x.device),
                       **input_fields(self.backbone, inputs, tokens)})
        return MethodOutput(logits, aux, trace)


def build(backbone, **config) -> LayerSkip:
    """Layer skipping around ``backbone``."""
    return LayerSkip(backbone, **config)
