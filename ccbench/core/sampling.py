"""The survey's sampler Γ(S, x_c) ⊆ S: the one place where methods turn scores into discrete choices.

Three primitives, each with a documented gradient:

* :func:`gumbel_softmax` — categorical choice with Gumbel noise; ``hard=True`` returns one-hot
  samples whose gradient is that of the soft sample (straight-through).
* :func:`straight_through_topk` — keep the ``k`` highest scores; forward is the hard 0/1 mask,
  backward is the gradient of ``softmax(scores / tau)``.
* halting (:class:`HaltingState`, :func:`halting_step`) — A-ViT's cumulative halting: a token stops
  at the first block where its summed halting scores reach a threshold; the remainder
  ``r = 1 - sum(h before)`` carries the gradient of the stopping decision.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F


def gumbel_softmax(logits: torch.Tensor, tau: float = 1.0, hard: bool = True, dim: int = -1) -> torch.Tensor:
    """Sample from ``softmax(logits)`` with the Gumbel-Softmax relaxation (torch's implementation).

    ``hard=False``: the soft sample, differentiable. ``hard=True``: one-hot forward, gradient of the
    soft sample (straight-through). Same shape as ``logits``."""
    return F.gumbel_softmax(logits, tau=tau, hard=hard, dim=dim)


def straight_through_topk(scores: torch.Tensor, k: int, tau: float = 1.0, dim: int = -1) -> torch.Tensor:
    """0/1 mask of the ``k`` largest ``scores`` along ``dim`` (forward), with the gradient of
    ``softmax(scores / tau)`` (backward).

    >>> straight_through_topk(torch.tensor([[0.1, 3.0, 2.0, -1.0]]), 2)
    tensor([[0., 1., 1., 0.]])
    """
    soft = torch.softmax(scores / tau, dim=dim)
    idx = scores.topk(k, dim=dim).indices
    hard = torch.zeros_like(scores).scatter(dim, idx, 1.0)
    return hard + soft - soft.detach()


@dataclass
class HaltingState:
    """Per-token halting bookkeeping, all ``[B, N]``:

    * ``cumulative``: sum of halting scores so far;
    * ``remainder``: ``1 - cumulative`` before the current block (A-ViT's r);
    * ``alive``: bool, token still running;
    * ``ponder``: blocks run plus the remainder at halting (A-ViT's ρ = N + r);
    * ``halt_block``: block index at which the token halted, -1 while alive."""

    cumulative: torch.Tensor
    remainder: torch.Tensor
    alive: torch.Tensor
    ponder: torch.Tensor
    halt_block: torch.Tensor

    @staticmethod
    def start(batch: int, tokens: int, device=None) -> "HaltingState":
        """State before the first block: nothing accumulated, every token running."""
        z = torch.zeros(batch, tokens, device=device)
        return HaltingState(z, torch.ones_like(z), torch.ones(batch, tokens, dtype=torch.bool, device=device),
                            z.clone(), torch.full((batch, tokens), -1, dtype=torch.long, device=device))


def halting_step(state: HaltingState, h: torch.Tensor, threshold: float, block: int,
                 last: bool) -> tuple[HaltingState, torch.Tensor]:
    """One block of cumulative halting.

    ``h [B, N]`` are this block's halting scores in [0, 1] (forced to 1 at the ``last`` block).
    A running token halts here when ``cumulative + h >= threshold``. Returns the new state and the
    weight ``[B, N]`` with which this block's output enters the halting-weighted output: ``h`` for
    tokens still running, the remainder ``r`` for tokens halting now, 0 for tokens already halted.
    The weights of a token sum to exactly 1 over its blocks.

    >>> s = HaltingState.start(1, 2)
    >>> s, w = halting_step(s, torch.tensor([[0.3, 0.995]]), 0.99, 0, False)
    >>> w.tolist(), s.alive.tolist(), s.halt_block.tolist()
    ([[0.30000001192092896, 1.0]], [[True, False]], [[-1, 0]])
    >>> s, w = halting_step(s, torch.tensor([[0.2, 0.9]]), 0.99, 1, True)
    >>> [round(v, 4) for v in w[0].tolist()], s.halt_block.tolist(), [round(v, 4) for v in s.ponder[0].tolist()]
    ([0.7, 0.0], [[1, 0]], [2.7, 2.0])
    """
    alive = state.alive
    if last:
        h = torch.ones_like(h)
    h = h * alive
    cumulative = state.cumulative + h
    halting_now = alive & (cumulative >= threshold)
    still = alive & ~halting_now
    weight = torch.where(halting_now, state.remainder, torch.where(still, h, torch.zeros_like(h)))
    ponder = state.ponder + alive.float() + torch.where(halting_now, state.remainder, torch.zeros_like(h))
    remainder = state.remainder - torch.where(still, h, torch.zeros_like(h))
    halt_block = torch.where(halting_now, torch.full_like(state.halt_block, block), state.halt_block)
    return replace(state, cumulative=cumulative, remainder=remainder, alive=still, ponder=ponder,
                   halt_block=halt_block), weight


def gaussian_depth_prior(depth: int, target: float, std: float = 1.0, device=None) -> torch.Tensor:
    """Normalised Gaussian over block indices ``1..depth`` centred at ``target`` (A-ViT's
    distributional prior). Shape ``[depth]``, sums to 1."""
    blocks = torch.arange(1, depth + 1, dtype=torch.float32, device=device)
    p = torch.exp(-0.5 * ((blocks - target) / std) ** 2)
    return p / p.sum()


def halting_prior_kl(halting_mass: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """``KL(prior || q)`` where ``q`` is ``halting_mass [depth]`` (mean halting score per block)
    normalised to a distribution and clamped to [0.01, 0.99] as in A-ViT."""
    q = halting_mass / halting_mass.sum().clamp_min(1e-8)
    q = q.clamp(0.01, 0.99)
    return F.kl_div(q.log(), prior, reduction="sum")
