"""Image splits decoded once into a uint8 tensor cache on disk.

JPEG decoding never sits in a training loop: the first use of a (task, data hash, split, size)
decodes every image (shorter side resized to ``px`` with bicubic antialiasing, then centre-cropped)
into ``uint8 [N, 3, px, px]`` and saves it under the cache folder (``$CCBENCH_CACHE``, default
``~/.cache/ccbench``); later uses load that file. The file is safetensors (images, labels; ids and
class names as JSON in its header), so loading it never unpickles; an unreadable one is rebuilt.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ccbench.common.errors import UserError
from ccbench.common.safefile import load_cache, save_tensors
from ccbench.common.specs import CalibrationSpec, TaskSpec

from .data_source import (
    DataRef,
    RawSplit,
    locate_hub,
    locate_local_imagefolder,
    resolve_data_root,
)

CACHE_ENV = "CCBENCH_CACHE"


def cache_root() -> Path:
    """Folder for decoded caches and backbones: ``$CCBENCH_CACHE`` or ``~/.cache/ccbench``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "ccbench")).expanduser()


@dataclass
class ImageSplit:
    """Decoded images ``uint8 [N, 3, px, px]``, labels ``int64 [N]``, example ids, class names and
    the hash of the data they came from."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    classes: list[str]
    data_hash: str

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: torch.Tensor | list[int]) -> "ImageSplit":
        """Rows ``index`` (in that order) as a new split sharing classes and data hash."""
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageSplit(self.images[index], self.labels[index],
                          [self.ids[i] for i in index.tolist()], self.classes, self.data_hash)


def _decode(raw: RawSplit, px: int) -> tuple[torch.Tensor, torch.Tensor]:
    from datasets import Image as ImageFeature
    from PIL import Image, UnidentifiedImageError
    from tqdm import tqdm

    undecoded = raw.dataset.cast_column("image", ImageFeature(decode=False))
    images = np.empty((len(undecoded), px, px, 3), dtype=np.uint8)
    labels = np.asarray(undecoded["label"], dtype=np.int64)
    for i, item in enumerate(tqdm(undecoded["image"], desc=f"decode {px}px", unit="img",
                                  leave=False, mininterval=2)):
        where = item.get("path") or raw.ids[i]
        try:
            src = item["bytes"] if item.get("bytes") else open(item["path"], "rb").read()
            if not src:
                raise UserError(f"image {where} is empty (0 bytes); replace or delete it")
            img = Image.open(io.BytesIO(src)).convert("RGB")
        except UnidentifiedImageError:
            raise UserError(f"image {where} is not an image PIL can read ({len(src)} bytes); replace or "
                            f"delete it") from None
        except OSError as err:  # truncated or corrupt data; PIL's messages name no file
            raise UserError(f"cannot read image {where}: {str(err).splitlines()[0][:120]}; replace or "
                            f"delete it") from None
        w, h = img.size
        scale = px / min(w, h)
        nw, nh = max(px, round(w * scale)), max(px, round(h * scale))
        img = img.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - px) // 2, (nh - px) // 2
        images[i] = np.asarray(img.crop((left, top, left + px, top + px)))
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def locate(task: TaskSpec, split: str, data_dir: str | None) -> DataRef:
    """Where ``split`` ('train' or 'val') of ``task`` comes from: the local folder if one is set,
    else the hub."""
    root = resolve_data_root(data_dir)
    if root is not None:
        return locate_local_imagefolder(root, task.local.subdir, task.local.splits[split])
    return locate_hub(task.hub.path, task.hub.name, task.hub.revision, task.hub.splits[split])


def _check_classes(task: TaskSpec, classes: list[str], origin: str) -> None:
    if classes != task.classes:
        missing, extra = sorted(set(task.classes) - set(classes)), sorted(set(classes) - set(task.classes))
        what = "; ".join(part for part in (f"missing class folders {missing}" if missing else "",
                                           f"unexpected folders {extra}" if extra else "") if part)
        raise UserError(f"{origin} does not hold task {task.name!r} v{task.version}'s classes: "
                        f"{what or 'same classes in another order'}; expected one folder per class: "
                        f"{', '.join(task.classes)}")


def load_image_split(task: TaskSpec, split: str, px: int, data_dir: str | None = None) -> ImageSplit:
    """Decoded ``split`` of ``task`` at ``px`` pixels, from the on-disk cache when present. A task
    that is a ``subset_of`` another keeps that task's images of its own classes, relabelled in the
    order of its ``classes`` (ids and the decode cache are the parent's).

    The cache file is keyed by task name, version, data hash, split and ``px``; a cache hit never
    opens the dataset itself. The file is written atomically, so an interrupted decode leaves nothing
    half-written."""
    if task.subset_of:
        return class_subset(load_image_split(_parent(task), split, px, data_dir), task.classes)
    ref = locate(task, split, data_dir)
    key = f"{task.name}-v{task.version}-{ref.data_hash[:16]}-{split}-{px}px.safetensors"
    path = cache_root() / "images" / key
    cached = load_cache(path, ("images", "labels"))
    if cached is not None and _cache_fits(cached, path):
        tensors, meta = cached
        _check_classes(task, meta["classes"], ref.origin)
        return ImageSplit(tensors["images"], tensors["labels"], meta["ids"], meta["classes"], ref.data_hash)
    try:
        raw = ref.load()
    except UserError as err:
        if ref.origin.startswith("hub:"):
            raise UserError(
                f"no data for task {task.name!r}: looked at --data-dir (not given), $CCBENCH_DATA "
                f"(not set) and the hub ({err}). Set CCBENCH_DATA to a folder holding "
                f"'{task.local.subdir}/{{train,val}}/<class>/*.JPEG'"
            ) from None
        raise
    _check_classes(task, raw.classes, raw.origin)
    images, labels = _decode(raw, px)
    save_tensors({"images": images, "labels": labels}, {"ids": list(raw.ids), "classes": list(raw.classes)}, path)
    return ImageSplit(images, labels, raw.ids, raw.classes, raw.data_hash)


def _cache_fits(cached: tuple[dict, dict], path: Path) -> bool:
    """Whether a decode cache's header lists an id per image and the class names (else: a miss)."""
    from ccbench.common.messages import say

    tensors, meta = cached
    ids, classes = meta.get("ids"), meta.get("classes")
    if (isinstance(ids, list) and isinstance(classes, list) and len(ids) == len(tensors["images"])
            == len(tensors["labels"])):
        return True
    say(f"ignoring cache file {path}: its ids/classes do not match its images; rebuilding it")
    return False


def _parent(task: TaskSpec) -> TaskSpec:
    from ccbench.common import catalog

    parent = catalog.tasks().get(task.subset_of)
    missing = sorted(set(task.classes) - set(parent.classes))
    if missing:
        raise UserError(f"task {task.name!r}: classes {missing} are not classes of {parent.name!r}")
    return parent


def class_subset(split: ImageSplit, classes: list[str]) -> ImageSplit:
    """The rows of ``split`` whose class is in ``classes``, relabelled ``classes.index(class)``."""
    old = torch.tensor([split.classes.index(c) for c in classes])
    keep = torch.isin(split.labels, old).nonzero().flatten()
    sub = split.subset(keep)
    relabel = torch.full((len(split.classes),), -1, dtype=torch.long)
    relabel[old] = torch.arange(len(classes))
    return ImageSplit(sub.images, relabel[sub.labels], sub.ids, list(classes), split.data_hash)


def calibration_mask(ids: list[str], labels: torch.Tensor, spec: CalibrationSpec) -> torch.Tensor:
    """Boolean mask ``[N]`` of the calibration slice: per class the ``ceil(fraction * n_class)``
    examples with the smallest ``sha256(seed:id)``. Depends only on ids, labels and the spec, not
    on file order.

    >>> m = calibration_mask([f"x{i}" for i in range(40)], torch.tensor([0] * 20 + [1] * 20),
    ...                      CalibrationSpec(fraction=0.1, seed=0))
    >>> int(m.sum()), int(m[:20].sum())
    (4, 2)
    """
    mask = torch.zeros(len(ids), dtype=torch.bool)
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten().tolist()
        k = math.ceil(spec.fraction * len(members))
        order = sorted(members, key=lambda i: hashlib.sha256(f"{spec.seed}:{ids[i]}".encode()).digest())
        mask[order[:k]] = True
    return mask


def task_splits(task: TaskSpec, px: int, data_dir: str | None = None) -> dict[str, ImageSplit]:
    """``{'train', 'calibration', 'eval'}`` splits of an image task at ``px`` pixels: train minus the
    calibration slice, the slice itself, and the reported split."""
    full = load_image_split(task, task.calibration.source, px, data_dir)
    calib = calibration_mask(full.ids, full.labels, task.calibration)
    return {
        "train": full.subset(torch.nonzero(~calib).flatten()),
        "calibration": full.subset(torch.nonzero(calib).flatten()),
        "eval": load_image_split(task, task.eval_split, px, data_dir),
    }
