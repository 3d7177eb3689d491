"""Depth family helpers: exit heads, exit rules, and exit diagnostics (issue 6).

An exit head reads the class token after a block: LayerNorm + linear, initialised from the
backbone's final norm and classifier (so every head starts as a sensible classifier). The last
block's exit *is* the backbone's own classifier.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def make_exit_heads(backbone: nn.Module) -> nn.ModuleList:
    """One head per block except the last: copies of the backbone's classifier (``make_exit_head``;
    ViT: final norm + head, text: head), whose cost is ``backbone.head_macs()``."""
    return nn.ModuleList(backbone.make_exit_head() for _ in range(len(backbone.blocks) - 1))


def max_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Confidence ``max_c softmax(logits)_c``, ``[B, C] -> [B]``."""
    return logits.softmax(-1).amax(-1)


def one_minus_normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Confidence ``1 - H(softmax) / log C`` in [0, 1], ``[B, C] -> [B]`` (DeeBERT's entropy rule,
    rescaled so that "higher = more confident" like :func:`max_softmax`)."""
    logp = logits.log_softmax(-1)
    h = -(logp.exp() * logp).sum(-1)
    return 1 - h / torch.log(torch.tensor(float(logits.shape[-1])))


CRITERIA = {"max_softmax": max_softmax, "entropy": one_minus_normalized_entropy}


def exit_weights(n: int) -> torch.Tensor:
    """Loss weights of the ``n`` exits, proportional to their depth (1, 2, ..., n), summing to 1
    (survey Eq. 15 with SDN/PABEE-style increasing weights).

    >>> exit_weights(3).tolist()
    [0.1666666716337204, 0.3333333432674408, 0.5]
    """
    w = torch.arange(1, n + 1, dtype=torch.float32)
    return w / w.sum()


def overthinking_rate(all_preds: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples that some exit before the last got right and the last exit gets wrong.
    ``all_preds [S, E]`` (every exit's prediction), ``labels [S]``.

    >>> overthinking_rate(np.array([[1, 0, 0], [1, 1, 1], [0, 0, 1], [0, 1, 0]]), np.array([1, 1, 1, 1]))
    0.5
    """
    right = all_preds == labels[:, None]
    return float((right[:, :-1].any(1) & ~right[:, -1]).mean())


def exit_histogram(exit_block: np.ndarray, blocks) -> dict[int, int]:
    """``{block: samples}``: how many of ``exit_block [S]`` (block after which each sample left) left
    after each of ``blocks``.

    >>> exit_histogram(np.array([0, 2, 2]), range(3))
    {0: 1, 1: 0, 2: 2}
    """
    return {int(b): int((exit_block == b).sum()) for b in blocks}


def mean_blocks_run(exit_block: np.ndarray) -> float:
    """Mean number of blocks a sample ran (``exit_block [S]`` + 1), rounded to 4 digits."""
    return round(float((exit_block + 1).mean()), 4)


def exit_summary(exit_block: np.ndarray, depth: int) -> dict:
    """Where samples left a ``depth``-block model: ``{"histogram": {block: samples}, "mean_blocks_run"}``."""
    return {"histogram": exit_histogram(exit_block, range(depth)), "mean_blocks_run": mean_blocks_run(exit_block)}


def exit_diagnostics(all_preds: np.ndarray, exit_block: np.ndarray, final_preds: np.ndarray,
                     labels: np.ndarray, exit_blocks: list[int]) -> dict:
    """Record diagnostics of an exiting model: ``all_preds [S, E]`` every exit's prediction (exit e
    sits after block ``exit_blocks[e]``), ``exit_block [S]`` block after which each sample left,
    ``final_preds [S]`` the predictions it gave, ``labels [S]``."""
    exited_acc = {}
    for b in exit_blocks:
        sel = exit_block == b
        exited_acc[int(b)] = round(100 * float((final_preds[sel] == labels[sel]).mean()), 3) if sel.any() else None
    return {
        "exit_blocks": [int(b) for b in exit_blocks],
        "exit_histogram": exit_histogram(exit_block, exit_blocks),
        "mean_blocks_run": mean_blocks_run(exit_block),
        "accuracy_of_each_exit_alone": {int(b): round(100 * float((all_preds[:, e] == labels).mean()), 3)
                                        for e, b in enumerate(exit_blocks)},
        "accuracy_of_exited_predictions": exited_acc,
        "overthinking_rate": round(overthinking_rate(all_preds, labels), 5),
    }
