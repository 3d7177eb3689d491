"""Hand cases for the exit confidences and A-ViT's depth prior (survivors of the mutation run,
scripts/mutation_equivalent.md): each value below is computed by hand, not read off the code."""
from __future__ import annotations

import math

import torch

from ccbench.exits import max_softmax, one_minus_normalized_entropy
from ccbench.sampling import gaussian_depth_prior, halting_prior_kl


def test_max_softmax_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])        # softmax (1/4, 3/4) and (1/2, 1/2)
    assert torch.allclose(max_softmax(logits), torch.tensor([0.75, 0.5]))


def test_entropy_confidence_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0], [30.0, 0.0]])
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))               # nats, for (1/4, 3/4)
    want = torch.tensor([1 - h / math.log(2), 0.0, 1.0])               # uniform: 0; near one-hot: 1
    assert torch.allclose(one_minus_normalized_entropy(logits), want, atol=1e-6)
    three = torch.tensor([[0.0, 0.0, math.log(2.0)]])                  # (1/4, 1/4, 1/2), normalised by log 3
    h3 = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    assert torch.allclose(one_minus_normalized_entropy(three), torch.tensor([1 - h3 / math.log(3)]), atol=1e-6)


def test_gaussian_depth_prior_by_hand():
    p = gaussian_depth_prior(3, target=2.0, std=1.0)
    w = [math.exp(-0.5), 1.0, math.exp(-0.5)]
    assert torch.allclose(p, torch.tensor([v / sum(w) for v in w]))
    wide = gaussian_depth_prior(3, target=1.0, std=2.0)                # exp(-d^2 / 8) for d = 0, 1, 2
    w = [1.0, math.exp(-1 / 8), math.exp(-4 / 8)]
    assert torch.allclose(wide, torch.tensor([v / sum(w) for v in w]))


def test_halting_prior_kl_normalises_and_clamps_as_avit():
    prior = torch.tensor([0.2, 0.3, 0.5])
    mass = torch.tensor([2.0, 3.0, 5.0])                               # normalises to the prior: KL 0
    assert abs(halting_prior_kl(mass, prior).item()) < 1e-6
    q = torch.tensor([0.01, 0.99, 0.01])                               # (0, 1, 0) clamped to [0.01, 0.99]
    want = sum(p * math.log(p / qq) for p, qq in zip(prior.tolist(), q.tolist()))
    assert math.isclose(halting_prior_kl(torch.tensor([0.0, 4.0, 0.0]), prior).item(), want, rel_tol=1e-5)
