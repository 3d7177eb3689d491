"""What every method's model is: a backbone wrapped to return logits, an auxiliary loss and a trace.

A method module (``baselines/<name>.py``) defines a literal ``METADATA`` dict
(:class:`ccbench.method_meta.MethodMetadata`) and ``build(backbone, **config) -> ConditionalModel``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import ViTBackbone
from .trace import Trace


@dataclass
class MethodOutput:
    """``logits [B, C]``, ``aux_loss`` (scalar, already weighted; 0 for none), per-sample ``trace``."""

    logits: torch.Tensor
    aux_loss: torch.Tensor
    trace: Trace


class ConditionalModel(nn.Module):
    """Base class: holds the backbone, the knob value and the training loss.

    Subclasses implement :meth:`forward` and set ``knob_name``; ``execution`` says how skipped work is
    executed (``"removed"``: not computed at all; ``"masked"``: computed and discarded;
    ``"none"``: nothing is skipped)."""

    knob_name: str | None = None
    execution: str = "none"

    def __init__(self, backbone: ViTBackbone, knob: Any = None):
        super().__init__()
        self.backbone = backbone
        self.knob = knob

    @property
    def config(self):
        """The backbone's :class:`ViTConfig`."""
        return self.backbone.config

    def set_knob(self, value: Any) -> None:
        """Set the inference trade-off knob (no retraining needed when the method allows it)."""
        self.knob = value

    def method_config(self) -> dict:
        """Hyperparameters that define this model, for the record."""
        return {}

    def cost_units(self) -> dict[str, int]:
        """MACs of one unit of each of this method's own components (its decision overhead:
        predictors, matching, routers, exit heads...), counted by the trace's ``units/<name>``."""
        return {}

    def extra_metrics(self, trace: Trace, labels: torch.Tensor, predictions: torch.Tensor,
                      batches: Callable[[], Iterable[torch.Tensor]]) -> dict:
        """Family-specific metrics for the record (routing statistics, exit diagnostics...), from the
        eval split's trace, ``labels [S]`` and ``predictions [S]``; ``batches()`` iterates the split's
        images ``[b, 3, H, W]`` in order, for methods that need another pass. ``{}`` when none."""
        return {}

    def loss(self, out: MethodOutput, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Training loss: cross-entropy of ``out.logits`` plus ``out.aux_loss``."""
        return F.cross_entropy(out.logits, labels, label_smoothing=label_smoothing) + out.aux_loss

    def forward(self, images: torch.Tensor) -> MethodOutput:  # pragma: no cover - abstract
        """Images ``[B, 3, H, W]`` -> :class:`MethodOutput`."""
        raise NotImplementedError


def full_tokens_trace(batch: int, depth: int, tokens: int, device=None) -> Trace:
    """Trace of a sample that ran every block on every token."""
    return Trace({"tokens_per_block": torch.full((batch, depth), tokens, dtype=torch.long, device=device)})
