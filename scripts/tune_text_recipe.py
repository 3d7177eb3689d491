"""Choose the dense text recipe (learning rate x training length) of a tier on each task's calibration slice
(issue 21, item 7); the chosen values then go into ``budgets/<tier>.yaml`` for every text method.

Each grid point fine-tunes the dense model from the tier's text encoder on the task's train split minus its
calibration slice (seed ``--seed``: data order and the new head) and scores it on the calibration slice only
(never on dev, which the leaderboard reports). The table of every point and the chosen one are written as
JSON to ``--out`` (default ``budgets/tuning/<tier>-<task>[-v<task version above 1>]-dense-recipe.json``, beside
the tier it justifies; not under ``results/``, which holds records only), with the commit and tree state that
produced them. Usage (the cpu tier, from a clean checkout):

    CCBENCH_DATA=../shared/data python scripts/tune_text_recipe.py --task sst2 \
        --lr 5e-5,1e-4,2e-4 --samples 16000,32000
    CCBENCH_DATA=../shared/data python scripts/tune_text_recipe.py --task mrpc \
        --lr 5e-5,1e-4,2e-4 --epochs 3,5

The chosen point is the best calibration score; a point within ``--tie`` points of it that trains on fewer
samples (then at the smaller learning rate) wins instead, so noise on a small slice does not buy compute.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this checkout's ccbench, not an installed one

from ccbench.common import catalog  # noqa: E402
from ccbench.common.atomic import atomic_write_text  # noqa: E402
from ccbench.common.errors import UserError  # noqa: E402
from ccbench.common.provenance import git_state  # noqa: E402
from ccbench.common.specs import BudgetSpec, TextTaskBudget  # noqa: E402
from ccbench.measurement.evaluate import evaluate_split  # noqa: E402
from ccbench.training.train import method_loss, train  # noqa: E402
from ccbench.training.workload import make_workload  # noqa: E402


def tier_with(tier: BudgetSpec, task: str, lr: float, length: dict) -> BudgetSpec:
    """``tier`` with the text fine-tuning ``lr`` and ``task``'s budget replaced by ``length``
    (``{"samples": n}`` or ``{"epochs": e}``)."""
    text = tier.text.model_copy(update={"finetune": tier.text.finetune.model_copy(update={"lr": lr}),
                                        "tasks": {**tier.text.tasks, task: TextTaskBudget(**length)}})
    return tier.model_copy(update={"text": text})


def calibration_score(tier: BudgetSpec, task_name: str, data_dir: str | None, seed: int,
                      backbone: str | None = None, progress: bool = True) -> dict:
    """Fine-tune the dense model under ``tier`` on ``task_name``'s train split (minus calibration) and
    score it on the calibration slice: ``{"score": main score (%), "ci95": [lo, hi], "n_calibration",
    "samples", "wall_s"}``. ``backbone``: another text encoder (HF id or folder) than the tier's."""
    task = catalog.tasks().get(task_name)
    work = make_workload(task, tier, data_dir, seed, backbone_path=backbone, progress=False)
    model = catalog.methods().get("dense").build(work.new_backbone())
    calib = work.splits["calibration"]
    model.to(tier.device).prepare(work.inputs(calib, torch.arange(min(64, len(calib))), tier.device))
    recipe = work.recipe
    t0 = time.time()
    result = train(model, method_loss(recipe.label_smoothing), recipe, work.train_data(work.splits["train"]), None,
                   seed, device=tier.device, desc=f"dense {task_name} lr={recipe.lr:g} samples={recipe.samples}",
                   progress=progress)
    ev = evaluate_split(model.eval(), work, calib, tier.eval_batch_size, tier.device)
    main = work.scores(ev.logits, ev.labels, seed)["main_score"]
    return {"score": main["value"], "ci95": main["ci95"], "n_calibration": len(calib),
            "samples": result.samples, "wall_s": round(time.time() - t0, 1)}


def choose(points: list[dict], tie: float) -> dict:
    """The chosen grid point: among those within ``tie`` points of the best calibration score, the one
    with the fewest training samples, then the smallest learning rate.

    >>> pts = [{"lr": 1e-4, "samples": 32000, "score": 90.0}, {"lr": 2e-4, "samples": 16000, "score": 89.8},
    ...        {"lr": 5e-5, "samples": 16000, "score": 88.0}]
    >>> choose(pts, tie=0.5)["lr"], choose(pts, tie=0.0)["samples"]
    (0.0002, 32000)
    """
    best = max(p["score"] for p in points)
    near = [p for p in points if p["score"] >= best - tie]
    return min(near, key=lambda p: (p["samples"], p["lr"]))


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring); returns the exit code."""
    try:
        return _main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--budget", default="cpu")
    parser.add_argument("--lr", required=True, type=_floats, help="comma-separated learning rates")
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--samples", type=_floats, help="comma-separated training samples")
    length.add_argument("--epochs", type=_floats, help="comma-separated epochs over the train split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tie", type=float, default=0.3, help="points within which the cheaper point wins")
    parser.add_argument("--data-dir", default=os.environ.get("CCBENCH_DATA"))
    parser.add_argument("--out", default=None)
    parser.add_argument("--backbone", default=None, help="another text encoder than the tier's (HF id or folder)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the tier's)")
    args = parser.parse_args(argv)
    code_state = git_state()   # the code that runs is the code at start
    tier = catalog.budgets().get(args.budget)
    task = catalog.tasks().get(args.task)   # an unknown task fails here, with a suggestion
    torch.set_num_threads(args.threads or tier.threads or 1)
    lengths = ([{"samples": int(s)} for s in args.samples] if args.samples else [{"epochs": e} for e in args.epochs])
    out = Path(args.out or Path(__file__).resolve().parents[1] / "budgets" / "tuning"
               / f"{tier.name}-{args.task}{f'-v{task.version}' if task.version > 1 else ''}-dense-recipe.json")
    points = []
    for lr in args.lr:
        for ln in lengths:
            res = calibration_score(tier_with(tier, args.task, lr, ln), args.task, args.data_dir, args.seed,
                                    args.backbone, progress=not args.quiet)
            points.append({"lr": lr, **ln, **res})
            print(json.dumps(points[-1]), flush=True)
    chosen = choose(points, args.tie)
    body = {"kind": "recipe-tuning", "task": args.task, "task_version": task.version, "budget": {"name": tier.name, "version": tier.version},
            "method": "dense", "seed": args.seed, "selected_on": "calibration slice (never dev)",
            "rule": f"best calibration score; within {args.tie} points the fewest samples, then the smaller lr",
            "base_recipe": tier.text.finetune.model_dump(), "points": points, "chosen": chosen,
            "git": code_state, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(body, indent=1) + "\n")
    print(f"chosen: lr={chosen['lr']:g}, {'samples' if args.samples else 'epochs'}="
          f"{chosen.get('samples') if args.samples else chosen.get('epochs')} "
          f"(calibration {chosen['score']:.2f}); wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
