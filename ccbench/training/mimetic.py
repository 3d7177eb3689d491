"""Mimetic initialisation of self-attention (Trockman & Kolter 2023, "Mimetic Initialization of
Self-Attention Layers"): a ViT trained from scratch on little data learns faster when its attention
starts out resembling a pretrained one's, where each head's query-key product is close to a scaled
identity (tokens attend to similar tokens) and the value-output product close to a negative identity.

Per head ``h`` (head width ``k`` of model width ``d``): ``W_q,h^T W_k,h`` is the best rank-``k``
approximation of ``a1 * Z + b1 * I``; over all heads ``W_v^T W_o^T = a2 * Z' - b2 * I``, with
``Z, Z'`` of i.i.d. ``N(0, 1/d)`` entries. The paper's ViT values are ``a1 = b1 = 0.7`` and
``a2 = b2 = 0.4``. Only initial weights change; the architecture and its cost do not.
"""
from __future__ import annotations

import torch
from torch import nn


def factor_pair(target: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)``, each ``[rank, d]``, with ``A^T B`` the best rank-``rank`` approximation of the
    square ``target [d, d]`` (from its SVD).

    >>> m = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> a, b = factor_pair(m, 2)
    >>> torch.allclose(a.T @ b, m)
    True
    """
    u, s, vh = torch.linalg.svd(target)
    root = s[:rank].sqrt()
    return root[:, None] * u[:, :rank].T, root[:, None] * vh[:rank]


@torch.no_grad()
def mimetic_attention_(attn: nn.Module, num_heads: int, generator: torch.Generator,
                       qk: tuple[float, float] = (0.7, 0.7), vo: tuple[float, float] = (0.4, 0.4)) -> None:
    """Re-initialise a timm ``Attention`` in place (its fused ``qkv`` ``[3d, d]`` and ``proj``
    ``[d, d]`` weights; biases are zeroed) mimetically; random numbers come from ``generator``."""
    d = attn.proj.weight.shape[0]
    k = d // num_heads
    q_rows, k_rows = [], []
    for _ in range(num_heads):
        z = torch.randn(d, d, generator=generator) / d ** 0.5
        a, b = factor_pair(qk[0] * z + qk[1] * torch.eye(d), k)
        q_rows.append(a)
        k_rows.append(b)
    z = torch.randn(d, d, generator=generator) / d ** 0.5
    v, o = factor_pair(vo[0] * z - vo[1] * torch.eye(d), d)       # v^T o = W_v^T W_o^T
    attn.qkv.weight.copy_(torch.cat([torch.cat(q_rows), torch.cat(k_rows), v]))
    attn.proj.weight.copy_(o.T)
    if attn.qkv.bias is not None:
        attn.qkv.bias.zero_()
    attn.proj.bias.zero_()


def mimetic_init_(blocks: nn.ModuleList | nn.Sequential, num_heads: int, seed: int) -> None:
    """Mimetic initialisation of every block's attention (timm ViT blocks), seeded by ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    for block in blocks:
        mimetic_attention_(block.attn, num_heads, gen)
