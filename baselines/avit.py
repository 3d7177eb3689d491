"""``avit``: Adaptive Token halting (Yin et al., CVPR 2022), with halted tokens removed from the computation.

Per block l and running token k: ``h = sigmoid(gamma * t - beta)`` from the first embedding
dimension ``t`` of the block's output; the token halts once its cumulative ``h`` reaches the
threshold (1 - eps), and at the last block ``h = 1``. The class token halts too; the classifier
reads its halting-weighted states over blocks (``h`` before its halting block, the remainder ``r``
at it). Loss: cross-entropy + ``ponder_weight * mean(N + r)`` + ``prior_weight * KL(Gaussian prior
over blocks || halting distribution)``. The halting bookkeeping is ``ccbench.sampling``'s.

Execution. Training runs the full sequence with halted tokens frozen and excluded (as keys) from
attention. Inference *removes* them: alive tokens are gathered to the front of the sequence at
every block and the sequence shrinks; once a sample's class token halts nothing later can change
its output, so the sample leaves the batch. Both give the same outputs (tested). At batch > 1 the
remaining samples are padded to the longest one and padded keys are masked; that padding is
executed, not useful, compute and shows in the fvcore audit.

ccbench choice: ``beta`` is set on the calibration split before fine-tuning (bisection so that the
initial mean class-token halting depth equals ``target_depth``), because the scale of the first
embedding dimension depends on the backbone; A-ViT fixed it by hand for DeiT.
"""
from __future__ import annotations

import torch

from ccbench.backbones import ViTBackbone
from ccbench.method import ConditionalModel, MethodOutput
from ccbench.sampling import (HaltingState, gaussian_depth_prior, halting_prior_kl, halting_step)
from ccbench.trace import Trace

METADATA = {
    "name": "avit",
    "family": "token",
    "paper": "Yin et al. 2022, A-ViT: Adaptive Tokens for Efficient Vision Transformer (CVPR)",
    "bibtex": "@inproceedings{yin2022avit, title={{A-ViT}: Adaptive Tokens for Efficient Vision "
              "Transformer}, author={Yin, Hongxu and Vahdat, Arash and Alvarez, Jose M. and Mallya, Arun "
              "and Kautz, Jan and Molchanov, Pavlo}, booktitle={CVPR}, pages={10809--10818}, year={2022}}",
    "knob": {"name": "threshold", "default": 0.99, "direction": "lower = less compute",
             "sweep": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99],
             "needs_retraining": False},
    "modalities": ["image"],
    "description": "Per-token cumulative halting from the first embedding dimension; halted tokens "
                   "are removed (not zeroed), so savings show at batch 1.",
}


class AViT(ConditionalModel):
    """A-ViT on a :class:`ViTBackbone`. ``knob`` = halting threshold (1 - eps)."""

    knob_name = "threshold"
    execution = "removed"

    def __init__(self, backbone: ViTBackbone, threshold: float = 0.99, gamma: float = 10.0,
                 beta: float = 30.0, ponder_weight: float = 5e-4, prior_weight: float = 0.01,
                 target_depth: float | None = None, execution: str = "remove"):
        super().__init__(backbone, knob=threshold)
        self.gamma = gamma
        # a buffer, so the value set by ``prepare`` travels with the state dict
        self.register_buffer("beta", torch.tensor(float(beta)))
        self.ponder_weight, self.prior_weight = ponder_weight, prior_weight
        # default: halting centred a little past mid-depth (6.5 of 12 blocks for ViT-Ti)
        self.target_depth = target_depth if target_depth is not None else round(0.54 * len(backbone.blocks), 1)
        self.mode = execution  # "remove" at inference; "mask" forces the masked path (reference)

    def method_config(self) -> dict:
        """Hyperparameters for the record (``beta`` as set by :meth:`prepare`)."""
        return {"gamma": self.gamma, "beta": round(float(self.beta), 4), "ponder_weight": self.ponder_weight,
                "prior_weight": self.prior_weight, "target_depth": self.target_depth,
                "inference_execution": self.mode}

    def halting_scores(self, block_out: torch.Tensor) -> torch.Tensor:
        """``[..., D]`` block output -> ``[...]`` halting scores ``sigmoid(gamma * x[..., 0] - beta)``."""
        return torch.sigmoid(self.gamma * block_out[..., 0] - self.beta)

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """Masked path in training (or when ``mode == "mask"``), removing path otherwise."""
        if self.training or self.mode == "mask":
            return self._forward_masked(images)
        return self._forward_removed(images)

    # -- full sequence, halted tokens frozen and masked out of attention (training, reference) --
    def _forward_masked(self, images: torch.Tensor, zero_halted: bool = False) -> MethodOutput:
        x = self.backbone.embed(images)
        b, n, _ = x.shape
        depth = len(self.backbone.blocks)
        state = HaltingState.start(b, n, x.device)
        cls_out = torch.zeros_like(x[:, 0])
        tokens = torch.zeros(b, depth, dtype=torch.long, device=x.device)
        mass = []
        for i, block in enumerate(self.backbone.blocks):
            alive = state.alive
            tokens[:, i] = torch.where(alive[:, 0], alive.sum(1), torch.zeros_like(tokens[:, i]))
            # a sample with no running token attends to all keys: its outputs are discarded anyway,
            # and a fully masked row would make NaNs that leak into gradients
            keys = alive | ~alive.any(1, keepdim=True)
            y = block(x, attn_mask=keys[:, None, None, :])
            x = torch.where(alive[..., None], y, x)
            if zero_halted:  # the released A-ViT code's execution (avit-masked): same outputs
                x = x * alive[..., None]
            h = self.halting_scores(x)
            state, weight = halting_step(state, h, float(self.knob), i, last=i == depth - 1)
            mass.append((h * alive)[:, 1:].mean())
            cls_out = cls_out + weight[:, 0, None] * x[:, 0]
        # after its class token halts a sample's other tokens cannot change its output: they count
        # as stopped there (the removing path does not run them)
        halt_block = torch.minimum(state.halt_block, state.halt_block[:, :1])
        logits = self.backbone.classify(cls_out)
        aux = logits.new_zeros(())
        if self.training:
            ponder = state.ponder.mean()
            prior = gaussian_depth_prior(depth, self.target_depth, device=x.device)
            aux = self.ponder_weight * ponder + self.prior_weight * halting_prior_kl(torch.stack(mass), prior)
        return MethodOutput(logits, aux, Trace({"tokens_per_block": tokens, "halt_block": halt_block}))

    # -- inference: halted tokens and finished samples are removed --
    @torch.no_grad()
    def _forward_removed(self, images: torch.Tensor) -> MethodOutput:
        x = self.backbone.embed(images)
        b, n, d = x.shape
        depth = len(self.backbone.blocks)
        dev = x.device
        rows = torch.arange(b, device=dev)                     # original sample of each row
        pos = torch.arange(n, device=dev).expand(b, n)          # original token index of each slot
        valid = torch.ones(b, n, dtype=torch.bool, device=dev)  # slot holds a running token
        state = HaltingState.start(b, n, dev)                   # per slot
        cls_out = torch.zeros(b, d, device=dev, dtype=x.dtype)
        tokens = torch.zeros(b, depth, dtype=torch.long, device=dev)
        halt_block = torch.full((b, n), -1, dtype=torch.long, device=dev)
        for i, block in enumerate(self.backbone.blocks):
            tokens[rows, i] = valid.sum(1)
            mask = None if bool(valid.all()) else valid[:, None, None, :]
            x = block(x, attn_mask=mask)
            state, weight = halting_step(state, self.halting_scores(x), float(self.knob), i,
                                         last=i == depth - 1)
            cls_out[rows] += weight[:, 0, None] * x[:, 0]
            # rows whose class token halted leave the batch: all their running tokens stop here
            keep_rows = state.alive[:, 0]
            stopped = valid & ~(state.alive & keep_rows[:, None])
            halt_block[rows[:, None].expand_as(pos)[stopped], pos[stopped]] = i
            if not bool(keep_rows.any()):
                break
            # compaction: running tokens move to the front, the sequence shrinks to the longest row
            running = state.alive[keep_rows]
            length = int(running.sum(1).max())
            order = torch.argsort((~running).to(torch.int8), dim=1, stable=True)[:, :length]
            rows, pos = rows[keep_rows], torch.gather(pos[keep_rows], 1, order)
            x = torch.gather(x[keep_rows], 1, order[..., None].expand(-1, -1, d))
            state = state.select(keep_rows.nonzero().flatten(), order)
            valid = state.alive
        logits = self.backbone.classify(cls_out)
        return MethodOutput(logits, logits.new_zeros(()),
                            Trace({"tokens_per_block": tokens, "halt_block": halt_block}))

    @torch.no_grad()
    def prepare(self, images: torch.Tensor) -> None:
        """Set ``beta`` by bisection so that the mean class-token halting depth (blocks run) on
        ``images`` (calibration split) is ``target_depth`` for the untrained halting."""
        was = self.training
        self.eval()
        lo, hi = -50.0, 200.0
        for _ in range(25):
            mid = (lo + hi) / 2
            self.beta.fill_(mid)
            trace = self._forward_masked(images).trace
            depth_run = (trace["tokens_per_block"] > 0).sum(1).float().mean().item()
            lo, hi = (mid, hi) if depth_run < self.target_depth else (lo, mid)
        self.beta.fill_((lo + hi) / 2)
        self.train(was)


def build(backbone: ViTBackbone, **config) -> AViT:
    """A-ViT around ``backbone``; ``config`` overrides :class:`AViT` defaults."""
    return AViT(backbone, **config)
