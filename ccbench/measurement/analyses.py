"""Per-family analyses of an evaluated split, for shift and transfer records.

A family (a method's ``METADATA["family"]``) says what is worth recording about where its compute went
and how its decisions moved: the depth family its exit histogram, the token family the keep ratio per
block, the width family the routing shift (``ccbench shift``) and module reuse (``ccbench transfer``).
Each family's :class:`FamilyAnalyses` sits in :data:`FAMILY_ANALYSES`; drivers call
:func:`family_analyses` and never branch on a family's name. A plug-in family adds its own entry.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ccbench.core.exits import exit_summary
from ccbench.core.trace import Trace

from .cost import CostTable
from .routing import module_reuse, routing_shift


class FamilyAnalyses:
    """A family without analyses of its own (dense, static). Every hook returns record fields."""

    def of_split(self, model, trace: Trace, table: CostTable) -> dict:
        """Fields for one evaluated split (a shift reference or condition): ``trace`` of its samples,
        ``table`` the model's cost table."""
        return {}

    def under_shift(self, model, trace: Trace, reference: Trace, seed: int) -> dict:
        """Fields comparing a shift condition's ``trace`` with the reference split's."""
        return {}

    def after_transfer(self, model, trace: Trace, source_samples: Callable[[], dict[str, np.ndarray]]) -> dict:
        """Fields of the transferred model's target ``trace``; ``source_samples()`` reads the source run's
        per-sample arrays (``trace.<field>`` among them)."""
        return {}


def keep_ratio_per_block(trace: Trace, tokens_per_sample: torch.Tensor) -> list[float]:
    """Mean share of each block's input tokens a sample still had, ``[depth]`` (1 = dense; 0 = the block
    did not run). ``tokens_per_sample [S]``: the sample's dense token count."""
    kept = trace["tokens_per_block"].double().sum(0)
    return [round(v, 4) for v in (kept / tokens_per_sample.double().sum()).tolist()]


def dense_tokens(trace: Trace, table: CostTable) -> torch.Tensor:
    """Tokens each sample would give every block when dense, ``[S]`` (text: its own length)."""
    if "input_tokens" in trace:
        return trace["input_tokens"]
    return torch.full((len(trace["tokens_per_block"]),), table.num_tokens)


class DepthAnalyses(FamilyAnalyses):
    """Where samples left (for models whose trace has ``exit_block``)."""

    def of_split(self, model, trace: Trace, table: CostTable) -> dict:
        """``{"exits": {"histogram", "mean_blocks_run"}}``."""
        return {"exits": self._exits(model, trace)} if "exit_block" in trace else {}

    def after_transfer(self, model, trace: Trace, source_samples) -> dict:
        """``{"exit_histogram": {"histogram", "mean_blocks_run"}}`` on the target."""
        return {"exit_histogram": self._exits(model, trace)} if "exit_block" in trace else {}

    @staticmethod
    def _exits(model, trace: Trace) -> dict:
        return exit_summary(trace["exit_block"].numpy(), len(model.backbone.blocks))


class TokenAnalyses(FamilyAnalyses):
    """How many tokens each block still saw."""

    def of_split(self, model, trace: Trace, table: CostTable) -> dict:
        """``{"keep_ratio_per_block": [depth]}``."""
        return {"keep_ratio_per_block": keep_ratio_per_block(trace, dense_tokens(trace, table))}


class WidthAnalyses(FamilyAnalyses):
    """How expert loads move (models with ``num_experts`` and ``experts_per_token``, trace ``expert_ids``)."""

    def under_shift(self, model, trace: Trace, reference: Trace, seed: int) -> dict:
        """``{"routing_shift": ...}`` (:func:`ccbench.measurement.routing.routing_shift`)."""
        if "expert_ids" not in trace:
            return {}
        return {"routing_shift": routing_shift(reference["expert_ids"].numpy(), trace["expert_ids"].numpy(),
                                               model.num_experts, seed)}

    def after_transfer(self, model, trace: Trace, source_samples) -> dict:
        """``{"module_reuse": ...}`` (:func:`ccbench.measurement.routing.module_reuse`) against the source run's picks."""
        if "expert_ids" not in trace:
            return {}
        return {"module_reuse": module_reuse(source_samples()["trace.expert_ids"], trace["expert_ids"].numpy(),
                                             model.num_experts, model.experts_per_token)}


FAMILY_ANALYSES: dict[str, FamilyAnalyses] = {"depth": DepthAnalyses(), "token": TokenAnalyses(),
                                              "width": WidthAnalyses()}


def register_family_analyses(family: str, analyses: FamilyAnalyses) -> FamilyAnalyses:
    """Give ``family`` (a plug-in's own, or a built-in one replaced) the shift/transfer ``analyses``."""
    from ccbench.common.names import check_name

    FAMILY_ANALYSES[check_name("family", family, "register_family_analyses")] = analyses
    return analyses


def family_analyses(family: str) -> FamilyAnalyses:
    """The analyses of ``family`` (none for a family without an entry)."""
    return FAMILY_ANALYSES.get(family, FamilyAnalyses())
