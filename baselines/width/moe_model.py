"""The width family's shared model: a backbone whose MLPs in chosen blocks are MoE layers.

A method module (``baselines/moe_*.py``, ``soft_moe.py``, ``moefication.py``) only says which layer
(``ccbench.baselines.width.moe``) replaces each chosen MLP and what its knob sets; this class runs the blocks, sums
the layers' auxiliary losses and writes the trace:

* ``expert_ids [B, L, N, K]`` / ``expert_weights [B, L, N, K]``: per MoE layer, token and pick, the
  expert (-1 = dropped) and its combine weight;
* ``expert_requested [B, L, N, K]`` (token-choice layers): the router's top-k choice of each pick before
  capacity, so requested load and drops are measurable;
* ``mlp_tokens_per_block``: 0 at MoE blocks (their norm2 is counted in ``units/moe_token``);
* ``units/moe_token``: tokens entering MoE layers (their norm2);
* ``units/router_token``: tokens routed (router, or slot logits + dispatch + combine);
* ``units/expert_row``: rows (tokens or slots) processed by experts, summed over layers;
* ``padding/expert_row``: rows the grouped execution ran on padding (``ccbench.baselines.width.moe``), summed over
  layers and spread evenly over the batch's samples (0 for expert-choice and Soft MoE: they never pad).
"""
from __future__ import annotations

import torch
from torch import nn

from ccbench.core.method import ConditionalModel, MethodOutput, input_fields
from ccbench.core.trace import PAD_TOKEN, Trace

from .moe import expert_bank


def every_other_block(depth: int) -> list[int]:
    """V-MoE's placement: the odd blocks (every other one, ending with the last).

    >>> every_other_block(12)
    [1, 3, 5, 7, 9, 11]
    """
    return list(range(1, depth, 2))


def _at_positions(values: torch.Tensor, real: torch.Tensor, fill) -> torch.Tensor:
    """Per-token routing of a text batch's real tokens as one row set, ``[1, L, T, K]``, put back at
    their positions: ``[B, L, length, K]`` with ``fill`` at padding (``real [B, length]`` bool)."""
    b, length = real.shape
    out = values.new_full((b, values.shape[1], length, values.shape[3]), fill)
    out.permute(0, 2, 1, 3)[real] = values[0].transpose(0, 1)
    return out


class MoEModel(ConditionalModel):
    """A backbone with ``make_layer(dense_mlp) -> MoE layer`` in ``blocks``' MLPs. On text the MLPs see
    the real tokens of the batch as one row set ``[1, T, D]`` (``ccbench.core.text_backbone.TextBlock``);
    the trace puts each token's routing back at its position (``PAD_TOKEN`` at padding)."""

    execution = "removed"
    soft_routing = False  # Soft MoE: every expert contributes to every token

    def __init__(self, backbone, make_layer, blocks: list[int] | None = None, knob=None):
        super().__init__(backbone, knob=knob)
        self.moe_blocks = blocks if blocks is not None else every_other_block(len(backbone.blocks))
        for i in self.moe_blocks:
            block = backbone.blocks[i]
            block.mlp = make_layer(block.mlp)

    @property
    def is_text(self) -> bool:
        """Whether the backbone is a text encoder (routing positions are then bucketed by log2)."""
        return hasattr(self.backbone, "tokenizer")

    @property
    def moe_layers(self) -> list[nn.Module]:
        """The MoE layers, in block order."""
        return [self.backbone.blocks[i].mlp for i in self.moe_blocks]

    @property
    def num_experts(self) -> int:
        """Experts per MoE layer (every layer has the same number)."""
        return len(self.moe_layers[0].experts)

    @property
    def experts_per_token(self) -> int:
        """Picks per token ``k`` of the MoE layers (1 for layers without a ``k``: expert choice, Soft MoE)."""
        return int(getattr(self.moe_layers[0], "k", 1))

    def set_experts_per_token(self, value) -> None:
        """Set ``k`` (experts per token) on every MoE layer: an integer in [1, E]."""
        experts = self.num_experts
        k = int(value)
        if k != float(value) or not 1 <= k <= experts:
            raise ValueError(f"k must be an integer in [1, {experts}], got {value}")
        self.knob = k
        for layer in self.moe_layers:
            layer.k = k

    def set_grouped_experts(self, grouped: bool) -> None:
        """Run the experts grouped (one ``bmm`` per layer, the default) or, with ``False``, one by one in a
        loop (ccbench before issue 18; ``ccbench bench`` times both)."""
        for layer in self.moe_layers:
            expert_bank(layer).grouped = grouped and expert_bank(layer).grouped

    def expert_row_macs(self) -> int:
        """MACs of one expert on one row (all experts of a layer have the same shape)."""
        return sum(m.in_features * m.out_features for m in self.moe_layers[0].experts[0].modules()
                   if isinstance(m, nn.Linear))

    def routing_macs_per_token(self) -> int:  # pragma: no cover - per method
        """Router (or slot logits, dispatch and combine) MACs per token of a MoE layer."""
        raise NotImplementedError

    def cost_units(self) -> dict[str, int]:
        """Per token at a MoE layer (norm2), per token routed, per row an expert processes."""
        return {"moe_token": 5 * self.config.embed_dim, "router_token": self.routing_macs_per_token(),
                "expert_row": self.expert_row_macs()}

    def active_params_per_token(self, trace: Trace) -> float:
        """Parameters a token actually uses, measured from the trace: everything outside the experts,
        plus, per MoE layer, one expert's parameters times the mean number of experts that processed
        each token (all of them for Soft MoE)."""
        per_expert = [sum(p.numel() for p in layer.experts[0].parameters()) for layer in self.moe_layers]
        all_experts = sum(sum(p.numel() for p in layer.experts.parameters()) for layer in self.moe_layers)
        shared = sum(p.numel() for p in self.parameters()) - all_experts
        ids = trace["expert_ids"]                                  # [S, L, N, K]
        is_token = ~(ids == PAD_TOKEN).all(-1)                     # [S, L, N]: padding positions are no tokens
        used = ((ids >= 0).sum(-1) * is_token).sum((0, 2)).double() / is_token.sum((0, 2)).clamp_min(1)
        if self.soft_routing:
            used = torch.full_like(used, self.num_experts)
        return float(shared + sum(c * u for c, u in zip(per_expert, used.tolist())))

    def extra_metrics(self, trace: Trace, labels: torch.Tensor, predictions=None, batches=None) -> dict:
        """Routing statistics (``ccbench.measurement.routing``) and measured active parameters per token."""
        from ccbench.measurement.routing import routing_metrics

        requested = trace["expert_requested"].cpu().numpy() if "expert_requested" in trace else None
        return {"routing": routing_metrics(trace["expert_ids"].cpu().numpy(), labels.cpu().numpy(),
                                           self.num_experts, soft=self.soft_routing, requested=requested,
                                           position_buckets="log2" if self.is_text else "token"),
                "active_params_per_token": round(self.active_params_per_token(trace)),
                "params_total": sum(p.numel() for p in self.parameters())}

    def forward(self, inputs: torch.Tensor) -> MethodOutput:
        """The backbone with MoE MLPs; the trace collects every layer's routing."""
        logits = self.backbone(inputs)
        depth = self.config.depth
        n = self.backbone.input_tokens(inputs)                                  # [B]
        routes = [layer.routing for layer in self.moe_layers]
        ids = torch.stack([r.expert_ids for r in routes], 1)                    # [B or 1, L, N or T, K]
        weights = torch.stack([r.weights for r in routes], 1)
        requested = (torch.stack([r.requested_ids for r in routes], 1)
                     if all(r.requested_ids is not None for r in routes) else None)
        rows = torch.stack([r.expert_rows for r in routes], 1).sum(1)
        if self.is_text:   # text: the MoE saw the batch's real tokens as one row set
            real = inputs[:, 1].bool()                                          # [B, L]
            ids, weights = _at_positions(ids, real, PAD_TOKEN), _at_positions(weights, real, 0.0)
            requested = None if requested is None else _at_positions(requested, real, PAD_TOKEN)
            rows = (ids >= 0).sum((1, 2, 3))  # every pick is one expert row (token-choice layers)
        moe = torch.tensor([i in self.moe_blocks for i in range(depth)], device=n.device)
        tokens = n[:, None].expand(-1, depth)
        trace = Trace({
            "tokens_per_block": tokens.clone(),
            "mlp_tokens_per_block": torch.where(moe[None], 0, tokens),
            "expert_ids": ids,
            "expert_weights": weights,
            **({"expert_requested": requested} if requested is not None else {}),
            "units/moe_token": n * len(routes),
            "units/router_token": n * sum(r.routed for r in routes),
            "units/expert_row": rows,
            **input_fields(self.backbone, inputs, tokens),
        })
        b = trace.batch_size
        padding = sum(r.padding_rows for r in routes)
        trace = Trace({**trace, "padding/expert_row": torch.full((b,), padding / b, dtype=torch.float64,
                                                                 device=n.device)})
        aux = sum((r.aux_loss for r in routes), logits.new_zeros(()))
        return MethodOutput(logits, aux, trace)
