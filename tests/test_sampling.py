"""The shared sampler Γ: forward values and gradient behaviour."""
import torch

from ccbench.core.sampling import (
    HaltingState,
    gaussian_depth_prior,
    gumbel_softmax,
    halting_prior_kl,
    halting_step,
    straight_through_topk,
)


def test_gumbel_softmax_hard_is_one_hot_with_soft_gradient():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, requires_grad=True)
    y = gumbel_softmax(logits, tau=0.5, hard=True)
    assert torch.equal(y.sum(-1), torch.ones(6))
    assert set(y.detach().unique().tolist()) <= {0.0, 1.0}
    (y * torch.arange(4.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0  # straight-through passes gradient


def test_gumbel_softmax_low_temperature_follows_argmax():
    torch.manual_seed(0)
    logits = torch.tensor([[0.0, 8.0, 0.0]]).repeat(200, 1)
    y = gumbel_softmax(logits, tau=0.1, hard=True)
    assert y[:, 1].mean() > 0.95


def test_gumbel_softmax_hard_samples_follow_softmax_of_the_logits():
    """The Gumbel-max property: a hard sample picks class i with probability softmax(logits)_i, so
    the noise is there (without it every row would pick the argmax) and has the right law."""
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]])).repeat(4000, 1)
    freq = gumbel_softmax(logits, tau=1.0, hard=True).mean(0)
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.03)     # 4.5 sd at n = 4000
    soft = gumbel_softmax(logits[:2], tau=1.0, hard=False)
    assert not torch.allclose(soft[0], soft[1])                                   # two draws differ


def test_straight_through_topk_forward_hard_backward_softmax():
    scores = torch.tensor([[0.5, 2.0, -1.0, 1.0]], requires_grad=True)
    mask = straight_through_topk(scores, 2)
    assert mask.tolist() == [[0.0, 1.0, 0.0, 1.0]]
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    (mask * w).sum().backward()
    ref = scores.detach().clone().requires_grad_(True)
    (torch.softmax(ref, -1) * w).sum().backward()
    assert torch.allclose(scores.grad, ref.grad)


def test_halting_weights_sum_to_one_and_remainder_carries_gradient():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 4, requires_grad=True)  # [blocks, batch, tokens]
    state = HaltingState.start(5, 4)
    total = torch.zeros(5, 4)
    for i in range(3):
        state, w = halting_step(state, torch.sigmoid(logits[i]), 0.99, i, last=i == 2)
        total = total + w
    assert torch.allclose(total, torch.ones(5, 4), atol=1e-6)
    assert not state.alive.any() and (state.halt_block >= 0).all()
    state.ponder.sum().backward()
    assert logits.grad.abs().sum() > 0


def test_halting_prior_kl_zero_at_prior_and_positive_elsewhere():
    prior = gaussian_depth_prior(6, 3.0)
    assert abs(prior.sum().item() - 1) < 1e-6 and prior.argmax().item() == 2
    assert halting_prior_kl(prior.clamp(0.01, 0.99) / prior.clamp(0.01, 0.99).sum(), prior).item() < 0.05
    assert halting_prior_kl(torch.tensor([0.9, 0.02, 0.02, 0.02, 0.02, 0.02]), prior).item() > 1.0
