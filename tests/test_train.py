"""``ccbench.training.train.train`` (issue 22): a run interrupted mid-way and resumed ends exactly where an
uninterrupted run ends (weights, EMA, curve), and with ``ema_decay`` the returned model (and what the
monitor sees) is the exponential moving average of the weights, not the last step's. A linear model on
16 random 16 x 16 images: milliseconds per step."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ccbench.common import catalog
from ccbench.data.image_data import ImageSplit
from ccbench.training.train import train

STEPS, PER_EPOCH = 12, 4  # 48 samples in batches of 4 over 16 images: 3 epochs of 4 steps


class Interrupted(Exception):
    pass


def _setup(ema_decay=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    g = torch.Generator().manual_seed(1)
    data = ImageSplit(torch.randint(0, 255, (16, 3, 16, 16), dtype=torch.uint8, generator=g), torch.arange(16) % 2,
                      [f"x{i}" for i in range(16)], ["a", "b"], "h")
    recipe = catalog.budgets().get("smoke").finetune.model_copy(
        update={"samples": STEPS * 4, "batch_size": 4, "ema_decay": ema_decay})
    return model, data, recipe


def _loss(stop_at: int | None = None, seen: list | None = None):
    """Cross-entropy; raises :class:`Interrupted` on call ``stop_at`` (1-based); appends the weights
    before each step to ``seen``."""
    calls = {"n": 0}

    def loss_fn(m, x, y):
        calls["n"] += 1
        if calls["n"] == stop_at:
            raise Interrupted
        if seen is not None:
            seen.append(_weights(m))
        logits = m(x)
        return nn.functional.cross_entropy(logits, y), logits
    return loss_fn


def _weights(m: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _curve(result):
    """The curve without wall-clock times."""
    return [{k: v for k, v in p.items() if k != "wall_s"} for p in result.curve]


@pytest.mark.parametrize("ema_decay", [None, 0.5])
def test_a_run_interrupted_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path, ema_decay):
    """Killed at step 6 (epoch 2), resumed from the state saved at the end of epoch 1: same final
    weights (the EMA's when enabled), same step count and the same per-epoch losses as a run never
    interrupted; the interrupted run did leave a state behind."""
    model, data, recipe = _setup(ema_decay)
    init = copy.deepcopy(model.state_dict())
    done = train(model, _loss(), recipe, data, 16, seed=3, progress=False)
    assert done.steps == STEPS and len(done.curve) == STEPS // PER_EPOCH

    state = tmp_path / "state.pt"
    killed = copy.deepcopy(model)
    killed.load_state_dict(init)
    with pytest.raises(Interrupted):
        train(killed, _loss(stop_at=6), recipe, data, 16, seed=3, state_path=state, progress=False)
    assert state.exists()

    resumed = copy.deepcopy(model)
    resumed.load_state_dict(init)  # the weights come from the saved state, not from here
    steps_run = []
    again = train(resumed, _loss(seen=steps_run), recipe, data, 16, seed=3, state_path=state, resume=True,
                  progress=False)
    assert len(steps_run) == STEPS - PER_EPOCH  # epochs 2 and 3 only
    assert again.steps == STEPS and again.samples == STEPS * 4
    assert _curve(again) == _curve(done)
    assert _same(_weights(resumed), _weights(model))


def test_a_state_saved_mid_epoch_resumes_within_that_epoch(tmp_path, monkeypatch):
    """Long epochs also save every ``SAVE_EVERY_S`` seconds (0 here: after every step). Killed during
    step 6, the run resumes after step 5, inside epoch 2, runs only the 7 steps left, in the same batch
    order, and ends on the uninterrupted run's weights. (The resumed epoch's ``train_loss`` averages
    only its resumed steps, so only the curve's counters are compared.)"""
    import ccbench.training.train as tr

    model, data, recipe = _setup()
    init = copy.deepcopy(model.state_dict())
    done = train(model, _loss(), recipe, data, 16, seed=3, progress=False)

    monkeypatch.setattr(tr, "SAVE_EVERY_S", 0.0)
    state = tmp_path / "state.pt"
    killed = copy.deepcopy(model)
    killed.load_state_dict(init)
    with pytest.raises(Interrupted):
        train(killed, _loss(stop_at=6), recipe, data, 16, seed=3, state_path=state, progress=False)
    resumed = copy.deepcopy(model)
    resumed.load_state_dict(init)
    steps_run = []
    again = train(resumed, _loss(seen=steps_run), recipe, data, 16, seed=3, state_path=state, resume=True,
                  progress=False)
    assert len(steps_run) == STEPS - 5
    assert [(p["epoch"], p["step"]) for p in again.curve] == [(p["epoch"], p["step"]) for p in done.curve]
    assert _same(_weights(resumed), _weights(model))


def test_without_resume_an_existing_state_is_ignored(tmp_path):
    """``resume=False`` starts over even when a state exists: every step runs again."""
    model, data, recipe = _setup()
    state = tmp_path / "state.pt"
    train(copy.deepcopy(model), _loss(), recipe, data, 16, seed=3, state_path=state, progress=False)
    steps_run = []
    train(model, _loss(seen=steps_run), recipe, data, 16, seed=3, state_path=state, resume=False, progress=False)
    assert len(steps_run) == STEPS


def test_ema_model_is_the_moving_average_of_the_step_weights():
    """With ``ema_decay = d`` the returned model is the EMA of the weights after each step w_1..w_n
    (timm's ``ModelEmaV3`` at ``update(step=s)`` for s = 0..n-1: decay 0 for s <= 1, i.e. a copy of
    w_1 then w_2, then ``ema = d ema + (1 - d) w_{s+1}``); training itself is unchanged by the EMA.
    The monitor at each epoch end gets the EMA too."""
    d = 0.5
    model, data, recipe = _setup()
    trajectory = []
    train(model, _loss(seen=trajectory), recipe, data, 16, seed=3, progress=False)
    post = trajectory[1:] + [_weights(model)]  # w_1 .. w_n (the weights before step s+1 are w_s)
    assert len(post) == STEPS
    expected, at_epoch_end = None, []
    for s, w in enumerate(post):
        expected = w if s <= 1 else [d * e + (1 - d) * x for e, x in zip(expected, w)]
        if (s + 1) % PER_EPOCH == 0:
            at_epoch_end.append(expected)

    ema_model, _, recipe_ema = _setup(ema_decay=d)
    seen_by_monitor = []
    result = train(ema_model, _loss(), recipe_ema, data, 16, seed=3, progress=False,
                   monitor=lambda m: (seen_by_monitor.append(_weights(m)), 50.0)[1])
    assert [p["calib_top1"] for p in result.curve] == [50.0] * (STEPS // PER_EPOCH)
    for got, want in zip(seen_by_monitor, at_epoch_end, strict=True):
        assert all(torch.allclose(g, w, atol=1e-6) for g, w in zip(got, want))
    assert all(torch.allclose(g, w, atol=1e-6) for g, w in zip(_weights(ema_model), expected))
    # not the last step's weights
    assert not all(torch.allclose(g, w, atol=1e-6) for g, w in zip(_weights(ema_model), post[-1]))
