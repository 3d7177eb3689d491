"""Cross-fitted evaluation sets (issue 25): a target's examples cut into k folds, each predicted by a model
trained on the other folds, so that every example is predicted exactly once and a transfer is scored on the
whole set (an Amazon domain's 2,000 reviews instead of dev's 300).

Folds are stratified by class and assigned by ``sha256(seed:id)``: they depend only on ids, labels and the
spec, never on the method or the run's seed, so every transfer to the target pairs by example.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from ccbench.common.errors import UserError
from ccbench.common.specs import CrossFitSpec, TaskSpec


def fold_assignment(ids: list[str], labels: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """The fold of each example, long ``[N]`` in ``0..folds-1``: per class, the examples ordered by
    ``sha256(seed:id)`` are dealt to the folds in turn, each class starting one fold further than the last
    (fold sizes differ by at most one per class, and the remainders spread over the folds).

    >>> fold_assignment([f"r{i}" for i in range(6)], torch.tensor([0, 0, 0, 1, 1, 1]), 2, 0).tolist()
    [0, 0, 1, 0, 1, 1]
    """
    if folds < 2:
        raise UserError(f"cross-fitting needs at least 2 folds, got {folds}")
    fold = torch.full((len(ids),), -1, dtype=torch.long)
    strata = labels.round().long() if labels.is_floating_point() else labels
    for j, c in enumerate(strata.unique().tolist()):
        members = (strata == c).nonzero().flatten().tolist()
        members.sort(key=lambda i: hashlib.sha256(f"{seed}:{ids[i]}".encode()).digest())
        for rank, i in enumerate(members):
            fold[i] = (rank + j) % folds
    return fold


@dataclass(frozen=True)
class CrossFit:
    """A cross-fitted eval set: the ``pool`` split (all its examples are evaluated), ``fold [N]`` (long,
    each example's fold) and the ``spec`` it follows."""

    pool: object
    fold: torch.Tensor
    spec: CrossFitSpec

    def train_split(self, k: int):
        """The examples outside fold ``k`` (what fold ``k``'s model trains on)."""
        return self.pool.subset(torch.nonzero(self.fold != k).flatten())

    def eval_index(self, k: int) -> torch.Tensor:
        """Positions in ``pool`` of fold ``k``'s examples, ascending ``[n_k]``."""
        return torch.nonzero(self.fold == k).flatten()

    def eval_split(self, k: int):
        """Fold ``k``'s examples (what fold ``k``'s model predicts)."""
        return self.pool.subset(self.eval_index(k))

    def eval_set(self) -> dict:
        """The record's ``task.eval_set``: the spec's identity, the pool's size and the fold sizes."""
        sizes = [int((self.fold == k).sum()) for k in range(self.spec.folds)]
        return {**self.spec.identity(), "n": len(self.pool), "fold_sizes": sizes}


def check_pool(task: TaskSpec, pool) -> None:
    """Raise a one-line :class:`UserError` unless ``pool`` (the ``transfer_eval`` split, loaded) is the eval set
    the spec declares: ``spec.n`` examples whose data hash is one of ``spec.data_sha256``. Checked before any
    fold trains (a cross-fit is one model per fold: tens of minutes on the cpu tier)."""
    spec = task.transfer_eval
    problems = ([f"{len(pool)} examples, the spec declares {spec.n}"] if len(pool) != spec.n else []) + (
        [f"data hash {pool.data_hash[:12]} is none of the spec's data_sha256"]
        if pool.data_hash not in spec.data_sha256 else [])
    if problems:
        raise UserError(f"{task.name}/{spec.split} is not the declared cross-fit eval set ({'; '.join(problems)}): "
                        f"point $CCBENCH_DATA (or --data-dir) at an unmodified copy of the dataset")


def cross_fit(task: TaskSpec, data_dir: str | None = None, check: bool = True) -> CrossFit:
    """The cross-fitted eval set of ``task`` as a transfer target (its spec's ``transfer_eval``); with ``check``
    the data must be the declared eval set (:func:`check_pool`; off for the smoke tier's tiny test data)."""
    from .text_data import load_text_split

    spec = task.transfer_eval
    if spec is None:
        raise UserError(f"task {task.name!r} declares no transfer_eval; it is evaluated on its {task.eval_split} split")
    pool = load_text_split(task, spec.split, data_dir)
    if check:
        check_pool(task, pool)
    if len(set(pool.ids)) != len(pool.ids):
        raise UserError(f"{task.name}/{spec.split}: example ids repeat; cross-fitting needs one id per example")
    fold = fold_assignment(pool.ids, pool.labels, spec.folds, spec.seed)
    if any(int((fold == k).sum()) == 0 for k in range(spec.folds)):
        raise UserError(f"{task.name}/{spec.split} has {len(pool)} examples: too few for {spec.folds} folds")
    return CrossFit(pool, fold, spec)
