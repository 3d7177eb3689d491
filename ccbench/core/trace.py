"""The per-sample decision trace: everything a method decided, one row per sample.

A trace is a mapping from field name to a tensor whose first dimension is the batch. Cost,
routing and exit metrics are functions of traces, so a method gets every metric by filling it
honestly. Fields (more families add more):

* ``tokens_per_block``: int ``[B, depth]``, tokens each block processed for this sample (0 when
  the block did not run for it). Dense: ``num_tokens`` everywhere.
* ``mlp_tokens_per_block``: int ``[B, depth]``, tokens each block's MLP processed when that differs
  from the attention's (token merging or fusion inside a block; 0 where the MLP was replaced, e.g.
  by experts). Absent: equal to ``tokens_per_block``.
* ``patches``: int ``[B]``, patch tokens embedded (absent: the backbone's number of patches).
* ``input_tokens``: int ``[B]``, tokens of the input (text: real, non-padding tokens; the dense cost
  of a text sample depends on it). Absent for images (every image has the tier's token count).
* ``final_head_runs``: int ``[B]``, 1 when the backbone's final classifier produced the output, 0
  when an early-exit head did (absent: 1).
* ``units/<component>``: ``[B]`` counts of a method's own components (predictor rows, matched token
  pairs, exit heads, router rows, expert rows...); the MACs of one unit come from the method's
  ``cost_units()`` through the cost table.
* ``halt_block``: int ``[B, num_tokens]``, block index (0-based) at which each token halted (A-ViT).
* ``exit_block``: int ``[B]``, block index (0-based) after which the sample left (depth family).
* ``expert_ids`` / ``expert_weights``: ``[B, L, N, K]``, per MoE layer, token and pick: the expert
  (-1 = dropped over capacity, -2 = a padding position, not a token) and its combine weight (width
  family, ``ccbench.baselines.width.moe_model``).
* ``expert_requested``: ``[B, L, N, K]``, token-choice MoE only: the router's top-k choice of each pick
  before capacity (``expert_ids`` is -1 exactly where it was dropped; -2 at padding).

* ``padding/<component>``: ``[B]`` (float) units executed on padding, not useful work (grouped
  MoE execution pads each expert's rows to the busiest expert's): a batch's padding is spread evenly
  over its samples. Useful MACs ignore these fields; executed MACs = useful + declared padding.
* ``padding/tokens_per_block``: int ``[B, depth]``, token slots each block executed for this sample beyond
  its ``tokens_per_block`` (its row padded to the longest row of the batch: A-ViT at batch N, text
  batches padded to their longest input); ``padding/mlp_tokens_per_block``: int ``[B, depth]``, how many of
  those padded slots the block's MLP half also ran on (absent: all of them; text: none, the encoder's
  feed-forward runs on real tokens only); ``padding/embedded_tokens``: int ``[B]``, padding positions
  embedded (text). Their MACs depend on the block cost, so ``ccbench.measurement.cost.padding_macs``
  prices them, and :func:`declared_padding_macs` (unit counts only) skips them.

Per-token fields of text batches have different lengths; :meth:`Trace.cat` pads them (with
``PAD_TOKEN`` for integer fields, 0 for float ones) to the longest.
"""
from __future__ import annotations

from typing import Iterator, Mapping

import torch

KNOWN_FIELDS = {"tokens_per_block", "mlp_tokens_per_block", "patches", "input_tokens", "final_head_runs",
                "halt_block", "exit_block", "expert_ids", "expert_weights", "expert_requested"}
PAD_TOKEN = -2  # integer per-token fields at padding positions


def register_trace_field(name: str, source: str = "a plug-in") -> str:
    """Declare a per-sample trace field that a plug-in method records (``units/`` and ``padding/``
    fields need none); returns ``name``, ``UserError`` when it breaks :data:`ccbench.common.names.NAME_RULE`.

    >>> register_trace_field("gate_scores") in KNOWN_FIELDS
    True
    >>> register_trace_field("../x", "plugin evil")
    Traceback (most recent call last):
    ...
    ccbench.common.errors.UserError: trace field name '../x' from plugin evil is not allowed: use 1-64 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit
    """
    from ccbench.common.names import check_name

    KNOWN_FIELDS.add(check_name("trace field", name, source))
    return name
UNIT_PREFIX = "units/"
PADDING_PREFIX = "padding/"
PADDING_TOKENS = "padding/tokens_per_block"   # [B, depth] padded token slots per block (priced by the cost table)
PADDING_MLP_TOKENS = "padding/mlp_tokens_per_block"   # [B, depth] of those the MLP half ran on (default: all)
PADDING_EMBEDDED = "padding/embedded_tokens"  # [B] padding positions embedded
TOKEN_PADDING_FIELDS = (PADDING_TOKENS, PADDING_MLP_TOKENS, PADDING_EMBEDDED)


class Trace(Mapping[str, torch.Tensor]):
    """Immutable mapping ``field -> tensor [B, ...]``; all fields share the batch size."""

    def __init__(self, fields: Mapping[str, torch.Tensor]):
        sizes = {int(v.shape[0]) for v in fields.values()}
        if len(sizes) > 1:
            raise ValueError(f"trace fields disagree on batch size: { {k: v.shape for k, v in fields.items()} }")
        unknown = {k for k in fields if k not in KNOWN_FIELDS and not k.startswith((UNIT_PREFIX, PADDING_PREFIX))}
        if unknown:
            raise ValueError(f"unknown trace fields {sorted(unknown)}; known: {sorted(KNOWN_FIELDS)}")
        self._fields = dict(fields)

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    @property
    def batch_size(self) -> int:
        """Number of samples (rows)."""
        return next(iter(self._fields.values())).shape[0] if self._fields else 0

    def to(self, device: str) -> "Trace":
        """A detached copy on ``device``."""
        return Trace({k: v.detach().to(device) for k, v in self._fields.items()})

    def select(self, index: torch.Tensor) -> "Trace":
        """The rows at ``index`` (long ``[S]``), in that order."""
        return Trace({k: v[index.to(v.device)] for k, v in self._fields.items()})

    @staticmethod
    def cat(traces: list["Trace"]) -> "Trace":
        """Concatenate traces along the batch dimension (fields must match); fields whose other
        dimensions differ (per-token fields of text batches) are padded to the largest first."""
        if not traces:
            return Trace({})
        return Trace({k: torch.cat(_padded([t[k] for t in traces])) for k in traces[0]})


def _padded(parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Pad every tensor's non-batch dimensions to the largest (``PAD_TOKEN`` or 0)."""
    shape = [max(p.shape[d] for p in parts) for d in range(1, parts[0].dim())]
    out = []
    for p in parts:
        if list(p.shape[1:]) == shape:
            out.append(p)
            continue
        fill = 0.0 if p.is_floating_point() else PAD_TOKEN
        big = p.new_full((p.shape[0], *shape), fill)
        big[(slice(None), *(slice(0, s) for s in p.shape[1:]))] = p
        out.append(big)
    return out


def declared_padding_macs(trace: Mapping[str, torch.Tensor], units: Mapping[str, int]) -> torch.Tensor:
    """MACs a method declares it executed on padding, float64 ``[B]``: each ``padding/<name>`` count
    times the cost of one ``<name>`` unit (``units``: the cost table's, e.g. ``CostTable.units``);
    zeros when the trace declares none. Token padding (:data:`TOKEN_PADDING_FIELDS`) is not a unit
    count and is left to ``ccbench.measurement.cost.padding_macs``.

    >>> t = Trace({"tokens_per_block": torch.tensor([[3], [3]]), "padding/expert_row": torch.tensor([1.0, 2.0])})
    >>> declared_padding_macs(t, {"expert_row": 10}).tolist()
    [10.0, 20.0]
    """
    batch = next(iter(trace.values())).shape[0] if len(trace) else 0
    total = torch.zeros(batch, dtype=torch.float64)
    for key in trace:
        if key.startswith(PADDING_PREFIX) and key not in TOKEN_PADDING_FIELDS:
            name = key[len(PADDING_PREFIX):]
            if name not in units:
                raise KeyError(f"trace declares padding of unit {name!r} but has no cost for it (known: {sorted(units)})")
            total = total + units[name] * trace[key].to(torch.float64).cpu()
    return total
