"""Hand cases for the exit confidences and A-ViT's depth prior (survivors of the mutation run,
scripts/mutation_equivalent.md): each value below is computed by hand, not read off the code."""
from __future__ import annotations

import math

import numpy as np
import torch

from ccbench.core.exits import (
    exit_diagnostics,
    max_softmax,
    one_minus_normalized_entropy,
)
from ccbench.core.sampling import (
    HaltingState,
    gaussian_depth_prior,
    gumbel_softmax,
    halting_prior_kl,
    halting_step,
    straight_through_topk,
)


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


def test_gaussian_depth_prior_has_unit_std_by_default():
    """A-ViT calls the prior without ``std``: the default is a unit standard deviation."""
    w = [math.exp(-0.5 * (b - 2.0) ** 2) for b in (1, 2, 3, 4)]
    assert torch.allclose(gaussian_depth_prior(4, target=2.0), torch.tensor([v / sum(w) for v in w]))


def test_straight_through_topk_temperature_scales_the_backward_softmax():
    """Backward is the gradient of softmax(scores / tau): scores (0, ln 3) at tau = 1/2 give
    softmax (0, 2 ln 3) = (1/10, 9/10); d soft_1 / d scores = soft_1 (e_1 - soft) / tau = (-0.18, 0.18)."""
    scores = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)
    mask = straight_through_topk(scores, 1, tau=0.5)
    assert mask.tolist() == [[0.0, 1.0]]
    mask[0, 1].backward()
    assert torch.allclose(scores.grad, torch.tensor([[-0.18, 0.18]]), atol=1e-6)


def test_straight_through_topk_selects_along_the_last_dim_by_default():
    """A [1, 3, 2] score tensor: by default the top-1 of each pair (last dim), not of each column."""
    scores = torch.tensor([[[1.0, 2.0], [4.0, 3.0], [0.0, 5.0]]])
    want = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])  # (+ soft - soft.detach(): float noise only)
    assert torch.allclose(straight_through_topk(scores, 1), want, atol=1e-6)


def test_gumbel_softmax_defaults_are_a_hard_unit_temperature_sample_over_the_last_dim():
    """Defaults: ``hard=True`` (one-hot forward), ``tau=1`` and the last dim. The soft sample is
    softmax((logits + g) / tau) with torch's Gumbel noise g = -log(Exp(1)) drawn from the global
    generator, so with the same seed the default call equals the hard one-hot of that sample and its
    gradient is the soft sample's at tau = 1."""
    logits = torch.tensor([[[0.0, 1.0, 2.0], [2.0, 0.0, 1.0]]], requires_grad=True)  # [1, 2, 3]
    torch.manual_seed(7)
    g = -torch.empty_like(logits).exponential_().log()
    soft = torch.softmax((logits.detach() + g), -1)
    torch.manual_seed(7)
    y = gumbel_softmax(logits)
    one_hot = torch.nn.functional.one_hot(soft.argmax(-1), 3).float()
    assert torch.equal(y.detach(), one_hot)
    (y * torch.tensor([1.0, 2.0, 4.0])).sum().backward()
    ref = logits.detach().clone().requires_grad_(True)
    (torch.softmax(ref + g, -1) * torch.tensor([1.0, 2.0, 4.0])).sum().backward()
    assert torch.allclose(logits.grad, ref.grad, atol=1e-6)


def test_a_halted_token_stops_accumulating_halting_scores():
    """``cumulative`` is the sum of the halting scores of the blocks a token ran: after a token halts
    (0.995 >= 0.99 at block 0) later scores do not add to it; the running token's sum grows."""
    s = HaltingState.start(1, 2)
    s, _ = halting_step(s, torch.tensor([[0.3, 0.995]]), 0.99, 0, False)
    s, _ = halting_step(s, torch.tensor([[0.2, 0.5]]), 0.99, 1, False)
    assert torch.allclose(s.cumulative, torch.tensor([[0.5, 0.995]]))
    assert s.alive.tolist() == [[True, False]] and s.halt_block.tolist() == [[-1, 0]]


def test_exit_diagnostics_by_hand_with_thirds_and_an_exit_nobody_took():
    """Six samples, exits after blocks 0, 1 and 3, every label 1 (values written out by hand).
    Blocks run: 1 + 3 x 4 + 2 x 2 = 17 over 6 samples = 2.8333; each exit alone is right for 2, 3 and 4
    of 6 (33.333 %, 50 %, 66.667 %); samples that left at block 3 are right 2 of 3 times; one sample (the
    4th) was right at an earlier exit and wrong at the last: overthinking 1/6 = 0.16667."""
    all_preds = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [1, 0, 0], [0, 1, 1], [0, 0, 0]])
    exit_block = np.array([0, 3, 3, 3, 1, 1])
    final = np.array([1, 1, 1, 0, 1, 0])
    d = exit_diagnostics(all_preds, exit_block, final, np.ones(6, dtype=int), [0, 1, 3])
    assert d == {"exit_blocks": [0, 1, 3], "exit_histogram": {0: 1, 1: 2, 3: 3}, "mean_blocks_run": 2.8333,
                 "accuracy_of_each_exit_alone": {0: 33.333, 1: 50.0, 3: 66.667},
                 "accuracy_of_exited_predictions": {0: 100.0, 1: 50.0, 3: 66.667}, "overthinking_rate": 0.16667}
    nobody = exit_diagnostics(np.array([[1, 1], [0, 1]]), np.array([1, 1]), np.array([1, 1]), np.array([1, 1]), [0, 1])
    assert nobody["exit_histogram"] == {0: 0, 1: 2} and nobody["accuracy_of_exited_predictions"] == {0: None, 1: 100.0}


def test_a_token_halts_when_its_sum_reaches_the_threshold_exactly():
    """The rule is ``cumulative >= threshold``: 0.5 + 0.25 = 0.75 (exact in binary) halts at block 1
    with threshold 0.75, its remainder 1 - 0.5 = 0.5 as the weight; a token at 0.5 + 0.125 runs on."""
    s = HaltingState.start(1, 2)
    s, _ = halting_step(s, torch.tensor([[0.5, 0.5]]), 0.75, 0, False)
    s, w = halting_step(s, torch.tensor([[0.25, 0.125]]), 0.75, 1, False)
    assert s.halt_block.tolist() == [[1, -1]] and s.alive.tolist() == [[False, True]]
    assert w.tolist() == [[0.5, 0.125]]


def test_max_softmax_is_taken_per_row():
    """Rows (0, ln 3) and (0, ln 7): softmax (1/4, 3/4) and (1/8, 7/8), confidences 0.75 and 0.875 (a
    softmax or max over the batch dimension would give other values)."""
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(7.0)]])
    assert torch.allclose(max_softmax(logits), torch.tensor([0.75, 0.875]))


def test_one_exit_head_per_block_but_the_last():
    """A 3-block backbone gets 2 exit heads (the last block's exit is the backbone's classifier)."""
    from ccbench.core.backbones import ViTBackbone, ViTConfig
    from ccbench.core.exits import make_exit_heads

    backbone = ViTBackbone(ViTConfig(img_size=16, patch_size=8, embed_dim=16, depth=3, num_heads=2, num_classes=3))
    assert len(make_exit_heads(backbone)) == 2
