"""The evaluation sets of ``ccbench shift`` (issue 8): a target task's shift split, as one or more
*conditions* (name -> split).

* Text targets (``imdb``, ``amazon-<domain>``): one condition, the spec's ``shift.split`` (optionally a
  fixed stratified subset of it).
* Corrupted image targets (``imagenette-c``): the fixed stratified subset decoded at the stored
  resolution (``corruptions.at_px``), then one condition per (corruption, severity) plus ``clean``, the
  same images through the same path without a corruption. Each condition is resized to the tier's pixels
  like every image and cached as ``uint8`` under ``$CCBENCH_CACHE/images`` (safetensors; an unreadable
  cache file is rebuilt).
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from ccbench.common.errors import UserError
from ccbench.common.safefile import load_cache, save_tensors
from ccbench.common.specs import SubsetSpec, TaskSpec

CLEAN = "clean"


def stratified_subset(ids: list[str], labels: torch.Tensor, spec: SubsetSpec) -> torch.Tensor:
    """Indices (ascending) of the first ``spec.per_class`` examples per class by ``sha256(seed:id)``;
    a class with fewer examples gives all of them. Depends only on ids, labels and the spec.

    >>> stratified_subset([f"x{i}" for i in range(10)], torch.tensor([0] * 5 + [1] * 5),
    ...                   SubsetSpec(per_class=2, seed=0)).tolist()
    [1, 3, 7, 8]
    """
    keep = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten().tolist()
        members.sort(key=lambda i: hashlib.sha256(f"{spec.seed}:{ids[i]}".encode()).digest())
        keep += members[:spec.per_class]
    return torch.tensor(sorted(keep), dtype=torch.long)


def condition_name(corruption: str, severity: int) -> str:
    """``"gaussian_noise/3"``."""
    return f"{corruption}/{severity}"


def resize_uint8(images: torch.Tensor, px: int) -> torch.Tensor:
    """``uint8 [N, 3, H, W]`` -> ``uint8 [N, 3, px, px]`` (bicubic with antialiasing, rounded; square
    inputs only, as the stored Imagenette copy is 224 x 224)."""
    if images.shape[-1] == px and images.shape[-2] == px:
        return images.clone()
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"expected square images, got {tuple(images.shape[-2:])}")
    out = F.interpolate(images.float(), size=(px, px), mode="bicubic", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def image_conditions(task: TaskSpec, px: int, data_dir: str | None = None, progress: bool = True) -> dict:
    """``{condition: ImageSplit}`` of a corrupted image target at ``px`` pixels, ``clean`` first."""
    from tqdm import tqdm

    from .corruptions import corrupt
    from .image_data import ImageSplit, cache_root, load_image_split

    shift = task.shift
    if shift is None or shift.corruptions is None:
        raise UserError(f"task {task.name!r} has no corruptions")
    spec = shift.corruptions
    full = load_image_split(task, shift.split, spec.at_px, data_dir)
    index = stratified_subset(full.ids, full.labels, shift.subset) if shift.subset else torch.arange(len(full))
    base = full.subset(index)
    key = hashlib.sha256(f"{base.data_hash}:{','.join(base.ids)}".encode()).hexdigest()[:16]
    out = {}
    conditions = [(CLEAN, None, None)] + [(condition_name(c, s), c, s) for c in spec.names for s in spec.severities]
    bar = tqdm(conditions, desc=f"{task.name} conditions", unit="cond", disable=not progress, leave=False)
    for name, corruption, severity in bar:
        path = (cache_root() / "images" /
                f"{task.name}-v{task.version}-{key}-{name.replace('/', '-s')}-seed{spec.seed}-{px}px.safetensors")
        cached = load_cache(path, ("images",))
        if cached is not None:
            images = cached[0]["images"]
        else:
            if corruption is None:
                stored = base.images
            else:
                hwc = base.images.permute(0, 2, 3, 1).numpy()
                stored = torch.from_numpy(np.stack([corrupt(hwc[i], corruption, severity, base.ids[i], spec.seed)
                                                    for i in range(len(base))])).permute(0, 3, 1, 2)
            images = resize_uint8(stored, px).contiguous()
            save_tensors({"images": images}, {}, path)
        out[name] = ImageSplit(images, base.labels, base.ids, base.classes,
                               hashlib.sha256(f"{base.data_hash}:{name}:{spec.seed}".encode()).hexdigest())
    return out


def text_conditions(task: TaskSpec, data_dir: str | None = None) -> dict:
    """``{task name: TextSplit}``: a text target's shift split (its fixed subset when the spec has one)."""
    from .text_data import load_text_split

    shift = task.shift
    split = load_text_split(task, shift.split, data_dir)
    if shift.subset:
        split = split.subset(stratified_subset(split.ids, split.labels, shift.subset))
    return {task.name: split}


def shift_conditions(task: TaskSpec, px: int | None, data_dir: str | None = None, progress: bool = True) -> dict:
    """The conditions of any shift target (see the module docstring)."""
    if task.shift is None:
        raise UserError(f"task {task.name!r} is not a shift target (its spec has no 'shift' section)")
    if task.modality == "image":
        if task.shift.corruptions is None:
            raise UserError(f"image shift target {task.name!r} needs a 'corruptions' section")
        return image_conditions(task, px, data_dir, progress)
    return text_conditions(task, data_dir)
