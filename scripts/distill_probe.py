"""Compare distillation losses on a short schedule before the full backbone run (issue 17).

Each probe is the cpu tier's pretraining recipe shortened to ``--samples`` at 64 px, with the
distillation loss replaced; it reuses the tier's cached teacher views, reports calibration top-1 per
epoch (never val) and writes nothing to checkpoints/. Usage:

    CCBENCH_DATA=../shared/data python scripts/distill_probe.py --samples 60000 \
        soft:2.0:0.9 soft:1.0:1.0 hard:1.0:0.5 none

``--views``/``--teacher-px`` choose the stored views, ``--feature-weight`` adds feature distillation and
``--init mimetic`` the mimetic attention initialisation (issue 17's second round).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ccbench.common import catalog
from ccbench.common.specs import DistillSpec
from ccbench.training.pretrain import pretrain

# the views the probes (and the 360k-sample run of issue 17) used: 8 crops per image seen at 160 px
DISTILL = DistillSpec(views=8, teacher_px=160, loss="soft", temperature=2.0, alpha=0.9)


def probe_tier(samples: int, loss: str, views: DistillSpec = DISTILL, init: str = "scratch"):
    """The cpu tier with a ``samples``-long 64-px pretraining from ``init`` and the distillation
    ``loss`` (``soft:T:alpha``, ``hard:T:alpha`` or ``none`` for plain cross-entropy) on ``views``."""
    tier = catalog.budgets().get("cpu")
    recipe = tier.pretrain.model_copy(update={"samples": samples, "stages": [(1.0, 64)], "warmup_steps": 60,
                                              "distill": views})
    if loss == "none":
        recipe = recipe.model_copy(update={"distill": None})
    else:
        kind, t, alpha = loss.split(":")
        recipe = recipe.model_copy(update={"distill": recipe.distill.model_copy(
            update={"loss": kind, "temperature": float(t), "alpha": float(alpha)})})
    return tier.model_copy(update={"pretrain": recipe, "backbone_init": init})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("losses", nargs="+", help="soft:T:alpha | hard:T:alpha | none")
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--views", type=int, default=DISTILL.views)
    parser.add_argument("--teacher-px", type=int, default=DISTILL.teacher_px)
    parser.add_argument("--feature-weight", type=float, default=0.0)
    parser.add_argument("--feature-block", type=int, default=6)
    parser.add_argument("--init", default="scratch", choices=["scratch", "mimetic"])
    args = parser.parse_args()
    views = DISTILL.model_copy(update={"views": args.views, "teacher_px": args.teacher_px,
                                       "feature_weight": args.feature_weight, "feature_block": args.feature_block})
    if args.feature_weight > 0:
        views = views.model_copy(update={"feature_grid": 8})
    task = catalog.tasks().get("imagenette")
    for loss in args.losses:
        t0 = time.time()
        with tempfile.TemporaryDirectory() as out:
            ckpt = pretrain(probe_tier(args.samples, loss, views, args.init), task, args.data_dir, resume=False,
                            out=Path(out) / "probe.safetensors", progress=False)
        curve = [round(p["calib_top1"], 1) for p in ckpt.meta["curve"]]
        print(json.dumps({"loss": loss, "samples": args.samples, "views": views.model_dump(), "init": args.init, "calib_top1_curve": curve,
                          "final_calib_top1": curve[-1], "wall_s": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main()
