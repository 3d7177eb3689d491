"""ImageNet-C-style corruptions: deterministic for a seed, stronger with severity."""
import numpy as np
import pytest

from ccbench.common.errors import UserError
from ccbench.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt


def _photo(seed: int, px: int = 96) -> np.ndarray:
    """A photo-like image: smooth colour fields plus blobs and mild texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:px, 0:px] / px
    img = np.stack([np.sin(3 * xx + seed) * 60 + 120, np.cos(2 * yy - seed) * 50 + 110, (xx + yy) * 70 + 60], -1)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, 1, 2).tolist() + [rng.uniform(0.05, 0.2)]
        img[((yy - cy) ** 2 + (xx - cx) ** 2) < r ** 2] = rng.uniform(20, 235, 3)
    img += rng.normal(0, 6, img.shape)
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def image():
    return _photo(0)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_deterministic_for_a_seed_and_monotone_in_severity(name):
    images = [_photo(i) for i in range(4)]
    mad = []
    for s in SEVERITIES:
        outs = [corrupt(img, name, s, f"val/img{i}", seed=0) for i, img in enumerate(images)]
        for i, out in enumerate(outs):
            assert out.dtype == np.uint8 and out.shape == images[i].shape
            assert np.array_equal(out, corrupt(images[i], name, s, f"val/img{i}", seed=0))
        mad.append(np.mean([np.abs(o.astype(np.float64) - img).mean() for o, img in zip(outs, images)]))
    assert all(a < b for a, b in zip(mad, mad[1:])), mad                  # more severe = further from clean


@pytest.mark.parametrize("name", ["gaussian_noise", "fog"])
def test_random_corruptions_differ_across_images_and_seeds(image, name):
    a = corrupt(image, name, 3, "val/img0", seed=0)
    assert not np.array_equal(a, corrupt(image, name, 3, "val/img1", seed=0))
    assert not np.array_equal(a, corrupt(image, name, 3, "val/img0", seed=1))


def test_unknown_corruption_and_severity_are_refused(image):
    with pytest.raises(UserError, match="did you mean 'fog'"):
        corrupt(image, "fogg", 1, "x")
    with pytest.raises(ValueError, match="severity"):
        corrupt(image, "fog", 6, "x")
