"""``early-exit``: a classifier after every block, trained jointly; a sample leaves at the first exit
whose confidence reaches the threshold (BranchyNet / SDN / DeeBERT style).

Heads (LayerNorm + linear on the class token) follow blocks 0..depth-2, initialised from the
backbone's final classifier, which is the last exit. Training: the weighted sum of every exit's
cross-entropy, weights proportional to depth (survey Eq. 15). Inference: the confidence rule
(``max_softmax`` by default, or ``entropy``) with threshold tau (knob; tau > 1 never exits early,
tau = 0 always leaves at the first exit). ``rule="patience"`` is PABEE (``patience`` method): it
evaluates this model's checkpoint.

Batched execution keeps the savings: after each block the samples that exit leave the batch
(compaction), so the batch shrinks and no exited sample is computed further; batch 1 is the same
loop. Cost counts every exit head that was evaluated, including those that did not fire.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ccbench.backbones import ViTBackbone
from ccbench.exits import CRITERIA, exit_diagnostics, exit_head_macs, exit_weights, make_exit_heads
from ccbench.method import ConditionalModel, MethodOutput
from ccbench.trace import Trace

METADATA = {
    "name": "early-exit",
    "family": "depth",
    "paper": "Teerapittayanon et al. 2016, BranchyNet (ICPR); Kaya et al. 2019, Shallow-Deep Networks (ICML)",
    "bibtex": "@inproceedings{kaya2019sdn, title={Shallow-Deep Networks: Understanding and Mitigating Network "
              "Overthinking}, author={Kaya, Yigitcan and Hong, Sanghyun and Dumitras, Tudor}, booktitle={ICML}, "
              "year={2019}}",
    "knob": {"name": "threshold", "default": 0.8, "direction": "lower = less compute",
             "sweep": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99], "needs_retraining": False},
    "modalities": ["image"],
    "description": "Exit heads after every block trained jointly (depth-weighted cross-entropies); a sample "
                   "leaves at the first head whose max-softmax reaches the threshold; exited samples leave "
                   "the batch.",
}


class EarlyExitModel(ConditionalModel):
    """Backbone + exit heads. ``rule``: ``"confidence"`` (knob = threshold tau) or ``"patience"``
    (knob = p, PABEE)."""

    execution = "removed"

    def __init__(self, backbone: ViTBackbone, threshold: float = 0.8, criterion: str = "max_softmax",
                 rule: str = "confidence", patience: int = 2):
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {sorted(CRITERIA)}, got {criterion!r}")
        if rule not in ("confidence", "patience"):
            raise ValueError(f"rule must be 'confidence' or 'patience', got {rule!r}")
        super().__init__(backbone, knob=threshold if rule == "confidence" else patience)
        self.knob_name = "threshold" if rule == "confidence" else "patience"
        self.criterion, self.rule = criterion, rule
        self.exit_heads = make_exit_heads(backbone)
        self._exit_logits: list[torch.Tensor] = []

    def set_knob(self, value) -> None:
        """Threshold tau (confidence rule, >= 0) or patience p (a non-negative integer)."""
        if self.rule == "patience":
            if float(value) != int(value) or int(value) < 0:
                raise ValueError(f"patience must be a non-negative integer, got {value}")
            value = int(value)
        elif float(value) < 0:
            raise ValueError(f"threshold must be >= 0, got {value}")
        self.knob = value

    def method_config(self) -> dict:
        """Hyperparameters for the record."""
        return {"exit_after_blocks": list(range(len(self.backbone.blocks))), "criterion": self.criterion,
                "rule": self.rule, "loss_weights": "proportional to depth"}

    def cost_units(self) -> dict[str, int]:
        """One intermediate exit head on one class token."""
        return {"exit_head": exit_head_macs(self.config.embed_dim, self.config.num_classes)}

    def exit_logits(self, i: int, cls_state: torch.Tensor) -> torch.Tensor:
        """Logits of the exit after block ``i`` (the backbone's classifier after the last block)."""
        if i == len(self.backbone.blocks) - 1:
            return self.backbone.classify(cls_state)
        return self.exit_heads[i](cls_state)

    def all_exit_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Every exit's logits, ``[B, depth, C]`` (runs every block: training and diagnostics)."""
        x = self.backbone.embed(images)
        out = []
        for i, block in enumerate(self.backbone.blocks):
            x = block(x)
            out.append(self.exit_logits(i, x[:, 0]))
        return torch.stack(out, 1)

    def loss(self, out: MethodOutput, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Depth-weighted sum of every exit's cross-entropy."""
        logits = self._exit_logits.pop()
        w = exit_weights(logits.shape[1]).to(logits.device)
        per_exit = torch.stack([F.cross_entropy(logits[:, i], labels, label_smoothing=label_smoothing)
                                for i in range(logits.shape[1])])
        return (w * per_exit).sum()

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """Training: every exit (for :meth:`loss`); inference: exit rule with batch compaction."""
        if self.training:
            logits = self.all_exit_logits(images)
            self._exit_logits = [logits]
            depth = logits.shape[1]
            b = images.shape[0]
            trace = Trace({"tokens_per_block": torch.full((b, depth), self.config.num_tokens, dtype=torch.long,
                                                          device=images.device)})
            return MethodOutput(logits[:, -1], logits.new_zeros(()), trace)
        return self._forward_exiting(images)

    def _exits_now(self, i: int, logits: torch.Tensor, state: dict) -> torch.Tensor:
        """Bool ``[b]``: which of the running samples leave after block ``i``."""
        if self.rule == "confidence":
            return CRITERIA[self.criterion](logits) >= float(self.knob)
        pred = logits.argmax(-1)
        if "prev" in state:
            state["count"] = torch.where(pred == state["prev"], state["count"] + 1, torch.zeros_like(state["count"]))
        else:
            state["count"] = torch.zeros_like(pred)
        state["prev"] = pred
        return state["count"] >= int(self.knob)

    @torch.no_grad()
    def _forward_exiting(self, images: torch.Tensor) -> MethodOutput:
        x = self.backbone.embed(images)
        b, n = x.shape[0], x.shape[1]
        depth = len(self.backbone.blocks)
        rows = torch.arange(b, device=x.device)
        out = None
        exit_block = torch.full((b,), depth - 1, dtype=torch.long, device=x.device)
        state: dict = {}
        for i, block in enumerate(self.backbone.blocks):
            x = block(x)
            logits = self.exit_logits(i, x[:, 0])
            if out is None:
                out = logits.new_zeros(b, logits.shape[1])
            if i == depth - 1:
                out[rows] = logits
                break
            leave = self._exits_now(i, logits, state)
            if bool(leave.any()):
                out[rows[leave]] = logits[leave]
                exit_block[rows[leave]] = i
                stay = ~leave
                if not bool(stay.any()):
                    break
                rows, x = rows[stay], x[stay]
                state = {k: v[stay] for k, v in state.items()}
        blocks = torch.arange(depth, device=x.device)
        tokens = torch.where(blocks[None] <= exit_block[:, None], n, 0)
        trace = Trace({"tokens_per_block": tokens, "exit_block": exit_block,
                       "final_head_runs": (exit_block == depth - 1).long(),
                       "units/exit_head": torch.clamp(exit_block + 1, max=depth - 1)})
        return MethodOutput(out, out.new_zeros(()), trace)

    @torch.no_grad()
    def extra_metrics(self, trace: Trace, labels: torch.Tensor, predictions: torch.Tensor, batches) -> dict:
        """Exit histogram, each exit's own accuracy, accuracy of exited predictions, overthinking."""
        was = self.training
        self.eval()
        all_preds = torch.cat([self.all_exit_logits(x).argmax(-1).cpu() for x in batches()]).numpy()
        self.train(was)
        diag = exit_diagnostics(all_preds, trace["exit_block"].cpu().numpy(), predictions.cpu().numpy(),
                                labels.cpu().numpy(), list(range(len(self.backbone.blocks))))
        return {"exits": {**diag, "rule": self.rule, "criterion": self.criterion if self.rule == "confidence"
                          else "patience (argmax agreement)"}}


def build(backbone: ViTBackbone, **config) -> EarlyExitModel:
    """Early-exit model around ``backbone``."""
    return EarlyExitModel(backbone, **config)
