"""Batched image transforms on uint8 caches: normalisation and random-resized-crop + flip.

The crop is one ``affine_grid``/``grid_sample`` call for the whole batch (bilinear), so augmenting
costs far less than a forward pass and needs no per-image Python loop.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float32 normalised with ImageNet mean/std."""
    x = images.float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def resize(images: torch.Tensor, out_px: int) -> torch.Tensor:
    """Float ``[B, 3, H, W]`` -> ``[B, 3, out_px, out_px]`` (bilinear, antialiased; identity when
    the size already matches)."""
    if images.shape[-1] == out_px and images.shape[-2] == out_px:
        return images
    return F.interpolate(images, size=(out_px, out_px), mode="bilinear", antialias=True,
                         align_corners=False)


def sample_crops(b: int, scale: tuple[float, float], flip: bool, generator: torch.Generator) -> torch.Tensor:
    """``b`` random-resized-crop boxes as affine parameters ``float32 [b, 2, 3]`` (for
    :func:`apply_crops`): per image an area fraction in ``scale``, an aspect ratio in [3/4, 4/3]
    (log-uniform), a position, and a mirror with probability 1/2 when ``flip``. Random numbers come
    from ``generator`` (CPU), so a crop is reproducible from its seed and can be stored."""
    area = torch.empty(b).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(b).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator)
    ratio = torch.exp(log_r)
    w = torch.sqrt(area * ratio).clamp(max=1.0)  # fraction of the width
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (torch.rand(b, generator=generator) * (1 - w) + w / 2) * 2 - 1  # centre in [-1, 1]
    cy = (torch.rand(b, generator=generator) * (1 - h) + h / 2) * 2 - 1
    sign = torch.ones(b)
    if flip:
        sign = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    return theta


def apply_crops(images: torch.Tensor, theta: torch.Tensor, out_px: int) -> torch.Tensor:
    """Float ``[B, 3, H, W]`` -> ``[B, 3, out_px, out_px]``: each image's crop box ``theta[i]``
    (:func:`sample_crops`) resampled bilinearly, whatever the source resolution."""
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, [images.shape[0], 3, out_px, out_px], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def random_resized_crop(images: torch.Tensor, out_px: int, scale: tuple[float, float],
                        flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Float ``[B, 3, H, W]`` -> ``[B, 3, out_px, out_px]``: a random-resized crop per image
    (:func:`sample_crops`), resized to ``out_px``. Random numbers come from ``generator`` (CPU) so
    runs repeat."""
    return apply_crops(images, sample_crops(images.shape[0], scale, flip, generator), out_px)
