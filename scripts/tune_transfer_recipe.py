"""Choose a tier's text transfer recipe (learning rate x samples per transferred model) on a tuning pair that
the specialization track (issue 25) does not report, so the track's own target is never used to choose it.

A source run record (default: a dense run on sst2) is transferred to ``--to`` (default ``amazon-electronics``;
the track transfers to amazon-kitchen) under each of ``--protocols`` at every ``--lr`` x ``--samples`` point,
exactly as ``ccbench transfer`` does one cross-fitted fold: the heads are re-initialised (seeded), the roles the
protocol names train on the other folds, the fold is predicted. Only fold ``--fold`` is used (one model per
point and protocol). Each point's score is the mean of its protocols' scores; the chosen point is the best, and
a point within ``--tie`` points of it with fewer samples (then a smaller lr) wins instead, so noise does not buy
compute (every transfer of the track costs one model per fold at that many samples). Every point's score, its
95 % CI and its training wall time go to ``--out`` (rewritten after each point, cheapest first; ``--resume``
keeps the points it holds) (default ``budgets/tuning/<tier>-text-transfer-recipe.json``)
with the commit and tree state. Usage (from a clean checkout, the source's trained model in the cache)::

    CCBENCH_DATA=../shared/data python scripts/tune_transfer_recipe.py --source 0c3d560ac6f8 \
        --lr 1e-4,3e-4 --samples 2000,5000
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this checkout's ccbench, not an installed one
sys.path.insert(0, str(Path(__file__).resolve().parent))       # tune_text_recipe's selection rule

from ccbench.common import catalog  # noqa: E402
from ccbench.common.atomic import atomic_write_text  # noqa: E402
from ccbench.common.errors import UserError  # noqa: E402
from ccbench.common.provenance import git_state  # noqa: E402
from ccbench.drivers.from_record import load_record_model, record_backbone_path  # noqa: E402
from ccbench.drivers.transfer import apply_protocol, reinit_heads  # noqa: E402
from ccbench.drivers.transfer_plan import transfer_plan  # noqa: E402
from ccbench.measurement.evaluate import evaluate_split  # noqa: E402
from ccbench.training.train import method_loss, train  # noqa: E402
from ccbench.training.workload import make_workload  # noqa: E402
from tune_text_recipe import choose  # noqa: E402

TRACK_TARGETS = ("amazon-kitchen",)   # what the track reports text transfers on: never a tuning target


def fold_score(rm, twork, fold, protocol: str, lr: float, samples: int, progress: bool = True) -> dict:
    """Transfer a copy of ``rm``'s model to ``fold`` under ``protocol`` with the tier's text transfer recipe at
    ``lr`` and ``samples``; ``{"score": main score on fold.eval (%), "ci95", "n_eval", "train_n", "samples",
    "train_wall_s", "eval_wall_s"}`` (seconds)."""
    tier, seed = rm.tier, rm.record["seed"]
    recipe = tier.transfer_recipe("text").model_copy(update={"lr": lr, "samples": samples})
    model = copy.deepcopy(rm.model)
    reinit_heads(model, len(twork.task.classes), seed)
    apply_protocol(model, protocol)
    result = train(model, method_loss(recipe.label_smoothing), recipe, twork.train_data(fold.train), None, seed,
                   device=tier.device, desc=f"{protocol} lr={lr:g} samples={samples}", progress=progress)
    t0 = time.time()
    ev = evaluate_split(model.eval(), twork, fold.eval, tier.eval_batch_size, tier.device, progress)
    main = twork.scores(ev.logits, ev.labels, seed)["main_score"]
    return {"score": main["value"], "ci95": main["ci95"], "n_eval": len(ev.ids), "train_n": len(fold.train),
            "samples": result.samples, "train_wall_s": round(result.wall_s, 1), "eval_wall_s": round(time.time() - t0, 1)}


def _write(out: Path, body: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(body, indent=1) + "\n")


def _finished_points(out: Path, setting: dict) -> list[dict]:
    """The points an earlier run of the same setting (source, target, fold, protocols, base recipe) wrote to
    ``out``; none when ``out`` is missing or holds another setting."""
    if not out.exists():
        return []
    body = json.loads(out.read_text())
    same = body.get("setting") == json.loads(json.dumps(setting))   # as JSON holds it (tuples become lists)
    return list(body.get("points", [])) if same else []


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
    parser.add_argument("--source", required=True, help="id (or its first 6+ characters) of a text run record")
    parser.add_argument("--to", default="amazon-electronics", help="the tuning target (a cross-fitted text task)")
    parser.add_argument("--protocols", default="head-only,full", help="comma-separated transfer protocols")
    parser.add_argument("--lr", required=True, type=_floats, help="comma-separated learning rates")
    parser.add_argument("--samples", required=True, type=_floats, help="comma-separated samples per model")
    parser.add_argument("--fold", type=int, default=0, help="the fold predicted (its model trains on the others)")
    parser.add_argument("--tie", type=float, default=0.5, help="points within which the cheaper point wins")
    parser.add_argument("--data-dir", default=os.environ.get("CCBENCH_DATA"))
    parser.add_argument("--results-dir", default=None, help="where the source record is (default: ./results)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--resume", action="store_true",
                        help="keep the points --out already holds for the same setting (written after each point)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    code_state = git_state()   # the code that runs is the code at start
    target = catalog.tasks().get(args.to)   # an unknown task fails here, with a suggestion
    if args.to in TRACK_TARGETS:
        raise UserError(f"{args.to} is where the track reports text transfers: tune on another domain "
                        f"(e.g. --to amazon-electronics)")
    if target.modality != "text" or target.transfer_eval is None:
        raise UserError(f"{args.to} is not a cross-fitted text transfer target (its spec has no transfer_eval)")
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    rm = load_record_model(args.source, args.data_dir, args.results_dir, progress=not args.quiet)
    if rm.task.modality != "text":
        raise UserError(f"record {rm.record['id'][:12]} is a {rm.task.modality} run: the text transfer recipe "
                        f"is tuned from a text source")
    for protocol in protocols:
        apply_protocol(copy.deepcopy(rm.model), protocol)   # an unknown or n/a protocol fails before any work
    if not 0 <= args.fold < target.transfer_eval.folds:
        raise UserError(f"--fold {args.fold}: {args.to} has folds 0-{target.transfer_eval.folds - 1}")
    tier = rm.tier
    twork = make_workload(target, tier, args.data_dir, rm.record["seed"], record_backbone_path(rm.record),
                          progress=not args.quiet)
    fold = transfer_plan(target, twork, args.data_dir, check=not tier.eval_limit).folds[args.fold]
    out = Path(args.out or Path(__file__).resolve().parents[1] / "budgets" / "tuning"
               / f"{tier.name}-text-transfer-recipe.json")
    setting = {"source": rm.record["id"], "target": target.name, "fold": args.fold, "protocols": protocols,
               "base_recipe": tier.transfer_recipe("text").model_dump()}
    points = _finished_points(out, setting) if args.resume else []
    for samples in sorted(int(s) for s in args.samples):   # the cheapest points first: a stopped run has them
        for lr in args.lr:
            if any((p["lr"], p["samples"]) == (lr, samples) for p in points):
                continue
            by_protocol = {p: fold_score(rm, twork, fold, p, lr, samples, progress=not args.quiet) for p in protocols}
            score = sum(r["score"] for r in by_protocol.values()) / len(by_protocol)
            points.append({"lr": lr, "samples": samples, "score": round(score, 3), "by_protocol": by_protocol})
            print(json.dumps(points[-1]), flush=True)
            _write(out, {"complete": False, "setting": setting, "points": points, "git": code_state})
    chosen = choose(points, args.tie)
    body = {"complete": True, "setting": setting, "kind": "recipe-tuning", "recipe": "text transfer", "budget": {"name": tier.name, "version": tier.version},
            "source": {"record_id": rm.record["id"], "method": rm.record["method"]["name"], "task": rm.task.name,
                       "task_version": rm.task.version, "seed": rm.record["seed"]},
            "target": {"name": target.name, "version": target.version, "fold": args.fold,
                       "folds": target.transfer_eval.folds},
            "protocols": protocols, "selected_on": f"{target.name} fold {args.fold} (not a track target)",
            "rule": f"best mean score over the protocols; within {args.tie} points the fewest samples, then the "
                    f"smaller lr",
            "base_recipe": tier.transfer_recipe("text").model_dump(), "points": points, "chosen": chosen,
            "git": code_state, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    _write(out, body)
    print(f"chosen: lr={chosen['lr']:g}, samples={chosen['samples']} (mean over {', '.join(protocols)} "
          f"{chosen['score']:.2f}); wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
