"""``patience``: PABEE (Zhou et al., NeurIPS 2020) on ``early-exit``'s trained heads: a counter rises by
one when exit i's argmax equals exit i-1's and resets otherwise; a sample leaves when it reaches the
patience p (knob). p = 0 leaves at the first exit; p = 1 at the first exit that agrees with its
predecessor. Same compaction and cost accounting as ``early-exit``."""
from __future__ import annotations

from ccbench.baselines.early_exit import EarlyExitModel

METADATA = {
    "name": "patience",
    "family": "depth",
    "paper": "Zhou et al. 2020, BERT Loses Patience: Fast and Robust Inference with Early Exit (NeurIPS)",
    "bibtex": "@inproceedings{zhou2020pabee, title={{BERT} Loses Patience: Fast and Robust Inference with Early "
              "Exit}, author={Zhou, Wangchunshu and Xu, Canwen and Ge, Tao and McAuley, Julian and Xu, Ke and "
              "Wei, Furu}, booktitle={NeurIPS}, year={2020}}",
    "knob": {"name": "patience", "default": 2, "direction": "lower = less compute", "sweep": [0, 1, 2, 3, 4, 6],
             "needs_retraining": False,
             "integer": True, "minimum": 0},
    "modalities": ["image", "text"],
    "trains": False,
    "evaluates_checkpoint_of": "early-exit",
    "description": "Exit when p consecutive heads agree on the argmax (PABEE), on early-exit's heads.",
}


def build(backbone, patience: int = 2, **config) -> EarlyExitModel:
    """PABEE rule on an early-exit model (load early-exit's checkpoint into it)."""
    return EarlyExitModel(backbone, rule="patience", patience=patience, **config)
