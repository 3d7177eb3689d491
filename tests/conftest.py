"""Shared fixtures: a tiny Imagenette-shaped image folder written by the test, an isolated cache,
and tiny backbones."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

IMAGENETTE_WNIDS = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
                    "n03394916", "n03417042", "n03425413", "n03445777", "n03888257"]


def write_tiny_imagenette(root: Path, train_per_class: int = 4, val_per_class: int = 2, px: int = 40) -> Path:
    """Write ``root/imagenette/{train,val}/<wnid>/*.JPEG``: each class a distinct colour plus noise,
    so a model can learn something. Returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for c, wnid in enumerate(IMAGENETTE_WNIDS):
            folder = root / "imagenette" / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            colour = np.array([(c * 53) % 256, (c * 101) % 256, (c * 197) % 256])
            for i in range(n):
                img = np.clip(colour + rng.normal(0, 30, (px, px, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{wnid}_{split}_{i}.JPEG")
    return root


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """Point the ccbench cache at a fresh folder and clear CCBENCH_DATA."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CCBENCH_CACHE", str(cache))
    monkeypatch.delenv("CCBENCH_DATA", raising=False)
    return cache


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return write_tiny_imagenette(tmp_path_factory.mktemp("data"))


@pytest.fixture
def tiny_config():
    from ccbench.core.backbones import ViTConfig

    return ViTConfig(img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2, num_classes=5)


@pytest.fixture
def tiny_backbone(tiny_config):
    from ccbench.core.backbones import ViTBackbone

    torch.manual_seed(0)
    return ViTBackbone(tiny_config).eval()


def real_data_root() -> Path | None:
    value = os.environ.get("CCBENCH_DATA")
    if value and (Path(value) / "imagenette" / "train").is_dir():
        return Path(value)
    return None


def assert_drawn(path: Path, min_colours: int = 20) -> None:
    """``path`` is a PNG that decodes to an image with at least ``min_colours`` distinct colours (a
    drawn figure, not an empty canvas or a truncated file)."""
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) >= min_colours
