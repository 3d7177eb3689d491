"""Real Imagenette from $CCBENCH_DATA (skipped without it; CI provides it)."""
import math

import pytest
import torch
from conftest import IMAGENETTE_WNIDS, real_data_root

pytestmark = [pytest.mark.realdata,
              pytest.mark.skipif(real_data_root() is None, reason="needs CCBENCH_DATA with imagenette/")]


def test_imagenette_splits_counts_and_calibration(tmp_path, monkeypatch):
    from ccbench.common import catalog
    from ccbench.data.image_data import cache_root, task_splits

    monkeypatch.setenv("CCBENCH_CACHE", str(tmp_path))
    task = catalog.tasks().get("imagenette")
    splits = task_splits(task, 24, str(real_data_root()))
    assert splits["train"].classes == IMAGENETTE_WNIDS and IMAGENETTE_WNIDS[-1] == "n03888257"
    assert len(splits["train"]) + len(splits["calibration"]) == 9469
    assert len(splits["eval"]) == 3925
    assert splits["eval"].images.shape[1:] == (3, 24, 24) and splits["eval"].images.dtype == torch.uint8
    assert not set(splits["train"].ids) & set(splits["calibration"].ids)
    assert all(i.startswith("val/") for i in splits["eval"].ids)
    full_counts = torch.bincount(torch.cat([splits["train"].labels, splits["calibration"].labels]))
    calib_counts = torch.bincount(splits["calibration"].labels)
    assert calib_counts.tolist() == [math.ceil(0.05 * n) for n in full_counts.tolist()]
    assert torch.bincount(splits["eval"].labels).tolist() == [387, 395, 357, 386, 409, 394, 389, 419, 399, 390]
    # decoded once: the cache now holds both splits and a second load reads them back identically
    assert len(list((cache_root() / "images").glob("*-24px.safetensors"))) == 2
    again = task_splits(task, 24, str(real_data_root()))
    assert again["calibration"].ids == splits["calibration"].ids
    assert torch.equal(again["eval"].images, splits["eval"].images)
