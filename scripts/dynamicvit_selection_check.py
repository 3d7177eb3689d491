"""Is DynamicViT's learned token selection better than random selection on the *same* weights?

Evaluates the cached cpu-tier dynamicvit model on every 4th Imagenette val image at one keep ratio,
keeping tokens by (a) its predictors, (b) uniform random scores, (c) the inverted predictor scores.
Needs the fine-tuned model in the cache (`ccbench run --method dynamicvit --train-only`).

    CCBENCH_DATA=../shared/data python scripts/dynamicvit_selection_check.py [keep_ratio]
"""
from __future__ import annotations

import copy
import sys

import torch

from ccbench.common import catalog
from ccbench.core.method import MethodOutput
from ccbench.core.token_ops import staged_keep_forward, tokens_trace_tensor
from ccbench.core.trace import Trace
from ccbench.data.image_data import cache_root, task_splits
from ccbench.measurement.evaluate import evaluate
from ccbench.training.model_store import load_trained
from ccbench.training.pretrain import load_backbone


def main(rho: float) -> None:
    backbone, _ = load_backbone("checkpoints/cpu-imagenette.safetensors")
    model = catalog.methods().get("dynamicvit").build(copy.deepcopy(backbone))
    cached = sorted((cache_root() / "runs").glob("cpu-imagenette-dynamicvit-*.safetensors"))
    if not cached:
        sys.exit("no cached dynamicvit model: run `ccbench run --method dynamicvit --train-only` first")
    load_trained(model, cached[-1])
    model.eval().set_knob(rho)
    split = task_splits(catalog.tasks().get("imagenette"), 128, None)["eval"]
    val = split.subset(torch.arange(0, len(split), 4))
    gen = torch.Generator().manual_seed(0)

    def with_scorer(scorer):
        def forward(images):
            logits, counts, _ = staged_keep_forward(model.backbone, images, model.stages, rho, scorer)
            trace = Trace({"tokens_per_block": tokens_trace_tensor(images.shape[0], counts)})
            return MethodOutput(logits, logits.new_zeros(()), trace)
        return forward

    scorers = {"predictor": lambda s, p: model.predictors[s](p)[..., 0],
               "random": lambda s, p: torch.rand(p.shape[:2], generator=gen),
               "inverted predictor": lambda s, p: -model.predictors[s](p)[..., 0]}
    for name, scorer in scorers.items():
        model._forward_infer = with_scorer(scorer)
        print(f"keep ratio {rho}, {name:>18}: top-1 {evaluate(model, val, 128, 128).top1:.2f}% on {len(val)} images")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.6)
