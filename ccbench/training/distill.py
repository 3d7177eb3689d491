"""Knowledge distillation for the tier backbone, FKD-style: the teacher runs once, not per step.

For every training image, ``views`` random-resized crops are drawn from a seeded generator and stored
as boxes; the teacher's ImageNet logits of each crop (at ``teacher_px``) are computed once and cached
(``$CCBENCH_CACHE/teacher/<key>/view-<v>.safetensors``, one file per view, written atomically, so an
interrupted pass keeps its finished views and resumes). The student then trains on the same boxes at
its own resolution, each step drawing one stored view per image, against the teacher's logits
restricted to the task's classes. Full 1,000-class logits are kept, so one pass serves every task
whose classes are ImageNet classes (Imagenette and its halves) and every recipe that shares the views.
Shen & Xing 2022 (FKD) do the same; DeiT's hard-label and soft (KL, temperature) losses are offered.
A recipe may also distil the teacher's intermediate feature map (stored per view, pooled to a small
grid): the student's patch tokens at one block learn to predict it through a linear head that exists
only during pretraining (:func:`feature_loss`), which gives a from-scratch ViT on few images the
locality a CNN has (Li et al. 2022).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ccbench.common.errors import UserError
from ccbench.common.messages import say
from ccbench.common.provenance import content_hash
from ccbench.common.safefile import load_cache, save_tensors
from ccbench.common.specs import DistillSpec, RecipeSpec
from ccbench.data.augment import apply_crops, normalize, sample_crops
from ccbench.data.image_data import ImageSplit, cache_root

from .teacher import Teacher, class_indices, logits_and_features, task_logits
from .train import ImageTrainData, stage_px

SOURCE_PX = 224  # crops are cut from the 224-px decode (the data's own resolution) for teacher and student


@dataclass
class TeacherViews:
    """Stored crops and teacher outputs of one training split: example ``ids`` (row order), crop boxes
    ``theta float32 [V, N, 2, 3]``, ImageNet logits ``logits float16 [V, N, 1000]`` and, when the
    recipe distils features, the teacher's pooled feature maps ``features float16 [V, N, C, g, g]``."""

    ids: list[str]
    theta: torch.Tensor
    logits: torch.Tensor
    key: str
    features: torch.Tensor | None = None

    def rows(self, ids: list[str]) -> torch.Tensor:
        """Row index ``int64 [n]`` of each of ``ids``; ``UserError`` if one has no teacher output."""
        where = {i: r for r, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in where]
        if missing:
            raise UserError(f"{len(missing)} training images (e.g. {missing[0]}) have no teacher output in "
                            f"teacher cache {self.key}; delete that folder to recompute it")
        return torch.tensor([where[i] for i in ids])


def views_key(teacher: Teacher, split: ImageSplit, spec: DistillSpec, features: bool | None = None) -> str:
    """What determines the stored views: teacher weights, the exact images, crop rule and resolution,
    and which feature map is stored (when one is: ``features``, by default when the recipe distils them)."""
    features = spec.feature_weight > 0 if features is None else features
    key = {"teacher": teacher.weights_sha256, "data": split.data_hash, "ids": _ids_sha256(split.ids),
           "teacher_px": spec.teacher_px, "scale": list(spec.scale), "flip": spec.flip,
           "view_seed": spec.view_seed, "source_px": SOURCE_PX}
    if features:
        key["features"] = {"stage": spec.teacher_stage, "grid": spec.feature_grid}
    return content_hash(key)[:16]


def _ids_sha256(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def _read_view(path: Path, ids: list[str], names: tuple[str, ...]) -> dict[str, torch.Tensor] | None:
    """A stored view's tensors ``names`` (theta, logits, features), or ``None`` when it is missing,
    unreadable or of other images (a cache miss: the view is recomputed)."""
    cached = load_cache(path, names)
    if cached is None or cached[1].get("ids_sha256") != _ids_sha256(ids):
        return None
    return cached[0]


def teacher_views(teacher: Teacher, split: ImageSplit, spec: DistillSpec, batch_size: int = 64,
                  progress: bool = True) -> TeacherViews:
    """The teacher's logits (and, when ``spec.feature_weight`` > 0, pooled feature maps) on
    ``spec.views`` stored crops of every image of ``split`` (a 224-px training split), computed view by
    view where missing (resumable) and cached."""
    from tqdm import tqdm

    key = views_key(teacher, split, spec)
    folder = cache_root() / "teacher" / key
    names = ("theta", "logits", "features") if spec.feature_weight > 0 else ("theta", "logits")
    stored_views = []
    for v in range(spec.views):
        path = folder / f"view-{v}.safetensors"
        stored = _read_view(path, split.ids, names)
        if stored is None and spec.feature_weight == 0:
            # the same crops stored with the feature map the spec names hold these logits: reuse them
            richer = cache_root() / "teacher" / views_key(teacher, split, spec, features=True) / path.name
            stored = _read_view(richer, split.ids, names)
        if stored is None:
            gen = torch.Generator().manual_seed(spec.view_seed * 1000 + v)
            stored = {"theta": sample_crops(len(split), tuple(spec.scale), spec.flip, gen)}
            outs: dict[str, list[torch.Tensor]] = {"logits": [], "features": []}
            for start in tqdm(range(0, len(split), batch_size), desc=f"teacher view {v + 1}/{spec.views}",
                              unit="batch", disable=not progress, mininterval=2):
                sl = slice(start, start + batch_size)
                crops = apply_crops(split.images[sl].float().div_(255.0), stored["theta"][sl], spec.teacher_px)
                logits, features = logits_and_features(teacher, crops, spec.teacher_stage)
                outs["logits"].append(logits.half())
                if spec.feature_weight > 0:
                    outs["features"].append(F.adaptive_avg_pool2d(features, spec.feature_grid).half())
            stored.update({name: torch.cat(outs[name]) for name in names[1:]})
            save_tensors(stored, {"ids_sha256": _ids_sha256(split.ids)}, path)
        stored_views.append(stored)
    say(f"teacher outputs: {spec.views} views x {len(split)} images at {spec.teacher_px}px (cache {key})")
    features = torch.stack([s["features"] for s in stored_views]) if "features" in names else None
    return TeacherViews(list(split.ids), torch.stack([s["theta"] for s in stored_views]),
                        torch.stack([s["logits"] for s in stored_views]), key, features)


@dataclass
class DistillTargets:
    """A training batch's targets: the true labels ``[b]``, the teacher's task logits ``[b, C]`` and,
    when features are distilled, its pooled feature maps ``[b, C_f, g, g]``."""

    labels: torch.Tensor
    teacher_logits: torch.Tensor
    teacher_features: torch.Tensor | None = None


class DistillTrainData(ImageTrainData):
    """Training batches for distillation (the :func:`ccbench.training.train.train` data protocol, epochs as
    :class:`ccbench.training.train.ImageTrainData`'s): each image of ``split`` (224 px) is cut to one of its
    stored views, drawn per step, at the step's resolution, normalised as every ccbench input; the
    targets carry the teacher's logits of the same crop."""

    def __init__(self, split: ImageSplit, views: TeacherViews, classes: list[str], recipe: RecipeSpec, img_px: int):
        super().__init__(split, recipe, img_px)
        rows = views.rows(split.ids)
        self.theta = views.theta[:, rows]                                      # [V, N, 2, 3]
        self.logits = views.logits[:, rows][:, :, class_indices(classes)]      # [V, N, C] float16
        self.features = views.features[:, rows] if views.features is not None else None
        self.n_views = self.theta.shape[0]

    def batch(self, idx: torch.Tensor, step: int, total_steps: int, gen: torch.Generator,
              device: str) -> tuple[torch.Tensor, DistillTargets]:
        """Images ``[b, 3, px, px]`` (one stored view each) and their :class:`DistillTargets`."""
        view = torch.randint(self.n_views, (len(idx),), generator=gen)
        px = stage_px(self.recipe, step, total_steps, self.img_px)
        images = apply_crops(normalize(self.split.images[idx].to(device)), self.theta[view, idx], px)
        features = self.features[view, idx].float().to(device) if self.features is not None else None
        targets = DistillTargets(self.split.labels[idx].to(device), self.logits[view, idx].float().to(device),
                                 features)
        return images, targets


def distillation_loss(logits: torch.Tensor, targets: DistillTargets, spec: DistillSpec,
                      label_smoothing: float) -> torch.Tensor:
    """Scalar loss for student ``logits [b, C]``. ``soft``: ``alpha * T^2 * KL(teacher_T || student_T)
    + (1 - alpha) * CE(labels)`` (Hinton et al.; T = ``temperature``). ``hard``: DeiT's hard-label
    distillation, ``alpha * CE(teacher argmax) + (1 - alpha) * CE(labels)``.

    >>> t = DistillTargets(torch.tensor([0]), torch.tensor([[5.0, 0.0]]))
    >>> s = DistillSpec(loss="soft", temperature=1.0, alpha=1.0)
    >>> round(distillation_loss(torch.tensor([[5.0, 0.0]]), t, s, 0.0).item(), 6)   # student = teacher
    0.0
    """
    ce = F.cross_entropy(logits, targets.labels, label_smoothing=label_smoothing) if spec.alpha < 1 else 0.0
    if spec.loss == "hard":
        kd = F.cross_entropy(logits, targets.teacher_logits.argmax(-1), label_smoothing=label_smoothing)
    else:
        t = spec.temperature
        kd = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(targets.teacher_logits / t, -1),
                      log_target=True, reduction="batchmean") * t * t
    return spec.alpha * kd + (1 - spec.alpha) * ce


def feature_loss(patch_tokens: torch.Tensor, teacher_features: torch.Tensor, head: torch.nn.Module) -> torch.Tensor:
    """Scalar mean squared error between the student's patch tokens ``[b, P, D]`` (P = g'^2, row-major
    grid) mapped by ``head`` (D -> C) and the teacher's feature maps ``[b, C, g, g]`` pooled to the
    student's grid and layer-normalised over channels (so every layer and resolution weighs alike).

    >>> head = torch.nn.Linear(2, 2, bias=False)
    >>> _ = torch.nn.init.eye_(head.weight)
    >>> t = torch.tensor([[1.0, -1.0]]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    >>> round(feature_loss(torch.tensor([[[1.0, -1.0]] * 4]), t, head).item(), 6)   # tokens already match
    0.0
    """
    b, p, _ = patch_tokens.shape
    grid = math.isqrt(p)
    target = F.adaptive_avg_pool2d(teacher_features, grid).flatten(2).transpose(1, 2)    # [b, P, C]
    target = F.layer_norm(target, target.shape[-1:])
    return F.mse_loss(head(patch_tokens), target)


@torch.inference_mode()
def teacher_top1(teacher: Teacher, split: ImageSplit, classes: list[str], px: int, batch_size: int = 64) -> float:
    """The teacher's top-1 (%) on ``split`` (centre view, resized to ``px``), logits restricted to ``classes``."""
    from ccbench.data.augment import resize

    idx = class_indices(classes)
    correct = 0
    for start in range(0, len(split), batch_size):
        x = resize(split.images[start:start + batch_size].float().div_(255.0), px)
        correct += (task_logits(teacher, x, idx).argmax(-1) == split.labels[start:start + batch_size]).sum().item()
    return round(100 * correct / max(len(split), 1), 3)
