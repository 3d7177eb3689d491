"""Compute accounting in MACs (one multiply-add = 1 MAC, fvcore's unit; FLOPs = 2 x MACs).

*Useful* MACs of a sample come from its trace and a per-component table derived from the backbone
config, using fvcore's conventions so that a dense trace gives exactly fvcore's count:

* linear / conv: ``in_features * out_features`` per row (bias not counted);
* attention: ``2 * n^2 * D`` per block with ``n`` tokens (scores and weighted values);
* LayerNorm: 5 per element;
* element-wise ops (GELU, residual adds, softmax, sigmoid halting scores): 0.

*Executed* MACs are measured by fvcore on the graph that actually ran, with a handle for
``aten::scaled_dot_product_attention`` (which fvcore otherwise counts as 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

import torch
from torch import nn

from ccbench.core.backbones import ViTConfig
from ccbench.core.trace import (
    PADDING_EMBEDDED,
    PADDING_MLP_TOKENS,
    PADDING_TOKENS,
    UNIT_PREFIX,
    Trace,
    declared_padding_macs,
)

LAYERNORM_MACS_PER_ELEMENT = 5


@dataclass(frozen=True)
class CostTable:
    """Per-component MACs of a transformer encoder (see module docstring for conventions), plus the
    MACs of one unit of each method-specific component (``units``: predictor rows, matched pairs, exit
    heads, routers, experts...), which a method declares in ``cost_units()``.

    ``num_tokens`` is the dense token count (images: class token + patches; text: the task's maximum
    length, but a text sample's dense cost uses its own length, trace field ``input_tokens``);
    ``embed_per_token`` the MACs of embedding one input token (patch projection; text: embedding
    LayerNorm) and ``prefix_tokens`` the tokens that are not embedded from the input (the class token).

    >>> t = CostTable.from_config(ViTConfig(img_size=224, patch_size=16, embed_dim=192, depth=12,
    ...                                     num_heads=3, num_classes=1000))
    >>> round(t.dense_macs() / 1e9, 4)   # deit_tiny_patch16_224, fvcore: 1.26 GMACs
    1.2582
    """

    embed_dim: int
    mlp_hidden: int
    depth: int
    num_tokens: int
    embed_per_token: int
    prefix_tokens: int
    head: int          # final classifier (with its norm, if any) on the class token, per sample
    units: Mapping[str, int] = field(default_factory=dict)

    @staticmethod
    def from_config(cfg: ViTConfig, units: Mapping[str, int] | None = None) -> "CostTable":
        """The table of a ViT configuration, with a method's ``units`` (MACs per unit) if given."""
        d = cfg.embed_dim
        head = LAYERNORM_MACS_PER_ELEMENT * d + d * cfg.num_classes
        return CostTable(d, cfg.mlp_hidden, cfg.depth, cfg.num_tokens, d * cfg.in_chans * cfg.patch_size ** 2,
                         1, head, dict(units or {}))

    @staticmethod
    def from_text_config(cfg, units: Mapping[str, int] | None = None) -> "CostTable":
        """The table of a post-LayerNorm BERT encoder (``ccbench.core.text_backbone.TextConfig``): embedding
        lookups are free, the embedding LayerNorm costs 5 per element, the classifier reads ``[CLS]``."""
        d = cfg.embed_dim
        return CostTable(d, cfg.mlp_hidden, cfg.depth, cfg.max_length, LAYERNORM_MACS_PER_ELEMENT * d, 0,
                         d * cfg.num_classes, dict(units or {}))

    def with_units(self, units: Mapping[str, int]) -> "CostTable":
        """The same table with method-specific component costs (MACs per unit)."""
        return replace(self, units={**self.units, **units})

    @property
    def num_patches(self) -> int:
        """Input tokens embedded in a dense pass (tokens minus the class token)."""
        return self.num_tokens - self.prefix_tokens

    @property
    def patch_embed(self) -> int:
        """MACs of embedding a dense pass's input tokens."""
        return self.embed_per_token * self.num_patches

    def block_components(self, n: torch.Tensor | int) -> dict[str, torch.Tensor | int]:
        """MACs of each component of one block on ``n`` tokens (elementwise over a tensor of counts):
        ``attention_norm`` / ``mlp_norm`` (a LayerNorm each), ``qkv`` (q, k, v projections), ``attention``
        (scores + weighted values), ``output_projection``, ``mlp`` (fc1 + fc2). Pre- (ViT) and post-norm
        (BERT) alike."""
        d = self.embed_dim
        return {"attention_norm": n * LAYERNORM_MACS_PER_ELEMENT * d, "qkv": n * 3 * d * d,
                "attention": 2 * n * n * d, "output_projection": n * d * d,
                "mlp_norm": n * LAYERNORM_MACS_PER_ELEMENT * d, "mlp": n * 2 * d * self.mlp_hidden}

    def attention_part(self, n: torch.Tensor | int) -> torch.Tensor | int:
        """MACs of a block's attention half on ``n`` tokens: one LayerNorm, q/k/v and output
        projections, and attention (scores + weighted values)."""
        c = self.block_components(n)
        return c["attention_norm"] + c["qkv"] + c["attention"] + c["output_projection"]

    def mlp_part(self, n: torch.Tensor | int) -> torch.Tensor | int:
        """MACs of a block's MLP half (one LayerNorm, fc1, fc2) on ``n`` tokens."""
        c = self.block_components(n)
        return c["mlp_norm"] + c["mlp"]

    def block(self, n: torch.Tensor | int) -> torch.Tensor | int:
        """MACs of one transformer block on ``n`` tokens (elementwise over a tensor of counts)."""
        return self.attention_part(n) + self.mlp_part(n)

    def dense_macs(self, n: torch.Tensor | int | None = None) -> torch.Tensor | int:
        """MACs of one sample of ``n`` tokens (default ``num_tokens``) through every block on every
        token (elementwise over a tensor of counts)."""
        n = self.num_tokens if n is None else n
        return self.embed_per_token * (n - self.prefix_tokens) + self.depth * self.block(n) + self.head


def dense_macs_per_sample(table: CostTable, trace: Trace) -> torch.Tensor:
    """What the dense model spends on each traced sample, float64 ``[B]``: its own length for text
    (trace field ``input_tokens``), the table's dense count otherwise."""
    if "input_tokens" in trace:
        return table.dense_macs(trace["input_tokens"].to(torch.float64))
    return torch.full((trace.batch_size,), float(table.dense_macs()), dtype=torch.float64)


def useful_macs(table: CostTable, trace: Trace) -> torch.Tensor:
    """Useful MACs per sample, float64 ``[B]``, from the trace fields (``ccbench.core.trace``):
    embedding of the ``patches`` embedded (else the ``input_tokens``, else a dense pass's) + every
    block's attention part on ``tokens_per_block`` and MLP part on ``mlp_tokens_per_block`` (0 tokens
    = skipped) + the final classifier when it ran (``final_head_runs``) + each ``units/<name>`` count
    times its unit cost.

    >>> t = CostTable.from_config(ViTConfig(img_size=16, patch_size=8, embed_dim=4, depth=2,
    ...                           num_heads=1, num_classes=3), units={"exit_head": 17})
    >>> tr = Trace({"tokens_per_block": torch.tensor([[5, 0]]), "final_head_runs": torch.tensor([0]),
    ...             "units/exit_head": torch.tensor([1])})   # left after block 0 through its exit head
    >>> int(useful_macs(t, tr)) == t.patch_embed + t.block(5) + 17
    True
    """
    n = trace["tokens_per_block"].to(torch.float64)
    m = trace["mlp_tokens_per_block"].to(torch.float64) if "mlp_tokens_per_block" in trace else n
    total = table.attention_part(n).sum(1) + table.mlp_part(m).sum(1)
    if "patches" in trace:
        total = total + table.embed_per_token * trace["patches"].to(torch.float64)
    elif "input_tokens" in trace:
        total = total + table.embed_per_token * (trace["input_tokens"].to(torch.float64) - table.prefix_tokens)
    else:
        total = total + table.patch_embed
    runs = trace["final_head_runs"].to(torch.float64) if "final_head_runs" in trace else 1.0
    total = total + table.head * runs
    for key in trace:
        if key.startswith(UNIT_PREFIX):
            name = key[len(UNIT_PREFIX):]
            if name not in table.units:
                raise KeyError(f"trace counts unit {name!r} but the cost table has no cost for it "
                               f"(known: {sorted(table.units)}); declare it in the method's cost_units()")
            total = total + table.units[name] * trace[key].to(torch.float64)
    return total


def padding_macs(table: CostTable, trace: Trace) -> torch.Tensor:
    """MACs each sample's row executed on padding, float64 ``[B]``: the declared unit counts
    (:func:`ccbench.core.trace.declared_padding_macs`) plus token padding: a block that ran a row of
    ``n + p`` slots for a sample with ``n`` useful tokens (``tokens_per_block`` / ``mlp_tokens_per_block``
    and ``padding/tokens_per_block``) executed ``block(n + p) - block(n)`` (attention grows with the
    square; the MLP half on ``padding/mlp_tokens_per_block`` of the ``p`` slots where declared), and
    ``padding/embedded_tokens`` positions were embedded. Executed MACs = useful + this.

    >>> t = CostTable.from_config(ViTConfig(img_size=16, patch_size=8, embed_dim=4, depth=2, num_heads=1, num_classes=3))
    >>> tr = Trace({"tokens_per_block": torch.tensor([[5, 3]]), "padding/tokens_per_block": torch.tensor([[0, 2]])})
    >>> int(padding_macs(t, tr)) == t.block(5) - t.block(3)
    True
    """
    total = declared_padding_macs(trace, table.units)
    if PADDING_TOKENS in trace:
        n = trace["tokens_per_block"].to(torch.float64).cpu()
        m = trace["mlp_tokens_per_block"].to(torch.float64).cpu() if "mlp_tokens_per_block" in trace else n
        p = trace[PADDING_TOKENS].to(torch.float64).cpu()
        total = total + (table.attention_part(n + p) - table.attention_part(n)).sum(1)
        p_mlp = trace[PADDING_MLP_TOKENS].to(torch.float64).cpu() if PADDING_MLP_TOKENS in trace else p
        mlp = table.mlp_part(m + p_mlp) - table.mlp_part(m)
        total = total + torch.where(m > 0, mlp, torch.zeros_like(mlp)).sum(1)  # 0: no MLP ran (experts, skipped)
    if PADDING_EMBEDDED in trace:
        total = total + table.embed_per_token * trace[PADDING_EMBEDDED].to(torch.float64).cpu()
    return total


# ---------------------------------------------------------------- fvcore audit of executed MACs

def _sdpa_handle(inputs, outputs) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``: ``B*H*Lq*Lk*(d + d_v)`` MACs."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(inputs[i]) for i in range(3))
    batch = 1
    for s in q[:-2]:
        batch *= s
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def _mha_handle(inputs, outputs) -> int:
    """fvcore handle for ``aten::_native_multi_head_attention`` (eval-mode ``nn.MultiheadAttention``
    fast path): projections in, attention, projection out. Inputs: query, key, value, embed_dim,
    num_heads, qkv_weight, qkv_bias, proj_weight, ..."""
    from fvcore.nn.jit_handles import get_shape

    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    e = q[-1]
    b = q[0] if len(q) == 3 else 1
    lq, lk = q[-2], k[-2]
    return b * (lq * e * e + 2 * lk * e * e + 2 * lq * lk * e + lq * e * e)


EXTRA_HANDLES = {
    "aten::scaled_dot_product_attention": _sdpa_handle,
    "aten::_native_multi_head_attention": _mha_handle,
}


class _LogitsOnly(nn.Module):
    """Expose a method model's logits as a plain tensor output for tracing."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs).logits


@dataclass
class AuditResult:
    """Executed MACs of one traced call (whole batch), with what fvcore could not count."""

    macs: int
    unsupported_ops: dict[str, int]
    uncalled_modules: list[str]


def executed_macs(model: nn.Module, images: torch.Tensor) -> AuditResult:
    """Trace ``model(images)`` (a method model returning ``MethodOutput``, or a plain module returning
    a tensor) with fvcore and count MACs of the path that actually ran."""
    import logging
    import warnings

    model.eval()
    target = model if _returns_tensor(model) else _LogitsOnly(model)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        fca = FlopCountAnalysis(target, (images,))
        for op, handle in EXTRA_HANDLES.items():
            fca.set_op_handle(op, handle)
        fca.unsupported_ops_warnings(False)
        fca.uncalled_modules_warnings(False)
        total = int(fca.total())
        unsupported = dict(fca.unsupported_ops())
        uncalled = sorted(fca.uncalled_modules())
    return AuditResult(total, unsupported, uncalled)


def _returns_tensor(model: nn.Module) -> bool:
    from ccbench.core.method import ConditionalModel
    return not isinstance(model, ConditionalModel)
