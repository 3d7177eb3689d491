"""Imagenette halves for transfer (issue 8): disjoint, covering, relabelled, same images."""
import torch

from ccbench.common import catalog
from ccbench.data.image_data import task_splits


def test_halves_are_disjoint_and_cover_all_classes():
    full = catalog.tasks().get("imagenette").classes
    a, b = catalog.tasks().get("imagenette-a").classes, catalog.tasks().get("imagenette-b").classes
    assert not set(a) & set(b) and sorted(a + b) == sorted(full) and len(a) == len(b) == 5


def test_half_keeps_its_classes_relabelled_with_the_parents_images(tiny_data, isolated_cache):
    tasks = catalog.tasks()
    full = task_splits(tasks.get("imagenette"), 16, str(tiny_data))
    for name in ("imagenette-a", "imagenette-b"):
        half = task_splits(tasks.get(name), 16, str(tiny_data))
        for split in ("train", "calibration", "eval"):
            h, f = half[split], full[split]
            assert set(h.labels.tolist()) <= set(range(5)) and h.classes == tasks.get(name).classes
            for i, image_id in enumerate(h.ids):                       # same pixels, mapped label
                j = f.ids.index(image_id)
                assert torch.equal(h.images[i], f.images[j])
                assert h.classes[h.labels[i]] == f.classes[f.labels[j]]
        assert len(half["eval"]) == sum(f.classes[l] in half["eval"].classes for l in full["eval"].labels.tolist())
