"""No calibration or evaluation example ever lands in a training split: synthetic data, no real
data needed (the real-data check is ``test_realdata.py``)."""
import math
from collections import Counter

import pytest
from conftest import write_tiny_imagenette

from ccbench.common import catalog


@pytest.fixture(scope="module")
def leak_data(tmp_path_factory):
    return write_tiny_imagenette(tmp_path_factory.mktemp("leak"), train_per_class=21, val_per_class=3, px=16)


def _check_disjoint_and_covering(splits, fraction: float, source_ids: list[str]) -> None:
    train, calib, ev = (splits[k] for k in ("train", "calibration", "eval"))
    train_ids, calib_ids, eval_ids = set(train.ids), set(calib.ids), set(ev.ids)
    assert len(train_ids) == len(train.ids) and len(calib_ids) == len(calib.ids)    # no example twice
    assert not train_ids & calib_ids, "calibration examples in the training split"
    assert not train_ids & eval_ids, "evaluation examples in the training split"
    assert not calib_ids & eval_ids
    assert train_ids | calib_ids == set(source_ids)                               # nothing else lost
    per_class = Counter(train.labels.tolist()) + Counter(calib.labels.tolist())
    assert Counter(calib.labels.tolist()) == {c: math.ceil(fraction * n) for c, n in per_class.items()}


@pytest.mark.parametrize("name", ["imagenette", "imagenette-a", "imagenette-b"])
def test_image_task_splits_never_share_an_example(name, leak_data, isolated_cache):
    from ccbench.data.image_data import load_image_split, task_splits

    task = catalog.tasks().get(name)
    splits = task_splits(task, 16, str(leak_data))
    source = load_image_split(task, task.calibration.source, 16, str(leak_data))
    _check_disjoint_and_covering(splits, task.calibration.fraction, source.ids)
    assert all(i.startswith("val/") for i in splits["eval"].ids)
    assert not any(i.startswith("val/") for i in splits["train"].ids + splits["calibration"].ids)
    # 21 images a class at 5 %: two calibration images per class, the other 19 train
    assert len(splits["calibration"]) == 2 * len(task.classes) and len(splits["train"]) == 19 * len(task.classes)


def test_calibration_slice_does_not_depend_on_file_order(leak_data, isolated_cache):
    import torch

    from ccbench.data.image_data import calibration_mask

    task = catalog.tasks().get("imagenette")
    ids = [f"train/c{i % 3}/{i}.JPEG" for i in range(60)]
    labels = torch.tensor([i % 3 for i in range(60)])
    mask = calibration_mask(ids, labels, task.calibration)
    order = torch.randperm(60, generator=torch.Generator().manual_seed(0))
    shuffled = calibration_mask([ids[i] for i in order], labels[order], task.calibration)
    assert {ids[i] for i in mask.nonzero().flatten().tolist()} == \
           {ids[order[i]] for i in shuffled.nonzero().flatten().tolist()}


@pytest.mark.parametrize("name", ["sst2", "cola"])
def test_text_task_splits_never_share_an_example(name, tmp_path):
    from ccbench.data.text_data import load_text_split, text_task_splits

    task = catalog.tasks().get(name)
    folder = tmp_path / "glue" / {"sst2": "SST-2", "cola": "CoLA"}[name]
    folder.mkdir(parents=True)
    if name == "sst2":
        rows = "".join(f"sentence number {i}\t{int(i % 3 == 0)}\n" for i in range(90))
        (folder / "train.tsv").write_text("sentence\tlabel\n" + rows)
        (folder / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"dev {i}\t{i % 2}\n" for i in range(7)))
    else:  # CoLA: no header, source / label / original label / sentence
        rows = "".join(f"src\t{int(i % 3 == 0)}\t\tsentence number {i}\n" for i in range(90))
        (folder / "train.tsv").write_text(rows)
        (folder / "dev.tsv").write_text("".join(f"src\t{i % 2}\t\tdev {i}\n" for i in range(7)))
    splits = text_task_splits(task, str(tmp_path))
    source = load_text_split(task, task.calibration.source, str(tmp_path)).ids
    assert len(source) == 90
    _check_disjoint_and_covering(splits, task.calibration.fraction, source)
    assert len(splits["eval"]) == 7
