"""Mimetic attention initialisation: the products it promises, exactly where the rank allows."""
from __future__ import annotations

import pytest
import torch

from ccbench.common.specs import BudgetSpec
from ccbench.core.backbones import ViTBackbone, ViTConfig
from ccbench.training.mimetic import mimetic_init_


def test_heads_start_near_identity_attention_and_negative_identity_value_output():
    config = ViTConfig(img_size=32, patch_size=16, embed_dim=24, depth=2, num_heads=3, mlp_ratio=2.0,
                       num_classes=4)
    model = ViTBackbone(config)
    mimetic_init_(model.blocks, config.num_heads, seed=0)
    d, k = 24, 8
    attn = model.blocks[0].attn
    q, kk, v = attn.qkv.weight.split(d)
    diag = []
    for h in range(3):
        qk = q[h * k:(h + 1) * k].T @ kk[h * k:(h + 1) * k]          # a head's query-key product [d, d]
        diag.append(torch.diagonal(qk).mean().item())
    assert all(d_ > 0.2 for d_ in diag)                               # identity-dominated, not random
    vo = v.T @ attn.proj.weight.T                                      # full rank: exactly a2 Z - b2 I
    assert torch.diagonal(vo).mean() < -0.2
    assert torch.count_nonzero(attn.qkv.bias) == 0
    again = ViTBackbone(config)
    mimetic_init_(again.blocks, config.num_heads, seed=0)
    assert torch.equal(again.blocks[1].attn.qkv.weight, model.blocks[1].attn.qkv.weight)   # seeded


def test_unknown_backbone_init_is_refused():
    from ccbench.common import catalog

    smoke = catalog.budgets().get("smoke").model_dump()
    with pytest.raises(Exception, match="backbone_init"):
        BudgetSpec.model_validate({**smoke, "backbone_init": "mimetc"})
    assert BudgetSpec.model_validate({**smoke, "backbone_init": "mimetic"}).backbone_init == "mimetic"
