"""The per-sample decision trace: everything a method decided, one row per sample.

A trace is a mapping from field name to a tensor whose first dimension is the batch. Cost,
routing and exit metrics are functions of traces, so a method gets every metric by filling it
honestly. Fields (more families add more):

* ``tokens_per_block``: int ``[B, depth]``, tokens each block processed for this sample (0 when
  the block did not run for it). Dense: ``num_tokens`` everywhere.
* ``halt_block``: int ``[B, num_tokens]``, block index (0-based) at which each token halted (A-ViT).
"""
from __future__ import annotations

from typing import Iterator, Mapping

import torch

KNOWN_FIELDS = {"tokens_per_block", "halt_block"}


class Trace(Mapping[str, torch.Tensor]):
    """Immutable mapping ``field -> tensor [B, ...]``; all fields share the batch size."""

    def __init__(self, fields: Mapping[str, torch.Tensor]):
        sizes = {int(v.shape[0]) for v in fields.values()}
        if len(sizes) > 1:
            raise ValueError(f"trace fields disagree on batch size: { {k: v.shape for k, v in fields.items()} }")
        unknown = set(fields) - KNOWN_FIELDS
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

    @staticmethod
    def cat(traces: list["Trace"]) -> "Trace":
        """Concatenate traces along the batch dimension (fields must match)."""
        if not traces:
            return Trace({})
        return Trace({k: torch.cat([t[k] for t in traces]) for k in traces[0]})
