"""``early-exit``: a classifier after every block, trained jointly; a sample leaves at the first exit
whose confidence reaches the threshold (BranchyNet / SDN / DeeBERT style).

Heads (LayerNorm + linear on the class token; on text a linear head on the mean of the real tokens, see
``TextBackbone.exit_readout``) follow blocks 0..depth-2, initialised from the backbone's final classifier,
which is the last exit. Training: the weighted sum of every exit's
cross-entropy, weights proportional to depth (survey Eq. 15). Inference: the confidence rule
(``max_softmax`` by default, or ``entropy``) with threshold tau (knob; tau > 1 never exits early,
tau = 0 always leaves at the first exit). ``rule="patience"`` is PABEE (``patience`` method): it
evaluates this model's checkpoint.

Batched execution keeps the savings: after each block the samples that exit leave the batch
(compaction), so the batch shrinks and no exited sample is computed further; batch 1 is the same
loop. Cost counts every exit head that was evaluated, including those that did not fire.

Text (any encoder with padding masks) runs the same way; on a regression task (STS-B) the patience
rule is PABEE's regression rule (successive heads' outputs differ by less than ``delta``) and the
confidence rule does not apply (no class probabilities): ``early-exit`` trains the heads (cached) and
refuses to measure; ``patience`` measures them.
"""
from __future__ import annotations

import torch
from torch import nn

from ccbench.common.errors import UserError
from ccbench.core.exits import (
    CRITERIA,
    exit_diagnostics,
    exit_histogram,
    exit_weights,
    make_exit_heads,
    mean_blocks_run,
)
from ccbench.core.method import (
    ConditionalModel,
    MethodOutput,
    input_fields,
    predictions,
    select_keys,
    task_loss,
)
from ccbench.core.trace import Trace

METADATA = {
    "name": "early-exit",
    "family": "depth",
    "paper": "Teerapittayanon et al. 2016, BranchyNet (ICPR); Kaya et al. 2019, Shallow-Deep Networks (ICML)",
    "bibtex": "@inproceedings{kaya2019sdn, title={Shallow-Deep Networks: Understanding and Mitigating Network "
              "Overthinking}, author={Kaya, Yigitcan and Hong, Sanghyun and Dumitras, Tudor}, booktitle={ICML}, "
              "year={2019}}\n"
              "@inproceedings{teerapittayanon2016branchynet, title={{BranchyNet}: Fast Inference via Early Exiting "
              "from Deep Neural Networks}, author={Teerapittayanon, Surat and McDanel, Bradley and Kung, H. T.}, "
              "booktitle={ICPR}, year={2016}}",
    "knob": {"name": "threshold", "default": 0.8, "direction": "lower = less compute",
             "sweep": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99], "needs_retraining": False,
             "minimum": 0},
    "modalities": ["image", "text"],
    # text v2: exit heads read the mean of the real tokens (v1 read [CLS], input-independent before block 4)
    "versions": {"text": 2},
    "description": "Exit heads after every block trained jointly (depth-weighted cross-entropies); a sample "
                   "leaves at the first head whose max-softmax reaches the threshold; exited samples leave "
                   "the batch.",
}


class EarlyExitModel(ConditionalModel):
    """Backbone + exit heads. ``rule``: ``"confidence"`` (knob = threshold tau) or ``"patience"``
    (knob = p, PABEE)."""

    execution = "removed"

    def __init__(self, backbone, threshold: float = 0.8, criterion: str = "max_softmax",
                 rule: str = "confidence", patience: int = 2, delta: float = 0.1):
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {sorted(CRITERIA)}, got {criterion!r}")
        if rule not in ("confidence", "patience"):
            raise ValueError(f"rule must be 'confidence' or 'patience', got {rule!r}")
        super().__init__(backbone, knob=threshold if rule == "confidence" else patience)
        self.criterion, self.rule, self.delta = criterion, rule, delta
        self.regression = backbone.config.num_classes == 1
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

    def calibration_sweep(self, sweep: list) -> list:
        """Drop thresholds at or below 1/C under max-softmax: a C-class softmax's maximum is never below
        1/C, so every such tau exits every sample at the first head (on two classes tau <= 0.5 is a
        chance-level classifier, and calibration would pick it as the cheapest point)."""
        num_classes = self.backbone.config.num_classes
        if self.rule != "confidence" or self.criterion != "max_softmax" or num_classes < 2:
            return list(sweep)
        return [v for v in sweep if v > 1.0 / num_classes]

    def classifier_heads(self) -> list:
        """The final classifier and every exit head's classifier (its last linear layer)."""
        return super().classifier_heads() + [[m for m in h.modules() if isinstance(m, nn.Linear)][-1]
                                             for h in self.exit_heads]

    def method_config(self) -> dict:
        """Hyperparameters for the record."""
        cfg = {"exit_after_blocks": list(range(len(self.backbone.blocks))), "criterion": self.criterion,
               "rule": self.rule, "loss_weights": "proportional to depth"}
        if hasattr(self.backbone, "tokenizer"):
            cfg["exit_readout"] = "mean of the real tokens"
        if self.regression:
            cfg.update(criterion="regression: |output_i - output_(i-1)| < delta", delta=self.delta)
        return cfg

    def cost_units(self) -> dict[str, int]:
        """One intermediate exit head on one class token."""
        return {"exit_head": self.backbone.head_macs()}

    def exit_logits(self, i: int, x: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
        """Logits of the exit after block ``i`` from that block's tokens ``x [B, N, D]`` (``keys``: the text
        padding mask): the backbone's classifier on the class token after the last block, else exit head ``i``
        on the backbone's ``exit_readout`` (ViT: the class token; text: the mean of the real tokens)."""
        if i == len(self.backbone.blocks) - 1:
            return self.backbone.classify(x[:, 0])
        return self.exit_heads[i](self.backbone.exit_readout(x, keys))

    def all_exit_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Every exit's logits, ``[B, depth, C]`` (runs every block: training and diagnostics)."""
        x, keys = self.backbone.start(inputs)
        out = []
        for i, block in enumerate(self.backbone.blocks):
            x = block(x, keys)
            out.append(self.exit_logits(i, x, keys))
        return torch.stack(out, 1)

    def loss(self, out: MethodOutput, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Depth-weighted sum of every exit's task loss (cross-entropy; MSE for regression)."""
        logits = self._exit_logits.pop()
        w = exit_weights(logits.shape[1]).to(logits.device)
        per_exit = torch.stack([task_loss(logits[:, i], labels, label_smoothing) for i in range(logits.shape[1])])
        return (w * per_exit).sum()

    def forward(self, inputs: torch.Tensor) -> MethodOutput:
        """Training: every exit (for :meth:`loss`); inference: exit rule with batch compaction."""
        if self.training:
            logits = self.all_exit_logits(inputs)
            self._exit_logits = [logits]
            depth = logits.shape[1]
            n = self.backbone.input_tokens(inputs)
            tokens = n[:, None].expand(-1, depth).clone()
            trace = Trace({"tokens_per_block": tokens, **input_fields(self.backbone, inputs, tokens)})
            return MethodOutput(logits[:, -1], logits.new_zeros(()), trace)
        return self._forward_exiting(inputs)

    def _exits_now(self, i: int, logits: torch.Tensor, state: dict) -> torch.Tensor:
        """Bool ``[b]``: which of the running samples leave after block ``i``."""
        if self.rule == "confidence":
            if self.regression:
                raise UserError("early-exit's confidence rule needs class probabilities and this task is a "
                                "regression; its trained heads are cached: measure them with `--method patience` "
                                "(PABEE's regression rule)")
            return CRITERIA[self.criterion](logits) >= float(self.knob)
        pred = predictions(logits)
        if "prev" in state:
            agree = (pred - state["prev"]).abs() < self.delta if self.regression else pred == state["prev"]
            state["count"] = torch.where(agree, state["count"] + 1, torch.zeros_like(state["count"]))
        else:
            state["count"] = torch.zeros_like(pred)
        state["prev"] = pred
        return state["count"] >= int(self.knob)

    @torch.no_grad()
    def _forward_exiting(self, inputs: torch.Tensor) -> MethodOutput:
        x, keys = self.backbone.start(inputs)
        n = self.backbone.input_tokens(inputs)
        b = x.shape[0]
        depth = len(self.backbone.blocks)
        rows = torch.arange(b, device=x.device)
        out = None
        exit_block = torch.full((b,), depth - 1, dtype=torch.long, device=x.device)
        state: dict = {}
        for i, block in enumerate(self.backbone.blocks):
            x = block(x, keys)
            logits = self.exit_logits(i, x, keys)
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
                rows, x, keys = rows[stay], x[stay], select_keys(keys, stay)
                state = {k: v[stay] for k, v in state.items()}
        blocks = torch.arange(depth, device=x.device)
        tokens = torch.where(blocks[None] <= exit_block[:, None], n[:, None], 0)
        trace = Trace({"tokens_per_block": tokens, "exit_block": exit_block,
                       "final_head_runs": (exit_block == depth - 1).long(),
                       "units/exit_head": torch.clamp(exit_block + 1, max=depth - 1),
                       **input_fields(self.backbone, inputs, tokens)})
        return MethodOutput(out, out.new_zeros(()), trace)

    @torch.no_grad()
    def extra_metrics(self, trace: Trace, labels: torch.Tensor, predictions: torch.Tensor, batches) -> dict:
        """Exit histogram, each exit's own accuracy, accuracy of exited predictions, overthinking."""
        was = self.training
        self.eval()
        logits = torch.cat([self.all_exit_logits(x).cpu() for x in batches()])
        self.train(was)
        exit_block = trace["exit_block"].cpu().numpy()
        if self.regression:  # no per-exit accuracy: the histogram and depth only
            return {"exits": {"exit_histogram": exit_histogram(exit_block, range(len(self.backbone.blocks))),
                              "mean_blocks_run": mean_blocks_run(exit_block), "rule": self.rule,
                              "criterion": "regression: |output_i - output_(i-1)| < delta"}}
        all_preds = logits.argmax(-1).numpy()
        diag = exit_diagnostics(all_preds, exit_block, predictions.cpu().numpy(),
                                labels.cpu().numpy(), list(range(len(self.backbone.blocks))))
        return {"exits": {**diag, "rule": self.rule, "criterion": self.criterion if self.rule == "confidence"
                          else "patience (argmax agreement)"}}


def build(backbone, **config) -> EarlyExitModel:
    """Early-exit model around ``backbone``."""
    return EarlyExitModel(backbone, **config)
