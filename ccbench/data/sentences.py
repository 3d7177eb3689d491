"""Whole sentences among phrase-level examples (SST-2): GLUE's SST-2 train split holds every labelled phrase of
the treebank's sentences (mean 9.6 words) while its dev split holds whole sentences (mean 19.5 words). A
calibration slice drawn from the phrases would set thresholds and compute targets on a different length
distribution from the reported split, so such a task draws it from the whole sentences only, and keeps their
phrases out of training.

Containment is word-level: an example is contained in another when its words are a contiguous run of the
other's words (whitespace tokens, as the treebank's examples are tokenized).
"""
from __future__ import annotations

import torch


def _words(texts: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Each example's words; only single-text examples have sentences to pick out."""
    if any(len(t) != 1 for t in texts):
        raise ValueError("whole-sentence calibration needs single-text examples (not sentence pairs)")
    return [tuple(t[0].split()) for t in texts]


def _proper_spans(words: tuple[str, ...]):
    """Every contiguous run of ``words`` shorter than all of them."""
    n = len(words)
    return (words[i:j] for i in range(n) for j in range(i + 1, n + 1) if j - i < n)


def whole_sentence_mask(texts: list[tuple[str, ...]]) -> torch.Tensor:
    """Boolean mask ``[N]``: the examples whose words are not a contiguous run inside another example's
    (the treebank's sentences; each phrase lies inside the sentence it was cut from). Time and memory grow with
    the sum of squared example lengths in words (SST-2 train: 1.5 M spans, about 4 s).

    >>> whole_sentence_mask([("a fine film .",), ("fine film",), ("dull",), ("a fine film .",)]).tolist()
    [True, False, True, True]
    """
    words = _words(texts)
    inside = {span for w in words for span in _proper_spans(w)}
    return torch.tensor([w not in inside for w in words], dtype=torch.bool)


def contained_mask(texts: list[tuple[str, ...]], sentences: torch.Tensor) -> torch.Tensor:
    """Boolean mask ``[N]``: the examples equal to, or a contiguous run of words inside, an example picked by
    the boolean mask ``sentences`` ``[N]`` (the phrases of the picked sentences, and the sentences themselves).

    >>> texts = [("a fine film .",), ("fine film",), ("dull",), ("film",)]
    >>> contained_mask(texts, torch.tensor([True, False, False, False])).tolist()
    [True, True, False, True]
    """
    words = _words(texts)
    picked = [w for w, p in zip(words, sentences.tolist()) if p]
    inside = {span for w in picked for span in _proper_spans(w)} | set(picked)
    return torch.tensor([w in inside for w in words], dtype=torch.bool)
