"""Budgeted, seeded, resumable training.

The budget is a number of training samples seen; ``steps = ceil(samples / batch_size)``. One epoch is
one pass over the training split in a permutation drawn from ``(seed, epoch)``, so a resumed run sees
the same batches as an uninterrupted one. A training state (model, optimiser, EMA, augmentation RNG,
step, wall time) is written atomically at every epoch end and at the end of the run.

Under ``torchrun`` the same loop trains data-parallel (:mod:`ccbench.training.distributed`): the budget counts
global samples, each rank trains on its shard of every global batch, rank 0 alone writes states.
"""
from __future__ import annotations

import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ccbench.common.atomic import atomic_torch_save
from ccbench.common.errors import UserError
from ccbench.common.specs import RecipeSpec
from ccbench.data.augment import normalize, random_resized_crop
from ccbench.data.image_data import ImageSplit

from .distributed import context as dist_context

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
SAVE_EVERY_S = 300.0  # a training state is also written this often (long single-epoch runs stay resumable)


class ImageTrainData:
    """Training batches of an :class:`ImageSplit`: normalised, random-resized-cropped and flipped at
    the step's resolution (``recipe.stages``). The protocol :func:`train` uses: ``len``,
    ``epoch_batches(epoch, batch_size, seed)`` and ``batch(idx, step, total_steps, gen, device)``."""

    def __init__(self, split: ImageSplit, recipe: RecipeSpec, img_px: int):
        self.split, self.recipe, self.img_px = split, recipe, img_px

    def __len__(self) -> int:
        return len(self.split)

    def epoch_batches(self, epoch: int, batch_size: int, seed: int) -> list[torch.Tensor]:
        """Index batches of one epoch: a permutation drawn from ``(seed, epoch)``, cut in full batches."""
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed * 100003 + epoch))
        return [perm[i * batch_size:(i + 1) * batch_size] for i in range(max(len(self) // batch_size, 1))]

    def batch(self, idx: torch.Tensor, step: int, total_steps: int, gen: torch.Generator,
              device: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented images ``[b, 3, px, px]`` and labels ``[b]``."""
        images = normalize(self.split.images[idx].to(device))
        px = stage_px(self.recipe, step, total_steps, self.img_px)
        images = random_resized_crop(images, px, tuple(self.recipe.augment.scale), self.recipe.augment.flip, gen)
        return images, self.split.labels[idx].to(device)


@dataclass
class TrainResult:
    """What a training run consumed and saw. ``curve`` holds one dict per epoch end
    (``epoch``, ``samples``, ``train_loss``, and ``calib_top1`` when a monitor was given)."""

    samples: int
    steps: int
    wall_s: float
    curve: list[dict] = field(default_factory=list)


def cosine_lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``.

    >>> [round(cosine_lr_factor(s, 10, 2), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def stage_px(recipe: RecipeSpec, step: int, total_steps: int, final_px: int) -> int:
    """Input size at ``step`` under progressive resolution: ``recipe.stages`` lists
    ``(fraction of steps, px)`` in order; without stages every step uses ``final_px``.

    >>> r = RecipeSpec(samples=100, batch_size=10, lr=1e-3, stages=[(0.5, 64), (0.5, 128)])
    >>> [stage_px(r, s, 10, 128) for s in (0, 4, 5, 9)]
    [64, 64, 128, 128]
    """
    if not recipe.stages:
        return final_px
    edge = 0.0
    for fraction, px in recipe.stages:
        edge += fraction
        if step < edge * total_steps - 1e-9:
            return px
    return recipe.stages[-1][1]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases, norms, embeddings and tokens (1-D or named so)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(("pos_embed", "cls_token")):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def load_state(path: Path) -> dict:
    """A resume state written by :func:`train`, read with ``torch.load(weights_only=True)``: tensors
    and plain containers only (the optimizer's and scheduler's state dicts, RNG byte tensors, the
    curve as a list of dicts), so no global is allow-listed and nothing in the file can run code.
    An unreadable file is a one-line ``UserError``."""
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # the restricted unpickler met a global it does not allow, or garbage
        raise UserError(f"resume state {path} is not a plain-tensor torch file (refused; nothing in it was "
                        "run); delete it to start this training over") from None
    except Exception as err:  # zip, EOF and I/O errors: a truncated or foreign file
        raise UserError(f"resume state {path} is unreadable ({type(err).__name__}); delete it to start this "
                        "training over") from None
    if not isinstance(st, dict) or not {"model", "opt", "sched", "aug_gen", "step"} <= set(st):
        raise UserError(f"resume state {path} is not a ccbench training state; delete it to start this "
                        "training over")
    return st


def method_loss(label_smoothing: float = 0.0, transfer: bool = False) -> Callable:
    """The loss function :func:`train` takes for a method's model: ``(model, inputs, labels) -> (the
    model's training loss, logits [B, C])`` (``ConditionalModel.loss``; ``ConditionalModel.transfer_loss``
    when ``transfer``, for ``ccbench transfer``)."""
    def loss_fn(model, inputs, labels):
        out = model(inputs)
        loss = getattr(model, "transfer_loss", model.loss) if transfer else model.loss
        return loss(out, labels, label_smoothing), out.logits
    return loss_fn


def train(model: nn.Module, loss_fn: LossFn, recipe: RecipeSpec, data, img_px: int | None,
          seed: int, state_path: Path | None = None, resume: bool = False,
          device: str = "cpu", monitor: Callable[[nn.Module], float] | None = None,
          desc: str = "train", progress: bool = True) -> TrainResult:
    """Train ``model`` in place on ``data`` for ``recipe.samples`` samples.

    ``data`` is an :class:`ImageSplit` (wrapped in :class:`ImageTrainData` at ``img_px``) or any
    object with that protocol (text: ``ccbench.training.workload.TextTrainData``).
    ``loss_fn(model, inputs, labels) -> (loss, logits)`` gets a batch, e.g. normalised, augmented
    images ``[B, 3, img_px, img_px]``. ``monitor(model) -> top-1 in %`` (e.g. on the calibration
    split) is called at each epoch end for the curve. With ``resume`` and an existing ``state_path``
    the run continues from its last saved state (written at epoch ends and every few minutes). Under
    torchrun every rank calls this; every rank but 0 exits when training ends (:mod:`ccbench.training.distributed`)."""
    from tqdm import tqdm

    if isinstance(data, ImageSplit):
        data = ImageTrainData(data, recipe, img_px)
    bs = recipe.batch_size
    dist = dist_context(device, bs)
    total_steps = math.ceil(recipe.samples / bs)
    steps_per_epoch = max(len(data) // bs, 1)
    opt = torch.optim.AdamW(param_groups(model, recipe.weight_decay), lr=recipe.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: cosine_lr_factor(s, total_steps, recipe.warmup_steps))
    aug_gen = torch.Generator().manual_seed(seed)
    ema = None
    if recipe.ema_decay:
        from timm.utils import ModelEmaV3
        ema = ModelEmaV3(model, decay=recipe.ema_decay)
    step, wall, curve = 0, 0.0, []
    if resume and state_path is not None and Path(state_path).exists():
        st = load_state(Path(state_path))
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        aug_gen.set_state(st["aug_gen"])
        if ema is not None and st.get("ema") is not None:
            ema.module.load_state_dict(st["ema"])
        step, wall, curve = st["step"], st["wall_s"], st["curve"]
        if st.get("torch_rng") is not None:  # dropout, Gumbel noise: a resumed run draws what it would have
            torch.set_rng_state(st["torch_rng"])

    def save_state():
        if state_path is not None and dist.main:
            atomic_torch_save({"model": model.state_dict(), "opt": opt.state_dict(),
                          "sched": sched.state_dict(), "aug_gen": aug_gen.get_state(),
                          "ema": ema.module.state_dict() if ema is not None else None,
                          "step": step, "wall_s": wall, "curve": curve, "torch_rng": torch.get_rng_state()},
                         Path(state_path))

    model.to(device).train()
    net = dist.wrap(model, device)  # DDP under torchrun (gradients averaged over ranks), else the model
    bar = tqdm(total=total_steps, initial=step, desc=desc, unit="step", disable=not (progress and dist.main),
               dynamic_ncols=True, mininterval=1.0)
    loss_sum, loss_n = 0.0, 0
    last_save = time.perf_counter()
    while step < total_steps:
        epoch = step // steps_per_epoch
        order = data.epoch_batches(epoch, bs, seed)
        start_in_epoch = step - epoch * steps_per_epoch
        for i in range(start_in_epoch, steps_per_epoch):
            if step >= total_steps:
                break
            t0 = time.perf_counter()
            idx = order[i]
            inputs, labels = data.batch(idx, step, total_steps, aug_gen, device)  # the global batch
            inputs, labels = dist.shard(inputs), dist.shard(labels)
            loss, _ = loss_fn(net, inputs, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update(model, step=step)
            step += 1
            dt = time.perf_counter() - t0
            wall += dt
            loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
            bar.set_postfix(loss=f"{loss.item():.3f}", samples_s=f"{len(idx) / dt:.0f}", refresh=False)
            bar.update(1)
            if time.perf_counter() - last_save > SAVE_EVERY_S and step < total_steps:
                save_state()
                last_save = time.perf_counter()
        point = {"epoch": epoch + 1, "step": step, "samples": step * bs,
                 "train_loss": loss_sum / max(loss_n, 1), "wall_s": round(wall, 1)}
        loss_sum, loss_n = 0.0, 0
        if monitor is not None and dist.main:
            eval_model = ema.module if ema is not None else model
            point["calib_top1"] = monitor(eval_model)
            model.train()
            bar.write(f"{desc} epoch {epoch + 1}: loss {point['train_loss']:.3f} "
                      f"calib top-1 {point['calib_top1']:.1f}% ({wall / 60:.1f} min)")
        curve.append(point)
        save_state()
    bar.close()
    if ema is not None:
        model.load_state_dict(ema.module.state_dict())
    dist.finish()
    return TrainResult(samples=step * bs, steps=step, wall_s=wall, curve=curve)
