"""``ccbench.core.trace`` by hand (issue 22): what a trace refuses, how text batches of different lengths are
concatenated (per-token fields padded with ``PAD_TOKEN`` / 0), and the MACs a trace declares it spent
on padding."""
from __future__ import annotations

import pytest
import torch

from ccbench.core.trace import PAD_TOKEN, Trace, declared_padding_macs


def test_fields_with_different_batch_sizes_or_unknown_names_are_refused():
    """Every field shares the batch size; a field that is not known, a unit or a padding count is a
    typo that would silently drop out of every metric, so it is refused."""
    with pytest.raises(ValueError, match="disagree on batch size"):
        Trace({"exit_block": torch.zeros(2, dtype=torch.long), "patches": torch.zeros(3, dtype=torch.long)})
    with pytest.raises(ValueError, match=r"unknown trace fields \['exit_blocks'\]"):
        Trace({"exit_blocks": torch.zeros(2, dtype=torch.long)})
    ok = Trace({"exit_block": torch.zeros(2), "units/exit_head": torch.ones(2), "padding/expert_row": torch.ones(2)})
    assert len(ok) == 3 and ok.batch_size == 2 and set(ok) == {"exit_block", "units/exit_head", "padding/expert_row"}


def test_empty_trace_and_empty_concatenation_have_no_rows():
    """No fields (or no traces to concatenate): batch size 0, no fields."""
    assert Trace({}).batch_size == 0 and len(Trace.cat([])) == 0 and Trace.cat([]).batch_size == 0


def test_to_returns_a_detached_copy():
    """``to`` gives a copy whose tensors carry no autograd history; the original is unchanged."""
    w = torch.tensor([0.5, 0.25], requires_grad=True)
    t = Trace({"expert_weights": w * 2})
    moved = t.to("cpu")
    assert not moved["expert_weights"].requires_grad and t["expert_weights"].requires_grad
    assert moved["expert_weights"].tolist() == [1.0, 0.5]


def test_cat_pads_integer_fields_with_pad_token_and_float_fields_with_zero():
    """Two text batches of 2 and 3 tokens: the shorter one's per-token fields are padded at the end,
    expert ids with ``PAD_TOKEN`` (-2, not an expert and not 'dropped' -1), combine weights with 0;
    equal-shaped fields are concatenated unchanged."""
    a = Trace({"expert_ids": torch.tensor([[1, 0]]), "expert_weights": torch.tensor([[0.5, 0.25]]),
               "input_tokens": torch.tensor([2])})
    b = Trace({"expert_ids": torch.tensor([[3, -1, 2]]), "expert_weights": torch.tensor([[1.0, 0.0, 0.75]]),
               "input_tokens": torch.tensor([3])})
    t = Trace.cat([a, b])
    assert PAD_TOKEN == -2
    assert t["expert_ids"].tolist() == [[1, 0, -2], [3, -1, 2]]
    assert t["expert_weights"].tolist() == [[0.5, 0.25, 0.0], [1.0, 0.0, 0.75]]
    assert t["input_tokens"].tolist() == [2, 3] and t.batch_size == 2
    # the longer batch first: padding goes to the later, shorter rows
    assert Trace.cat([b, a])["expert_ids"].tolist() == [[3, -1, 2], [1, 0, -2]]
    # select picks rows in the order given
    assert t.select(torch.tensor([1, 0]))["input_tokens"].tolist() == [3, 2]


def test_declared_padding_sums_every_padding_unit_times_its_cost():
    """Executed-on-padding MACs per sample = sum over ``padding/<unit>`` of count x cost of one unit;
    unit counts (``units/...``) are useful work and add nothing; no padding field: zeros."""
    t = Trace({"units/expert_row": torch.tensor([5.0, 5.0]), "padding/expert_row": torch.tensor([1.0, 0.5]),
               "padding/router_row": torch.tensor([0.0, 2.0])})
    got = declared_padding_macs(t, {"expert_row": 100, "router_row": 7})
    assert got.dtype == torch.float64 and got.tolist() == [100.0, 64.0]
    none = declared_padding_macs(Trace({"exit_block": torch.tensor([1, 2, 3])}), {})
    assert none.tolist() == [0.0, 0.0, 0.0]
    assert declared_padding_macs(Trace({}), {}).tolist() == []


def test_padding_of_a_unit_without_a_cost_is_refused():
    """A padding count whose unit the cost table does not know cannot be priced: a KeyError naming it."""
    with pytest.raises(KeyError, match="padding of unit 'expert_rows'"):
        declared_padding_macs(Trace({"padding/expert_rows": torch.ones(1)}), {"expert_row": 10})
