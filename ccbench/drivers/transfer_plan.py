"""What a ``ccbench transfer`` trains on and predicts (issue 25): the target's train split and eval split, or,
for a target whose spec declares ``transfer_eval``, its k cross-fitted folds (:mod:`ccbench.data.folds`):
fold k's model trains on the other folds and predicts fold k, so every example of the eval set is predicted
exactly once by a model that never trained on it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ccbench.common.specs import TaskSpec


@dataclass(frozen=True)
class Fold:
    """One model's share of a transfer: the split it trains on, the split it predicts, and where those
    predictions sit in the eval set (``positions``, long ``[n]``)."""

    train: object
    eval: object
    positions: torch.Tensor


@dataclass(frozen=True)
class TransferPlan:
    """The folds of a transfer (one for a plain target) and the eval set they cover: ``ids``, ``labels [N]``,
    its ``data_hash``, the ``train_data_hash`` of what the models train on, the record's ``eval_set``
    (``ccbench.common.protocols.eval_set_of``'s identity plus ``n`` and, cross-fitted, ``fold_sizes``) and
    ``fold [N]`` (long: each example's fold; ``None`` for a plain target)."""

    folds: list[Fold]
    ids: list[str]
    labels: torch.Tensor
    data_hash: str
    train_data_hash: str
    eval_set: dict
    fold: torch.Tensor | None = None

    @property
    def cross_fitted(self) -> bool:
        """Whether the eval set is predicted by more than one model."""
        return self.fold is not None


def transfer_plan(target: TaskSpec, work, data_dir: str | None = None, check: bool = True) -> TransferPlan:
    """The plan of a transfer to ``target`` (``work``: its workload, whose splits a plain target uses); with
    ``check`` a cross-fitted target's data must be the eval set its spec declares
    (:func:`ccbench.data.folds.check_pool`, before any fold trains)."""
    if target.transfer_eval is None:
        train, ev = work.splits["train"], work.splits["eval"]
        return TransferPlan([Fold(train, ev, torch.arange(len(ev)))], list(ev.ids), ev.labels, ev.data_hash,
                            train.data_hash, {**target.transfer_eval_set(), "n": len(ev)})
    from ccbench.data.folds import cross_fit

    cf = cross_fit(target, data_dir, check)
    folds = [Fold(cf.train_split(k), cf.eval_split(k), cf.eval_index(k)) for k in range(cf.spec.folds)]
    pool = cf.pool
    return TransferPlan(folds, list(pool.ids), pool.labels, pool.data_hash, pool.data_hash, cf.eval_set(), cf.fold)
