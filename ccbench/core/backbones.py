"""Dense backbones behind one encoder protocol.

A backbone exposes three steps that every method composes in its own way (the text encoder,
``ccbench.core.text_backbone.TextBackbone``, has the same protocol with padding masks):

* ``start(inputs)`` -> ``(tokens [B, N, D], keys)``: tokens with the class token first and positions
  added, and the key mask to pass to every block (always None for images: no padding);
  ``embed(images)`` is the first part alone;
* ``blocks`` -> an ``nn.ModuleList`` of transformer blocks, each ``block(x, keys)``
  mapping ``[B, N, D] -> [B, N, D]`` (timm ``Block``);
* ``classify(cls_state)`` -> logits ``[B, C]`` from the class-token state ``[B, D]``
  (final LayerNorm on that one token, then the linear head).

Only the class token is normalised and classified, so the cost table (``ccbench.measurement.cost``) counts
exactly one final LayerNorm row per sample.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn


@dataclass(frozen=True)
class ViTConfig:
    """Shape of a ViT backbone. ``img_size``/``patch_size`` in pixels; tokens = (img/patch)^2 + 1."""

    img_size: int = 128
    patch_size: int = 16
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    num_classes: int = 10
    in_chans: int = 3

    @property
    def num_patches(self) -> int:
        """Patch tokens: ``(img_size / patch_size) ** 2``."""
        return (self.img_size // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        """Patch tokens plus the class token."""
        return self.num_patches + 1

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of each block's MLP."""
        return int(self.embed_dim * self.mlp_ratio)

    def to_dict(self) -> dict:
        """Plain dict of the fields (for records and checkpoints)."""
        return asdict(self)


class ViTBackbone(nn.Module):
    """A timm ``VisionTransformer`` used step by step (see module docstring)."""

    def __init__(self, config: ViTConfig, drop_path_rate: float = 0.0):
        super().__init__()
        self.config = config
        self.vit = VisionTransformer(
            img_size=config.img_size,
            patch_size=config.patch_size,
            in_chans=config.in_chans,
            num_classes=config.num_classes,
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            global_pool="token",
            drop_path_rate=drop_path_rate,
        )
        self.vit.patch_embed.strict_img_size = False  # other sizes resample positions in embed()

    @property
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks, in order."""
        return self.vit.blocks

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` normalised images -> tokens ``[B, 1 + P, D]``.

        At the configured size this is timm's own path; another size (progressive-resolution
        training) bicubically resamples the position embeddings to its grid."""
        x = self.vit.patch_embed(images)
        if x.shape[1] == self.config.num_patches:
            return self.vit._pos_embed(x)
        from timm.layers import resample_abs_pos_embed

        grid = images.shape[-1] // self.config.patch_size
        pos = resample_abs_pos_embed(self.vit.pos_embed, new_size=[grid, grid], num_prefix_tokens=1)
        cls = self.vit.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + pos

    def start(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        """``[B, 3, H, W]`` -> ``(tokens [B, 1 + P, D], None)``: images have no padding to mask."""
        return self.embed(images), None

    def input_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Tokens per sample a dense pass processes (class token + patches), long ``[B]``."""
        grid = images.shape[-1] // self.config.patch_size
        return torch.full((images.shape[0],), grid * grid + 1, dtype=torch.long, device=images.device)

    def classify(self, cls_state: torch.Tensor) -> torch.Tensor:
        """Class-token state ``[B, D]`` -> logits ``[B, C]``."""
        return self.vit.head(self.vit.norm(cls_state))

    def keep_blocks(self, k: int) -> None:
        """Truncate to the first ``k`` blocks (the rest are removed from the model); ``ValueError``
        unless ``1 <= k <=`` the current depth."""
        if not 1 <= k <= len(self.blocks):
            raise ValueError(f"blocks must be between 1 and the backbone's {len(self.blocks)} blocks, got {k}")
        self.vit.blocks = nn.Sequential(*list(self.blocks)[:k])

    def make_exit_head(self) -> nn.Module:
        """A copy of the final norm and classifier, for an intermediate exit."""
        import copy

        return nn.Sequential(copy.deepcopy(self.vit.norm), copy.deepcopy(self.vit.head))

    def exit_readout(self, x: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        """What an intermediate exit head reads from tokens ``x [B, N, D]``: the class token, ``[B, D]``
        (``keys`` is unused: images have no padding)."""
        return x[:, 0]

    def head_macs(self) -> int:
        """MACs of the final LayerNorm (5 per element) and classifier on one class token."""
        return 5 * self.config.embed_dim + self.config.embed_dim * self.config.num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Plain dense forward: images ``[B, 3, H, W]`` -> logits ``[B, C]``."""
        x = self.embed(images)
        for block in self.blocks:
            x = block(x)
        return self.classify(x[:, 0])

    def set_drop_path(self, rate: float) -> None:
        """Set stochastic depth linearly from 0 to ``rate`` over the blocks (training only)."""
        from timm.layers import DropPath

        n = len(self.blocks)
        for i, block in enumerate(self.blocks):
            r = rate * i / max(n - 1, 1)
            block.drop_path1 = DropPath(r) if r > 0 else nn.Identity()
            block.drop_path2 = DropPath(r) if r > 0 else nn.Identity()


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (all, trainable or not)."""
    return sum(p.numel() for p in module.parameters())
