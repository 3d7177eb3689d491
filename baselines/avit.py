"""``avit``: Adaptive Token halting (Yin et al., CVPR 2022), with halted tokens removed from the computation.

Per block l and running token k: ``h = sigmoid(gamma * t - beta)`` from the first embedding
dimension ``t`` of the block's output; the token halts once its cumulative ``h`` reaches the
threshold (1 - eps), and at the last block ``h = 1``. The class token halts too; the classifier
reads its halting-weighted states over blocks (``h`` before its halting block, the remainder ``r``
at it). Loss: cross-entropy + ``ponder_weight * mean(N + r)`` + ``prior_weight * KL(Gaussian prior
over blocks || halting distribution)``. The halting bookkeeping is ``ccbench.core.sampling``'s.

Execution. Training runs the full sequence with halted tokens frozen and excluded (as keys) from
attention. Inference *removes* them: alive tokens are gathered to the front of the sequence at
every block and the sequence shrinks; once a sample's class token halts nothing later can change
its output, so the sample leaves the batch. Both give the same outputs (tested). At batch > 1 the
remaining samples are padded to the longest one and padded keys are masked; that padding is
executed, not useful, compute: the trace declares it (``padding/tokens_per_block``), so the audit finds
executed = useful + declared padding at batch N too.

ccbench choices (both documented in the record's config):

* ``beta`` is set on the calibration split before fine-tuning (bisection so that the initial mean
  class-token halting depth equals ``target_depth``), because the scale of the first embedding
  dimension depends on the backbone; A-ViT fixed it by hand for DeiT.
* The distributional prior is applied twice: to the mean halting distribution of the patch tokens
  (A-ViT's) and to the class token's own. In the removing execution the class token's halting block
  is the sample's last block, so its depth is what wall-clock time depends on; with the patch-token
  prior alone (first run: target 6.5) the class token learned to run all 12 blocks while patch tokens
  halted early, which saved MACs but not time at batch 1.
* A compute grid trains one model per target (``compute_target``: the prior's ``target_depth`` is that
  share of the blocks) and calibrates the threshold on it. On the distilled ViT-Ti one model trained
  towards 8 of 12 blocks spans only 58.5-67.1 % of dense over thresholds 0.05-0.99, so no threshold
  reaches 25 or 40 %: A-ViT sets its compute in training, the threshold only trims it.
"""
from __future__ import annotations

import torch

from ccbench.core.backbones import ViTBackbone
from ccbench.core.method import ConditionalModel, MethodOutput
from ccbench.core.sampling import (
    HaltingState,
    gaussian_depth_prior,
    halting_prior_kl,
    halting_step,
)
from ccbench.core.trace import PADDING_TOKENS, Trace

METADATA = {
    "name": "avit",
    "family": "token",
    "paper": "Yin et al. 2022, A-ViT: Adaptive Tokens for Efficient Vision Transformer (CVPR)",
    "bibtex": "@inproceedings{yin2022avit, title={{A-ViT}: Adaptive Tokens for Efficient Vision "
              "Transformer}, author={Yin, Hongxu and Vahdat, Arash and Alvarez, Jose M. and Mallya, Arun "
              "and Kautz, Jan and Molchanov, Pavlo}, booktitle={CVPR}, pages={10809--10818}, year={2022}}",
    "knob": {"name": "threshold", "default": 0.99, "direction": "lower = less compute",
             "sweep": [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99],
             "needs_retraining": False, "trains_per_grid_target": True,
             "minimum": 0, "exclusive_minimum": True, "maximum": 1},
    "modalities": ["image"],
    "description": "Per-token cumulative halting from the first embedding dimension; halted tokens "
                   "are removed (not zeroed), so savings show at batch 1.",
}


class AViT(ConditionalModel):
    """A-ViT on a :class:`ViTBackbone`. ``knob`` = halting threshold (1 - eps)."""

    execution = "removed"

    def __init__(self, backbone: ViTBackbone, threshold: float = 0.99, gamma: float = 10.0,
                 beta: float = 30.0, ponder_weight: float = 5e-4, prior_weight: float = 0.1,
                 target_depth: float | None = None, compute_target: float | None = None, execution: str = "remove"):
        super().__init__(backbone, knob=threshold)
        self.gamma = gamma
        # a buffer, so the value set by ``prepare`` travels with the state dict
        self.register_buffer("beta", torch.tensor(float(beta)))
        self.ponder_weight, self.prior_weight = ponder_weight, prior_weight
        # default: halting centred at two thirds of the depth (8 of 12 blocks for ViT-Ti); a compute grid
        # trains towards its target share of dense instead (``compute_target``, 0-1)
        if compute_target is not None and not 0 < compute_target <= 1:
            raise ValueError(f"compute_target={compute_target} is not a share of dense in (0, 1]")
        if compute_target is not None and target_depth is not None:
            raise ValueError("give target_depth or compute_target, not both")
        self.compute_target = compute_target
        share = compute_target if compute_target is not None else 2 / 3
        self.target_depth = target_depth if target_depth is not None else round(share * len(backbone.blocks), 1)
        self.mode = execution  # "remove" at inference; "mask" forces the masked path (reference)

    def method_config(self) -> dict:
        """Hyperparameters for the record (``beta`` as set by :meth:`prepare`)."""
        aimed = {} if self.compute_target is None else {"compute_target": self.compute_target}
        return {"gamma": self.gamma, "beta": round(float(self.beta), 4), "ponder_weight": self.ponder_weight,
                "prior_weight": self.prior_weight, "target_depth": self.target_depth, **aimed,
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
        mass, cls_mass = [], []
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
            cls_mass.append((h * alive)[:, 0].mean())
            cls_out = cls_out + weight[:, 0, None] * x[:, 0]
        # after its class token halts a sample's other tokens cannot change its output: they count
        # as stopped there (the removing path does not run them)
        halt_block = torch.minimum(state.halt_block, state.halt_block[:, :1])
        logits = self.backbone.classify(cls_out)
        aux = logits.new_zeros(())
        if self.training:
            ponder = state.ponder.mean()
            prior = gaussian_depth_prior(depth, self.target_depth, device=x.device)
            kl = halting_prior_kl(torch.stack(mass), prior) + halting_prior_kl(torch.stack(cls_mass), prior)
            aux = self.ponder_weight * ponder + self.prior_weight * kl
        return MethodOutput(logits, aux, Trace({"tokens_per_block": tokens, "halt_block": halt_block}))

    # -- inference: halted tokens and finished samples are removed --
    # Only the class token's output is read, so inference keeps just what decides halting (the
    # cumulative scores) and the class token's remainder. Per-block bookkeeping is kept to a few
    # tensor ops because at 64 tokens on a CPU each op costs as much as a sizeable matmul.
    @torch.no_grad()
    def _forward_removed(self, images: torch.Tensor) -> MethodOutput:
        if images.shape[0] == 1:
            return self._forward_removed_one(images)
        x = self.backbone.embed(images)
        b, n, d = x.shape
        blocks = self.backbone.blocks
        depth, tau, dev = len(blocks), float(self.knob), x.device
        rows = torch.arange(b, device=dev)                      # original sample of each row
        pos = torch.arange(n, device=dev).expand(b, n)          # original token of each slot
        valid = torch.ones(b, n, dtype=torch.bool, device=dev)  # slot holds a running token
        all_valid = True
        cum = x.new_zeros(b, n)
        cls_rem = x.new_ones(b)
        cls_out = x.new_zeros(b, d)
        last = torch.zeros(b, n, dtype=torch.long, device=dev)   # last block each token ran
        tokens = torch.zeros(b, depth, dtype=torch.long, device=dev)
        padded = torch.zeros(b, depth, dtype=torch.long, device=dev)  # slots run beyond the row's own tokens
        for i, block in enumerate(blocks):
            tokens[rows, i] = valid.sum(1)
            padded[rows, i] = x.shape[1] - tokens[rows, i]
            x = block(x, attn_mask=None if all_valid else valid[:, None, None, :])
            slots = (rows[:, None].expand_as(pos), pos)
            last[slots] = torch.where(valid, i, last[slots])
            if i == depth - 1:
                cls_out[rows] += cls_rem[:, None] * x[:, 0]
                break
            h = self.halting_scores(x)
            cum = cum + h
            still = valid & (cum < tau)
            cls_still = still[:, 0]
            cls_out[rows] += torch.where(cls_still, h[:, 0], cls_rem)[:, None] * x[:, 0]
            cls_rem = cls_rem - h[:, 0]
            if not bool(cls_still.all()):  # samples whose class token halted leave the batch
                if not bool(cls_still.any()):
                    break
                rows, x, cum, pos, still, cls_rem = (t[cls_still] for t in (rows, x, cum, pos, still, cls_rem))
            counts = still.sum(1)
            length = int(counts.max())
            all_valid = bool((counts == length).all())
            if length < x.shape[1] or not all_valid:  # running tokens to the front, sequence shrinks
                order = torch.argsort((~still).to(torch.int8), dim=1, stable=True)[:, :length]
                x = torch.gather(x, 1, order[..., None].expand(-1, -1, d))
                cum, pos = torch.gather(cum, 1, order), torch.gather(pos, 1, order)
                valid = torch.arange(length, device=dev) < counts[:, None]
            else:
                valid = still
        logits = self.backbone.classify(cls_out)
        return MethodOutput(logits, logits.new_zeros(()), Trace({"tokens_per_block": tokens, "halt_block": last,
                                                                 PADDING_TOKENS: padded}))

    @torch.no_grad()
    def _forward_removed_one(self, images: torch.Tensor) -> MethodOutput:
        """Batch-1 inference: no padding, the sequence is exactly the running tokens."""
        x = self.backbone.embed(images)
        n, d = x.shape[1], x.shape[2]
        blocks = self.backbone.blocks
        depth, tau = len(blocks), float(self.knob)
        pos = torch.arange(n, device=x.device)
        cum = x.new_zeros(n)
        last = torch.zeros(1, n, dtype=torch.long, device=x.device)
        counts = [0] * depth
        cls_out = x.new_zeros(1, d)
        cls_rem = x.new_ones(())
        for i, block in enumerate(blocks):
            counts[i] = x.shape[1]
            x = block(x)
            last[0, pos] = i
            if i == depth - 1:
                cls_out += cls_rem * x[:, 0]
                break
            h = self.halting_scores(x[0])
            cum = cum + h
            if bool(cum[0] >= tau):  # the class token halts: nothing later can change the output
                cls_out += cls_rem * x[:, 0]
                break
            cls_out += h[0] * x[:, 0]
            cls_rem = cls_rem - h[0]
            keep = (cum < tau).nonzero().squeeze(1)
            if keep.shape[0] < x.shape[1]:
                x, cum, pos = x[:, keep], cum[keep], pos[keep]
        logits = self.backbone.classify(cls_out)
        tokens = torch.tensor([counts], dtype=torch.long, device=x.device)
        return MethodOutput(logits, logits.new_zeros(()), Trace({"tokens_per_block": tokens, "halt_block": last,
                                                                 PADDING_TOKENS: torch.zeros_like(tokens)}))

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
