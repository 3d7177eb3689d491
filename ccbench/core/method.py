"""What every method's model is: a backbone wrapped to return logits, an auxiliary loss and a trace.

A method module (``baselines/<name>.py``) defines a literal ``METADATA`` dict
(:class:`ccbench.common.method_meta.MethodMetadata`) and ``build(backbone, **config) -> ConditionalModel``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import ViTBackbone
from .trace import PADDING_EMBEDDED, PADDING_MLP_TOKENS, PADDING_TOKENS, Trace


@dataclass
class MethodOutput:
    """``logits [B, C]``, ``aux_loss`` (scalar, already weighted; 0 for none), per-sample ``trace``."""

    logits: torch.Tensor
    aux_loss: torch.Tensor
    trace: Trace


class ConditionalModel(nn.Module):
    """Base class: holds the backbone, the knob value and the training loss.

    Subclasses implement :meth:`forward` (the knob's name is the method's ``METADATA["knob"]``);
    ``execution`` says how skipped work is executed (``"removed"``: not computed at all; ``"masked"``:
    computed and discarded; ``"none"``: nothing is skipped)."""

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

    def prepare(self, inputs: torch.Tensor) -> None:
        """Set up freshly built modules from a few calibration inputs ``[b, ...]`` before fine-tuning
        (e.g. A-ViT's halting bias, MoEfication's activation sparsity). Default: nothing."""

    def calibration_sweep(self, sweep: list) -> list:
        """The knob values worth calibrating on this model (default: ``sweep`` unchanged). A method drops
        values that are provably the same operating point as another (see early-exit on two classes)."""
        return list(sweep)

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

    # parameter names holding a method's decisions (routers, gates, token predictors, exit heads): the
    # "router" of `ccbench transfer`'s protocols; classifier layers inside them count as heads
    decision_markers: tuple[str, ...] = ("router", "gates.", "predictors.", "exit_heads.")

    def classifier_heads(self) -> list[nn.Linear]:
        """The layers that map features to the task's outputs (the final classifier; early-exit adds
        its exit classifiers): re-initialised when the model moves to a new task."""
        backbone = self.backbone
        return [backbone.vit.head if hasattr(backbone, "vit") else backbone.head]

    def parameter_roles(self) -> dict[str, str]:
        """``{parameter name: role}``, role ``head`` (a classifier head), ``decision`` (see
        ``decision_markers``) or ``module`` (everything else: embeddings, blocks, experts)."""
        head_ids = {id(p) for h in self.classifier_heads() for p in h.parameters()}
        return {name: "head" if id(p) in head_ids else
                "decision" if any(m in name for m in self.decision_markers) else "module"
                for name, p in self.named_parameters()}

    def loss(self, out: MethodOutput, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Training loss: the task loss of ``out.logits`` (:func:`task_loss`) plus ``out.aux_loss``."""
        return task_loss(out.logits, labels, label_smoothing) + out.aux_loss

    def transfer_loss(self, out: MethodOutput, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Training loss under ``ccbench transfer``, where the re-initialised heads must learn the target
        task: :meth:`loss`, unless a method's own loss leaves the task out (it trains only parts the
        task loss cannot reach) and overrides this one."""
        return self.loss(out, labels, label_smoothing)

    def forward(self, images: torch.Tensor) -> MethodOutput:  # pragma: no cover - abstract
        """Images ``[B, 3, H, W]`` -> :class:`MethodOutput`."""
        raise NotImplementedError


def task_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy for class logits ``[B, C]``; mean squared error for one regression output
    ``[B, 1]`` (STS-B), labels ``[B]``."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits[:, 0], labels.to(logits.dtype))
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def predictions(logits: torch.Tensor) -> torch.Tensor:
    """Predictions ``[B]`` from ``logits [B, C]``: the argmax class, or the value itself for one
    regression output ``[B, 1]`` (STS-B)."""
    return logits[:, 0] if logits.shape[-1] == 1 else logits.argmax(-1)


def input_fields(backbone: nn.Module, inputs: torch.Tensor, tokens_per_block: torch.Tensor | None = None,
                 row_tokens: torch.Tensor | list[int] | None = None) -> dict[str, torch.Tensor]:
    """Trace fields that describe the input itself, for text: ``input_tokens [B]`` (real tokens; a text
    sample's dense cost depends on its length) and the padding its row of the batch carries (rows are
    padded to the batch's longest input, ``L``): ``padding/embedded_tokens [B]`` (``L - n``) and, given
    the method's ``tokens_per_block [B, depth]``, ``padding/tokens_per_block`` (the row's length minus
    its tokens wherever the block ran: ``row_tokens``, ``[depth]`` or ``[B, depth]``, the rows each block's
    attention ran on, default ``L``) with ``padding/mlp_tokens_per_block`` zero (the encoder's feed-forward
    runs on real tokens only, :meth:`ccbench.core.text_backbone.TextBlock.feed_forward`). Nothing for
    images (all the same size)."""
    if not hasattr(backbone, "tokenizer"):
        return {}
    n = backbone.input_tokens(inputs)
    out = {"input_tokens": n, PADDING_EMBEDDED: inputs.shape[-1] - n}
    if tokens_per_block is not None:
        rows = (inputs.shape[-1] if row_tokens is None
                else torch.as_tensor(row_tokens, dtype=tokens_per_block.dtype, device=tokens_per_block.device))
        out[PADDING_TOKENS] = torch.where(tokens_per_block > 0, rows - tokens_per_block, 0)
        out[PADDING_MLP_TOKENS] = torch.zeros_like(tokens_per_block)
    return out


def dense_trace(backbone: nn.Module, inputs: torch.Tensor) -> Trace:
    """Trace of samples that ran every block on every (real) token."""
    n = backbone.input_tokens(inputs)
    tokens = n[:, None].expand(-1, len(backbone.blocks)).clone()
    return Trace({"tokens_per_block": tokens, **input_fields(backbone, inputs, tokens)})


def masked_mean(x: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
    """Mean over the real tokens of ``x [B, N, D]`` (``keys [B, 1, 1, N]`` bool, None: all) -> ``[B, D]``."""
    if keys is None:
        return x.mean(1)
    w = keys[:, 0, 0, :, None].to(x.dtype)
    return (x * w).sum(1) / w.sum(1).clamp_min(1)


def select_keys(keys: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
    """The key masks of the samples at ``rows`` (None stays None)."""
    return None if keys is None else keys[rows]
