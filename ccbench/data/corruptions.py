"""ImageNet-C-style corruptions (Hendrycks & Dietterich, ICLR 2019), implemented from the published
definitions and severity tables (the maintained package ``imagecorruptions`` needs OpenCV and
scikit-image, and imports ``pkg_resources`` and ``scipy.ndimage.interpolation``, which current
setuptools/scipy no longer ship, so it is not used).

Every function maps ``uint8 [H, W, 3]`` (numpy, RGB) to ``uint8 [H, W, 3]`` at ``severity`` 1..5 with
randomness drawn only from the ``numpy.random.Generator`` it is given, so a corrupted image is a
function of (image, corruption, severity, seed). The constants are ImageNet-C's for 224 px images.
"""
from __future__ import annotations

import hashlib
import io

import numpy as np
import torch
import torch.nn.functional as F

SEVERITIES = (1, 2, 3, 4, 5)


def _check(severity: int) -> int:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    return severity


def gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive N(0, c^2) noise on [0, 1] pixels, c = .08 .. .38."""
    c = [0.08, 0.12, 0.18, 0.26, 0.38][_check(severity) - 1]
    y = x / 255.0 + rng.normal(size=x.shape, scale=c)
    return (np.clip(y, 0, 1) * 255).round().astype(np.uint8)


def _disk(radius: float, alias_blur: float) -> torch.Tensor:
    """ImageNet-C's defocus kernel: a normalised disk of ``radius`` px, slightly Gaussian-blurred
    (sigma ``alias_blur``, 3x3 up to radius 8, else 5x5)."""
    half = max(8, int(radius))
    coords = torch.arange(-half, half + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).double()
    disk /= disk.sum()
    k = 3 if radius <= 8 else 5
    g = torch.exp(-(torch.arange(k, dtype=torch.float64) - k // 2) ** 2 / (2 * alias_blur ** 2))
    g /= g.sum()
    blurred = F.conv2d(F.pad(disk[None, None], (k // 2,) * 4, mode="reflect"), (g[:, None] * g[None, :])[None, None])
    return blurred[0, 0]


def defocus_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Convolution with a disk of radius 3 .. 10 px (reflect borders); no randomness. The convolution
    runs in float32 (float64 took about a second per 224 px image on one core)."""
    radius, alias = [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)][_check(severity) - 1]
    kernel = _disk(radius, alias).float()
    img = torch.from_numpy(x / 255.0).float().permute(2, 0, 1)[:, None]     # [3, 1, H, W]
    p = kernel.shape[-1] // 2
    out = F.conv2d(F.pad(img, (p,) * 4, mode="reflect"), kernel[None, None])[:, 0].permute(1, 2, 0)
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def contrast(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Pixels pulled towards the per-channel mean by a factor c = .4 .. .05."""
    c = [0.4, 0.3, 0.2, 0.1, 0.05][_check(severity) - 1]
    y = x / 255.0
    means = y.mean(axis=(0, 1), keepdims=True)
    return (np.clip((y - means) * c + means, 0, 1) * 255).round().astype(np.uint8)


def jpeg_compression(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Re-encoded as JPEG at quality 25 .. 7 (PIL)."""
    from PIL import Image

    quality = [25, 18, 15, 10, 7][_check(severity) - 1]
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB")).copy()


def plasma_fractal(rng: np.random.Generator, mapsize: int = 256, wibbledecay: float = 3.0) -> np.ndarray:
    """Diamond-square height map ``[mapsize, mapsize]`` in [0, 1] (ImageNet-C's fog texture)."""
    maparray = np.zeros((mapsize, mapsize), dtype=np.float64)
    stepsize = mapsize
    wibble = 100.0

    def wibbled(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    def fill_squares():
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        square = corners + np.roll(corners, shift=-1, axis=0)
        square += np.roll(square, shift=-1, axis=1)
        maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbled(square)

    def fill_diamonds():
        size = maparray.shape[0]
        dr = maparray[stepsize // 2:size:stepsize, stepsize // 2:size:stepsize]
        ul = maparray[0:size:stepsize, 0:size:stepsize]
        ldr = dr + np.roll(dr, 1, axis=0)
        lul = ul + np.roll(ul, -1, axis=1)
        maparray[0:size:stepsize, stepsize // 2:size:stepsize] = wibbled(ldr + lul)
        tdr = dr + np.roll(dr, 1, axis=1)
        tul = ul + np.roll(ul, -1, axis=0)
        maparray[stepsize // 2:size:stepsize, 0:size:stepsize] = wibbled(tdr + tul)

    while stepsize >= 2:
        fill_squares()
        fill_diamonds()
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


def fog(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A plasma-fractal haze of strength c0 added and the range renormalised (ImageNet-C's fog)."""
    c0, decay = [(1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)][_check(severity) - 1]
    h, w = x.shape[:2]
    size = 256
    while size < max(h, w):
        size *= 2
    y = x / 255.0
    max_val = y.max()
    y = y + c0 * plasma_fractal(rng, size, decay)[:h, :w][..., None]
    return (np.clip(y * max_val / (max_val + c0), 0, 1) * 255).round().astype(np.uint8)


CORRUPTIONS = {"gaussian_noise": gaussian_noise, "defocus_blur": defocus_blur, "contrast": contrast,
               "jpeg_compression": jpeg_compression, "fog": fog}


def corruption_seed(image_id: str, corruption: str, seed: int) -> int:
    """The seed of one image's corruption: a hash of its id, the corruption and the run seed. The
    severity is left out on purpose: every severity draws the same random numbers, so a higher
    severity is the same noise pattern, stronger."""
    digest = hashlib.sha256(f"{seed}:{corruption}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def corrupt(image: np.ndarray, corruption: str, severity: int, image_id: str, seed: int = 0) -> np.ndarray:
    """``uint8 [H, W, 3]`` -> the same image under ``corruption`` at ``severity``, deterministic in
    ``(image_id, corruption, severity, seed)``."""
    if corruption not in CORRUPTIONS:
        from ccbench.common.errors import unknown_name_error

        raise unknown_name_error("corruption", corruption, CORRUPTIONS)
    rng = np.random.default_rng(corruption_seed(image_id, corruption, seed))
    return CORRUPTIONS[corruption](image, severity, rng)
