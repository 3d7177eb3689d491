"""The dense backbone of a (budget tier, task): trained once, hashed, shared by every method.

Lookup order for a run: an explicit path; the checkout's published
``checkpoints/<budget>-<task>.safetensors`` when its recipe hash matches the tier's current recipe;
the cache (``$CCBENCH_CACHE/checkpoints``); otherwise it is pretrained first. The *backbone hash* is
the sha256 of the fp16 weights alone (:func:`weights_sha256`), so metadata such as wall time never
changes it.

A checkpoint is a safetensors file (never a pickle): the fp16 weights as tensors, and
``{"config": ..., "meta": {..., "backbone_sha256": ...}}`` as JSON in its header metadata
(:mod:`ccbench.common.safefile`), readable without torch.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ccbench.common.errors import UserError
from ccbench.common.provenance import content_hash, git_state, hardware, repo_root
from ccbench.common.safefile import load_tensors, read_meta, save_tensors
from ccbench.common.specs import BudgetSpec, TaskSpec
from ccbench.core.backbones import ViTBackbone, ViTConfig
from ccbench.data.image_data import cache_root, task_splits


@dataclass
class BackboneCheckpoint:
    """A backbone checkpoint on disk: path, weights hash, metadata (recipe, curve, accuracy)."""

    path: Path
    sha256: str
    meta: dict


def backbone_config(budget: BudgetSpec, task: TaskSpec) -> ViTConfig:
    """The tier's backbone shape with the task's number of classes."""
    b = budget.backbone
    return ViTConfig(img_size=b.img_size, patch_size=b.patch_size, embed_dim=b.embed_dim,
                     depth=b.depth, num_heads=b.num_heads, mlp_ratio=b.mlp_ratio,
                     num_classes=len(task.classes))


def backbone_seed(budget: BudgetSpec) -> int:
    """The seed a tier's dense backbone is pretrained with: the tier's first seed. A fine-tuning seed
    (``ccbench run --seed``) never changes it, so every seed of a method fine-tunes the same published
    backbone and their rows pool in tables."""
    return budget.seeds[0]


def recipe_hash(budget: BudgetSpec, task: TaskSpec, seed: int) -> str:
    """Hash of the recipe that determines the pretrained weights (first 16 hex digits); the training
    data is identified beside it (a checkpoint's ``data_hash``). A recipe without distillation hashes as
    it did before distillation existed."""
    recipe = budget.pretrain.model_dump(exclude={"distill"} if budget.pretrain.distill is None else None)
    return content_hash({"task": [task.name, task.version], "backbone": budget.backbone.model_dump(),
                         "init": budget.backbone_init, "recipe": recipe,
                         "cache_px": budget.cache_px, "seed": seed})[:16]


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over ``(name, fp16 bytes)`` of every tensor in name order: the backbone hash."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu()
        t = t.to(torch.float16) if t.is_floating_point() else t
        h.update(name.encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def checkpoint_fix(path) -> str:
    """What to do about an unreadable backbone checkpoint ``path`` (the end of a one-line error)."""
    return (f"a backbone checkpoint must be a ccbench safetensors file: re-create {Path(path).name} with "
            "`ccbench pretrain` (a file from an older ccbench: convert it with scripts/convert_checkpoints.py)")


def write_checkpoint(state: dict[str, torch.Tensor], config: dict, meta: dict, path: Path) -> str:
    """Write the fp16 ``state`` (name -> tensor), the backbone ``config`` and ``meta`` to ``path`` as
    safetensors, atomically; return the backbone hash (also stored as ``meta["backbone_sha256"]``)."""
    digest = weights_sha256(state)
    save_tensors(state, {"config": config, "meta": {**meta, "backbone_sha256": digest}}, path)
    return digest


def save_backbone(backbone: ViTBackbone, path: Path, meta: dict) -> str:
    """Write fp16 weights, config and ``meta`` atomically; return the backbone hash."""
    state = {k: v.detach().cpu().to(torch.float16) if v.is_floating_point() else v.detach().cpu()
             for k, v in backbone.state_dict().items()}
    return write_checkpoint(state, backbone.config.to_dict(), meta, path)


def checkpoint_meta(path: Path) -> dict:
    """The ``meta`` of checkpoint ``path`` (recipe, stated ``backbone_sha256``...) read from the
    safetensors header alone: no tensor is loaded and nothing is unpickled."""
    meta = read_meta(path, checkpoint_fix(path)).get("meta")
    if not isinstance(meta, dict):
        raise UserError(f"{path} has no backbone 'meta' in its header; {checkpoint_fix(path)}")
    return meta


def load_backbone(path: Path) -> tuple[ViTBackbone, BackboneCheckpoint]:
    """Load a checkpoint written by :func:`save_backbone`; weights are cast to fp32 and the hash
    is recomputed from them (a tampered file is detected by a hash mismatch). Anything but a
    ccbench safetensors checkpoint is refused with a one-line ``UserError``."""
    path = Path(path)
    state, blob = load_tensors(path, checkpoint_fix(path))
    if not isinstance(blob.get("config"), dict) or not isinstance(blob.get("meta"), dict):
        raise UserError(f"{path} has no backbone config/meta in its header; {checkpoint_fix(path)}")
    digest = weights_sha256(state)
    stated = blob["meta"].get("backbone_sha256")
    if stated and stated != digest:
        raise UserError(f"backbone {path} is corrupt: weights hash {digest[:12]} != recorded {stated[:12]}")
    try:
        backbone = ViTBackbone(ViTConfig(**blob["config"]))
        backbone.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except (TypeError, ValueError, RuntimeError) as err:
        raise UserError(f"{path} does not fit its own backbone config ({str(err).splitlines()[0]}); "
                        f"{checkpoint_fix(path)}") from None
    return backbone, BackboneCheckpoint(path, digest, blob["meta"])


def published_path(budget: BudgetSpec, task: TaskSpec) -> Path | None:
    """``checkpoints/<budget>-<task>.safetensors`` in the checkout (``None`` after a plain install)."""
    root = repo_root()
    return root / "checkpoints" / f"{budget.name}-{task.name}.safetensors" if root else None


def cached_path(budget: BudgetSpec, task: TaskSpec, seed: int, data_hash: str) -> Path:
    """Where ``ccbench pretrain`` writes by default: the cache, keyed by the recipe hash and the
    training data's hash."""
    return (cache_root() / "checkpoints" /
            f"{budget.name}-{task.name}-{recipe_hash(budget, task, seed)}-{data_hash[:12]}.safetensors")


def find_backbone(budget: BudgetSpec, task: TaskSpec, seed: int, data_hash: str) -> Path | None:
    """The checkpoint a run should use, or ``None`` when it must be pretrained first: the published one
    when it was trained with the tier's current recipe on the same training data (``data_hash``),
    else the cache's."""
    want = recipe_hash(budget, task, seed)
    pub = published_path(budget, task)
    if pub is not None and pub.exists():
        meta = checkpoint_meta(pub)
        if meta.get("recipe_hash") == want and meta.get("data_hash") == data_hash:
            return pub
    cached = cached_path(budget, task, seed, data_hash)
    return cached if cached.exists() else None


def find_backbone_by_hash(sha256: str) -> Path | None:
    """The published or cached checkpoint whose weights hash is ``sha256`` (read from headers only), or
    ``None``: how a record's own backbone is found again after the tier's recipe moved on."""
    root = repo_root()
    folders = ([root / "checkpoints"] if root else []) + [cache_root() / "checkpoints"]
    for folder in folders:
        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            try:
                if checkpoint_meta(path).get("backbone_sha256") == sha256:
                    return path
            except UserError:
                continue
    return None


def init_backbone(budget: BudgetSpec, config: ViTConfig, seed: int = 0) -> ViTBackbone:
    """A fresh backbone: random (``scratch``), random with mimetic attention (``mimetic``,
    :mod:`ccbench.training.mimetic`, seeded by ``seed``) or from timm weights (``timm:<name>``, needs the hub)."""
    backbone = ViTBackbone(config)
    if budget.backbone_init == "mimetic":
        from .mimetic import mimetic_init_
        mimetic_init_(backbone.blocks, config.num_heads, seed)
    if budget.backbone_init.startswith("timm:"):
        import timm

        from ccbench.common.errors import UserError
        name = budget.backbone_init.split(":", 1)[1]
        try:
            src = timm.create_model(name, pretrained=True, num_classes=config.num_classes)
        except Exception as err:
            raise UserError(f"could not fetch timm weights {name!r} ({type(err).__name__}); the "
                            f"{budget.name!r} tier needs the hub for its initial weights") from None
        missing = backbone.vit.load_state_dict(src.state_dict(), strict=False)
        if missing.missing_keys:
            raise UserError(f"timm weights {name!r} do not fit the tier's backbone: {missing.missing_keys[:3]}")
    return backbone


def pretrain(budget: BudgetSpec, task: TaskSpec, data_dir: str | None, seed: int = 0,
             resume: bool = True, out: Path | None = None, progress: bool = True) -> BackboneCheckpoint:
    """Train the tier's dense backbone on ``task``'s train split (never its calibration or eval
    split) with the tier's pretraining recipe (distilled from the teacher when the recipe says so),
    monitor calibration top-1 per epoch, report eval top-1 once at the end, and write the checkpoint
    (default: the cache). Resumable."""
    from ccbench.measurement.evaluate import top1

    from .train import train

    torch.manual_seed(seed)
    if budget.threads:
        torch.set_num_threads(budget.threads)
    device = budget.device
    recipe = budget.pretrain
    splits = task_splits(task, budget.cache_px, data_dir)
    data_hash = splits["train"].data_hash
    config = backbone_config(budget, task)
    model = init_backbone(budget, config, seed)
    if recipe.drop_path:
        model.set_drop_path(recipe.drop_path)
    out = Path(out) if out else cached_path(budget, task, seed, data_hash)
    state_name = f"pretrain-{budget.name}-{task.name}-{recipe_hash(budget, task, seed)}-{data_hash[:12]}.pt"
    state_path = cache_root() / "train_state" / state_name

    teacher_meta = None
    if recipe.distill is None:
        data = splits["train"]

        def loss_fn(m, x, y):
            logits = m(x)
            return F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing), logits
    else:
        data, teacher_meta, loss_fn = _distillation(budget, task, data_dir, splits, model, progress)

    def monitor(m):
        return top1(m, splits["calibration"], config.img_size, budget.eval_batch_size, device)

    t0 = time.time()
    result = train(model, loss_fn, recipe, data, config.img_size, seed,
                   state_path=state_path, resume=resume, device=device, monitor=monitor,
                   desc=f"pretrain {budget.name}/{task.name}", progress=progress)
    model.set_drop_path(0.0)
    if hasattr(model, "distill_head"):  # used only to distil features; not part of the backbone
        del model.distill_head
    eval_top1 = top1(model, splits["eval"], config.img_size, budget.eval_batch_size, device)
    meta = {"task": task.name, "task_version": task.version, "data_hash": data_hash,
            "budget": budget.name, "budget_version": budget.version, "seed": seed,
            "recipe_hash": recipe_hash(budget, task, seed), "recipe": recipe.model_dump(),
            "init": budget.backbone_init, "samples": result.samples, "steps": result.steps,
            "train_wall_s": round(result.wall_s, 1), "total_wall_s": round(time.time() - t0, 1),
            "curve": result.curve, "calib_top1": result.curve[-1].get("calib_top1") if result.curve else None,
            "eval_top1": eval_top1, "eval_split": task.eval_split, "git": git_state(),
            "hardware": hardware(device)}
    if teacher_meta:
        meta["teacher"] = teacher_meta
    digest = save_backbone(model.cpu(), out, meta)
    state_path.unlink(missing_ok=True)   # the resume state is spent once the backbone is saved
    return BackboneCheckpoint(out, digest, {**meta, "backbone_sha256": digest})


def _distillation(budget: BudgetSpec, task: TaskSpec, data_dir: str | None, splits: dict, model: ViTBackbone,
                  progress: bool):
    """Training data, teacher provenance and loss of a distilled pretraining: the teacher's stored views
    of the training images (computed once for the root task's images, shared by its class subsets),
    its own top-1 on the calibration and eval splits at ``teacher_px``, and the distillation loss. When
    features are distilled, ``model`` gets a ``distill_head`` (tokens -> teacher channels) to train with it."""
    from ccbench.common import catalog
    from ccbench.common.messages import say

    from .distill import (
        SOURCE_PX,
        DistillTrainData,
        distillation_loss,
        feature_loss,
        teacher_top1,
        teacher_views,
    )
    from .teacher import load_teacher

    spec = budget.pretrain.distill
    if spec.feature_weight > 0 and not 1 <= spec.feature_block <= budget.backbone.depth:  # before the teacher pass
        raise UserError(f"distill.feature_block must be between 1 and the backbone's {budget.backbone.depth} "
                        f"blocks, got {spec.feature_block}")
    teacher = load_teacher()
    root = task
    while root.subset_of:
        root = catalog.tasks().get(root.subset_of)
    source = task_splits(task, SOURCE_PX, data_dir)
    root_train = source["train"] if root.name == task.name else task_splits(root, SOURCE_PX, data_dir)["train"]
    views = teacher_views(teacher, root_train, spec, progress=progress)
    figures = _cached_json(cache_root() / "teacher" / views.key / f"top1-{task.name}-{spec.teacher_px}px.json",
                           lambda: {split: teacher_top1(teacher, source[split], task.classes, spec.teacher_px)
                                    for split in ("calibration", "eval")})
    say(f"teacher {spec.teacher}: top-1 {figures['calibration']:.1f}% calibration, {figures['eval']:.1f}% "
        f"{task.eval_split} at {spec.teacher_px}px on {task.name}'s classes")
    teacher_meta = {**teacher.provenance(), "views_key": views.key, "classes": list(task.classes),
                    "top1_calibration": figures["calibration"], f"top1_{task.eval_split}": figures["eval"],
                    "px": spec.teacher_px, "note": "the teacher was trained on ImageNet-1k, which holds every "
                                                   "Imagenette class (imagenette-b's included)"}
    data = DistillTrainData(source["train"], views, task.classes, budget.pretrain, model.config.img_size)
    if spec.feature_weight == 0:
        def loss_fn(m, x, y):
            logits = m(x)
            return distillation_loss(logits, y, spec, budget.pretrain.label_smoothing), logits
        return data, teacher_meta, loss_fn

    from .distributed import env_world

    if env_world() > 1:  # its loss runs the blocks one by one, past DDP's forward (no gradient averaging)
        raise UserError("feature distillation (pretrain.distill.feature_weight > 0) does not train under torchrun "
                        "yet: pretrain with one process (`ccbench pretrain`)")
    teacher_meta["features"] = {"teacher_stage": spec.teacher_stage, "grid": spec.feature_grid,
                                "student_block": spec.feature_block, "weight": spec.feature_weight}

    # a linear map from student tokens to teacher channels, trained with the backbone, dropped after training
    model.distill_head = torch.nn.Linear(model.config.embed_dim, views.features.shape[2])

    def loss_fn(m, x, y):
        tokens = m.embed(x)
        for i, block in enumerate(m.blocks):
            tokens = block(tokens)
            if i + 1 == spec.feature_block:
                middle = tokens
        logits = m.classify(tokens[:, 0])
        loss = distillation_loss(logits, y, spec, budget.pretrain.label_smoothing)
        return loss + spec.feature_weight * feature_loss(middle[:, 1:], y.teacher_features, m.distill_head), logits
    return data, teacher_meta, loss_fn


def _cached_json(path: Path, compute) -> dict:
    """``compute()``'s JSON-able result, kept at ``path`` (a cache: recomputed when missing or unreadable)."""
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        value = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(value))
        tmp.replace(path)
        return value
