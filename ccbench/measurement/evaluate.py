"""Predictions and per-sample traces over a split."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ccbench.core.method import predictions
from ccbench.core.trace import Trace
from ccbench.data.augment import normalize, resize
from ccbench.data.image_data import ImageSplit


@dataclass
class Evaluation:
    """Per-sample results over a split: ``logits [N, C]``, ``labels [N]``, ``ids``, ``trace``."""

    logits: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    trace: Trace

    @property
    def predictions(self) -> torch.Tensor:
        """``[N]``: the predicted class, or the predicted value of a regression task (:func:`predictions`)."""
        return predictions(self.logits)

    @property
    def correct(self) -> torch.Tensor:
        """Bool ``[N]``: top-1 prediction equals the label."""
        return self.predictions == self.labels

    @property
    def top1(self) -> float:
        """Top-1 accuracy in %."""
        return 100.0 * self.correct.float().mean().item()


def batches(split: ImageSplit, img_px: int, batch_size: int, device: str):
    """Yield ``(start, images [b, 3, img_px, img_px] normalised, labels [b])`` in split order."""
    for start in range(0, len(split), batch_size):
        imgs = normalize(split.images[start:start + batch_size].to(device))
        yield start, resize(imgs, img_px), split.labels[start:start + batch_size]


@torch.inference_mode()
def top1(model: nn.Module, split: ImageSplit, img_px: int, batch_size: int = 128,
         device: str = "cpu") -> float:
    """Top-1 (%) of a plain classifier ``model(images) -> logits`` on ``split``."""
    was_training = model.training
    model.eval()
    correct = 0
    for _, x, y in batches(split, img_px, batch_size, device):
        correct += (model(x).argmax(-1).cpu() == y).sum().item()
    model.train(was_training)
    return 100.0 * correct / max(len(split), 1)


@torch.inference_mode()
def evaluate(model: nn.Module, split: ImageSplit, img_px: int, batch_size: int,
             device: str = "cpu", progress: bool = False) -> Evaluation:
    """Run a conditional model (``model(images) -> MethodOutput``) over ``split`` in eval mode and
    collect logits, labels, ids and the concatenated per-sample trace."""
    inputs = (x for _, x, _ in batches(split, img_px, batch_size, device))
    return evaluate_inputs(model, inputs, split.labels, split.ids, -(-len(split) // batch_size), progress)


@torch.inference_mode()
def evaluate_inputs(model: nn.Module, inputs, labels: torch.Tensor, ids: list[str], total: int | None = None,
                    progress: bool = False) -> Evaluation:
    """Run a conditional model over an iterable of input batches (any modality; the samples of
    ``labels [N]`` / ``ids`` in order) in eval mode; ``total`` batches, for the progress bar."""
    from tqdm import tqdm

    model.eval()
    logits, traces = [], []
    for x in tqdm(inputs, total=total, desc="eval", unit="batch", disable=not progress, leave=False, mininterval=2):
        out = model(x)
        logits.append(out.logits.float().cpu())
        traces.append(out.trace.to("cpu"))
    return Evaluation(torch.cat(logits), labels.clone(), list(ids), Trace.cat(traces))


def evaluate_split(model: nn.Module, work, split, batch_size: int, device: str, progress: bool = False) -> Evaluation:
    """``model``'s logits, labels, ids and trace over every sample of ``split`` (a split of the
    workload ``work``), in order, in batches of ``batch_size``."""
    return evaluate_inputs(model, work.batches(split, batch_size, device), split.labels, split.ids,
                           -(-len(split) // batch_size), progress)


def stitch(parts: list[Evaluation], positions: list[torch.Tensor], ids: list[str], labels: torch.Tensor) -> Evaluation:
    """One evaluation of ``N`` samples (``ids``, ``labels [N]`` in order) from ``parts``, where part ``i``
    evaluated the samples at ``positions[i]`` (long ``[n_i]``, in that order): the cross-fitted folds of
    one eval set. Every position must be covered exactly once; per-token trace fields are padded to the
    largest part (:meth:`Trace.cat`)."""
    order = torch.cat([p.long() for p in positions]) if positions else torch.zeros(0, dtype=torch.long)
    if len(order) != len(ids) or not torch.equal(order.sort().values, torch.arange(len(ids))):
        raise ValueError(f"the parts cover {len(order)} positions ({len(order.unique())} distinct) of {len(ids)}: "
                         f"each sample must be predicted exactly once")
    for part, pos in zip(parts, positions):
        if not torch.equal(part.labels, labels[pos]) or part.ids != [ids[i] for i in pos.tolist()]:
            raise ValueError("a part's ids or labels are not the samples at its positions")
    inverse = torch.argsort(order)
    logits = torch.cat([p.logits for p in parts])[inverse]
    trace = Trace.cat([p.trace for p in parts]).select(inverse)
    return Evaluation(logits, labels.clone(), list(ids), trace)
