"""``ccbench run``: one method on one task under one budget tier, start to end.

data -> shared backbone (pretrained if missing) -> method fine-tuned under the tier's budget ->
knob chosen on the calibration split -> eval split: predictions + traces -> useful MACs (trace x
cost table), executed MACs (fvcore), latency vs dense (interleaved) -> one record per knob value.
"""
from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import __version__, catalog
from .atomic import atomic_torch_save
from .augment import normalize, resize
from .backbones import count_parameters
from .cost import ViTCostTable, executed_macs, useful_macs
from .errors import UserError
from .evaluate import Evaluation, evaluate
from .evaluate import batches as eval_batches
from .image_data import ImageSplit, cache_root, task_splits
from .latency import interleaved_latency
from .pretrain import find_backbone, load_backbone, pretrain
from .provenance import content_hash, git_state, hardware
from .records import finalize, write_record
from .specs import BudgetSpec, TaskSpec
from .stats import bootstrap_ci, distribution
from .train import train

MASKED_COMPUTE_TOLERANCE = 0.02  # executed > useful by more than this fraction is flagged
DEFAULT_MAX_COMPUTE = 0.6        # knob chosen on calibration: best accuracy at <= this share of dense


def say(msg: str) -> None:
    """Progress message on stderr."""
    print(f"[ccbench] {msg}", file=sys.stderr, flush=True)


def parse_knob(text: str | None, knob_name: str | None) -> list[float] | None:
    """``"threshold=0.9,0.99"`` (or ``"0.9,0.99"``) -> ``[0.9, 0.99]``; checks the knob's name.

    >>> parse_knob("threshold=0.5,0.9", "threshold")
    [0.5, 0.9]
    >>> parse_knob("r=0,2", "r")   # integers stay integers (record values, table labels)
    [0, 2]
    """
    if text is None:
        return None
    name, _, values = text.rpartition("=")
    if name and name != knob_name:
        raise UserError(f"this method's knob is {knob_name!r}, not {name!r} (use --knob {knob_name}=...)")
    if knob_name is None:
        raise UserError("this method has no knob; drop --knob")
    try:
        return [_number(v.strip()) for v in values.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--knob values must be numbers, got {values!r}") from None


def _number(text: str) -> int | float:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5 (ValueError otherwise)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


@dataclass
class CalibrationPoint:
    """One knob value measured on the calibration split: top-1 (%) and useful share of dense."""

    knob: float
    top1: float
    useful_fraction: float


def choose_knob(points: list[CalibrationPoint], max_fraction: float) -> tuple[CalibrationPoint, bool]:
    """Best calibration top-1 among points at ``<= max_fraction`` of dense useful MACs (ties: less
    compute). When none qualifies, the cheapest point and ``False``.

    >>> pts = [CalibrationPoint(0.5, 80.0, 0.4), CalibrationPoint(0.9, 85.0, 0.55), CalibrationPoint(0.99, 90.0, 0.7)]
    >>> choose_knob(pts, 0.6)
    (CalibrationPoint(knob=0.9, top1=85.0, useful_fraction=0.55), True)
    """
    ok = [p for p in points if p.useful_fraction <= max_fraction]
    if ok:
        return max(ok, key=lambda p: (p.top1, -p.useful_fraction)), True
    return min(points, key=lambda p: p.useful_fraction), False


def _seeded_subset(split: ImageSplit, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(len(split), generator=g)[:n]


def _images(split: ImageSplit, index: torch.Tensor, px: int, device: str) -> torch.Tensor:
    return resize(normalize(split.images[index].to(device)), px)


def _run_name(method: str, budget: BudgetSpec, task: TaskSpec, seed: int, backbone_sha: str,
              config: dict) -> str:
    return (f"{budget.name}-{task.name}-{method}-s{seed}-{backbone_sha[:12]}-"
            f"{content_hash([config, budget.finetune.model_dump()])[:10]}")


def _save_trained(model, consumed: dict, path: Path) -> None:
    atomic_torch_save({"model": model.state_dict(), "consumed": consumed}, path)


def _load_trained(model, path: Path) -> dict:
    blob = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(blob["model"])
    return blob["consumed"]


def _fine_tune_or_load(model, method: str, meta: dict, source: str | None, trained_path: Path, run_name: str,
                       tier: BudgetSpec, task_spec: TaskSpec, splits: dict, px: int, seed: int, device: str,
                       resume: bool, progress: bool, dense_macs: int) -> dict:
    """Give ``model`` its trained weights: another method's (``evaluates_checkpoint_of``), a cached
    fine-tuned copy, or a fresh fine-tune under the tier's budget. Returns the budget consumed."""
    consumed = {"samples": 0, "steps": 0, "train_wall_s": 0.0, "est_train_gmacs": 0.0,
                "label": "no training (0 samples)"}
    if source:
        if not trained_path.exists():
            raise UserError(f"{method!r} evaluates {source!r}'s fine-tuned model, which is not in the cache "
                            f"yet: run `ccbench run --method {source} --task {task_spec.name} --budget "
                            f"{tier.name}` first")
        consumed = _load_trained(model, trained_path)
        consumed = {**consumed, "label": f"evaluates {source}'s fine-tuned model ({consumed['label']})"}
        say(f"evaluating {source}'s fine-tuned model {trained_path.name}")
    elif meta["trains"]:
        if trained_path.exists():
            consumed = _load_trained(model, trained_path)
            say(f"reusing the fine-tuned model {trained_path.name} ({consumed['samples']} samples)")
        else:
            if hasattr(model, "prepare"):
                calib = splits["calibration"]
                model.to(device).prepare(_images(calib, torch.arange(min(64, len(calib))), px, device))
            say(f"fine-tuning {method} for {tier.finetune.samples} samples (budget {tier.name})")

            def loss_fn(m, x, y):
                out = m(x)
                return m.loss(out, y, tier.finetune.label_smoothing), out.logits

            state_path = cache_root() / "train_state" / f"{run_name}.pt"
            result = train(model, loss_fn, tier.finetune, splits["train"], px, seed, state_path=state_path,
                           resume=resume, device=device, desc=f"finetune {method}", progress=progress)
            consumed = {"samples": result.samples, "steps": result.steps,
                        "train_wall_s": round(result.wall_s, 1),
                        "est_train_gmacs": round(3 * result.samples * dense_macs / 1e9, 1),
                        "label": "fine-tuned; est_train_gmacs = 3 x samples x dense forward GMACs"}
            _save_trained(model, consumed, trained_path)
    return consumed


def _calibrate_knob(model, knob_meta: dict, calib: ImageSplit, table: ViTCostTable, px: int, batch_size: int,
                    device: str, max_compute: float) -> tuple[list[CalibrationPoint], list, str]:
    """Sweep the knob on the calibration split; return the sweep, the chosen value (as a one-item
    list) and how it was chosen."""
    points = []
    for v in knob_meta["sweep"] or [knob_meta["default"]]:
        model.set_knob(v)
        ev = evaluate(model, calib, px, batch_size, device)
        frac = useful_macs(table, ev.trace).mean().item() / table.dense_macs()
        points.append(CalibrationPoint(v, round(ev.top1, 3), round(frac, 4)))
    best, met = choose_knob(points, max_compute)
    chosen_by = (f"calibration: best calibration top-1 at <= {max_compute:.0%} of dense useful MACs"
                 if met else f"calibration: no value reached <= {max_compute:.0%} of dense; cheapest taken")
    say(f"knob {knob_meta['name']}={best.knob} ({chosen_by}; calibration top-1 {best.top1:.1f}%, "
        f"{best.useful_fraction:.1%} of dense MACs)")
    return points, [best.knob], chosen_by


def run_method(method: str, task: str = "imagenette", budget: str = "cpu", data_dir: str | None = None,
               seed: int | None = None, knob: str | None = None, results_dir: str | None = None,
               backbone_path: str | None = None, resume: bool = False, progress: bool = True,
               max_compute: float = DEFAULT_MAX_COMPUTE, method_config: dict | None = None,
               train_only: bool = False) -> list[Path]:
    """Train (if the method trains) and measure ``method`` on ``task`` under ``budget``; write one
    record per knob value and return their paths. A knob that needs retraining trains one model per
    value; ``train_only`` stops after training (the trained model is cached for a later run)."""
    t_start = time.time()
    code_state = git_state()  # the code this process imported, not whatever the checkout holds later
    methods, tasks, budgets = catalog.methods(), catalog.tasks(), catalog.budgets()
    meta = methods.metadata(method)
    task_spec: TaskSpec = tasks.get(task)
    tier: BudgetSpec = budgets.get(budget)
    if task_spec.modality not in meta["modalities"]:
        raise UserError(f"method {method!r} does not apply to {task_spec.modality} tasks "
                        f"(it supports: {', '.join(meta['modalities'])})")
    if tier.device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"budget {budget!r} needs a CUDA GPU and none is visible; use --budget cpu")
    knob_values = parse_knob(knob, meta["knob"]["name"] if meta["knob"]["name"] != "none" else None)
    seed = tier.seeds[0] if seed is None else seed
    device = tier.device
    if tier.threads:
        torch.set_num_threads(tier.threads)
    torch.manual_seed(seed)

    say(f"data: {task_spec.name} v{task_spec.version} at {tier.cache_px}px")
    splits = task_splits(task_spec, tier.cache_px, data_dir)
    eval_split = splits["eval"]
    if tier.eval_limit:
        eval_split = eval_split.subset(torch.arange(min(tier.eval_limit, len(eval_split))))

    # -- backbone --
    path = Path(backbone_path) if backbone_path else find_backbone(tier, task_spec, seed)
    if path is None:
        say(f"no {tier.name}/{task_spec.name} backbone yet: pretraining it first "
            f"({tier.pretrain.samples} samples; `ccbench pretrain` does this alone)")
        path = pretrain(tier, task_spec, data_dir, seed=seed, progress=progress).path
    if not Path(path).exists():
        raise UserError(f"backbone checkpoint {path} does not exist")
    backbone, ckpt = load_backbone(path)
    say(f"backbone {Path(path).name} sha256 {ckpt.sha256[:12]} (pretrain {tier.name}: "
        f"{ckpt.meta.get('eval_top1', float('nan')):.2f}% {task_spec.eval_split})")
    px = backbone.config.img_size

    # -- one trained model per knob value when the knob needs retraining, else one for all --
    knob_meta = meta["knob"]
    config = dict(method_config or {})
    if knob_meta.get("needs_retraining") and knob_meta["name"] != "none":
        values = knob_values if knob_values is not None else [knob_meta["default"]]
        paths = []
        for value in values:
            paths += _train_and_measure(method, meta, {**config, knob_meta["name"]: value}, [value], "user"
                                        if knob_values is not None else "default (the knob needs retraining)",
                                        backbone, ckpt, path, tier, task_spec, splits, eval_split, px, seed,
                                        device, resume, progress, max_compute, results_dir, train_only, t_start, code_state)
        return paths
    return _train_and_measure(method, meta, config, knob_values, "user" if knob_values is not None else None,
                              backbone, ckpt, path, tier, task_spec, splits, eval_split, px, seed, device,
                              resume, progress, max_compute, results_dir, train_only, t_start, code_state)


def _train_and_measure(method, meta, config, knob_values, chosen_by, backbone, ckpt, path, tier, task_spec, splits,
                       eval_split, px, seed, device, resume, progress, max_compute, results_dir, train_only,
                       t_start, code_state) -> list[Path]:
    """Build ``method`` with ``config``, give it its trained weights, then measure each knob value
    (``None``: chosen on the calibration split) and write one record per value."""
    methods = catalog.methods()
    table = ViTCostTable.from_config(backbone.config)
    dense_macs = table.dense_macs()
    module = methods.get(method)
    model = module.build(copy.deepcopy(backbone), **config)
    source = meta.get("evaluates_checkpoint_of")
    trainer_config = (methods.get(source).build(copy.deepcopy(backbone), **config).method_config()
                      if source else model.method_config())
    run_name = _run_name(source or method, tier, task_spec, seed, ckpt.sha256, trainer_config)
    trained_path = cache_root() / "runs" / f"{run_name}.pt"
    consumed = _fine_tune_or_load(model, method, meta, source, trained_path, run_name, tier, task_spec,
                                  splits, px, seed, device, resume, progress, dense_macs)
    if train_only:
        say(f"trained model at {trained_path} (--train-only: nothing measured)")
        return []
    model.to(device).eval()
    table = table.with_units(model.cost_units())

    # -- knob: chosen on the calibration split unless given --
    calibration = []
    if knob_values is not None:
        chosen_by = chosen_by or "user"
    elif meta["knob"]["name"] != "none":
        calibration, knob_values, chosen_by = _calibrate_knob(model, meta["knob"], splits["calibration"], table,
                                                              px, tier.eval_batch_size, device, max_compute)
    else:
        knob_values, chosen_by = [None], "none"
    knob_meta = meta["knob"]

    dense_ref = methods.get("dense").build(copy.deepcopy(backbone)).to(device).eval()
    paths = []
    for value in knob_values:
        if value is not None:
            model.set_knob(value)
        say(f"evaluating on {task_spec.eval_split} ({len(eval_split)} samples)")
        ev = evaluate(model, eval_split, px, tier.eval_batch_size, device, progress=progress)
        metrics = _metrics(model, dense_ref, ev, eval_split, table, tier, px, seed, device)
        record = finalize({
            "ccbench_version": __version__,
            "git": code_state,
            "task": {"name": task_spec.name, "version": task_spec.version, "data_hash": eval_split.data_hash,
                     "eval_split": task_spec.eval_split, "n_eval": len(eval_split),
                     "calibration": task_spec.calibration.model_dump()},
            "method": {"name": method, "family": meta["family"], "paper": meta["paper"],
                       "config": model.method_config(), "execution": model.execution,
                       "knob": {"name": knob_meta["name"], "value": value, "direction": knob_meta["direction"],
                                "chosen_by": chosen_by},
                       "calibration_sweep": [vars(p) for p in calibration]},
            "budget": {"name": tier.name, "version": tier.version, "finetune": tier.finetune.model_dump(),
                       "consumed": consumed},
            "seed": seed,
            "backbone": {"sha256": ckpt.sha256, "file": Path(path).name,
                         "recipe_hash": ckpt.meta.get("recipe_hash"), "pretrain_eval_top1": ckpt.meta.get("eval_top1"),
                         "config": backbone.config.to_dict()},
            "metrics": metrics,
            "hardware": hardware(device),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "wall_s": round(time.time() - t_start, 1),
        })
        out = write_record(record, ev.ids, ev.labels, ev.logits.argmax(-1), ev.trace, results_dir)
        paths.append(out)
        _print_summary(record, out)
    return paths


def _metrics(model, dense_ref, ev: Evaluation, split: ImageSplit, table: ViTCostTable, tier: BudgetSpec,
             px: int, seed: int, device: str) -> dict:
    dense_macs = table.dense_macs()
    useful = useful_macs(table, ev.trace)
    correct = ev.correct.float()
    lo, hi = bootstrap_ci(correct, seed=seed)

    # executed MACs: fvcore on a seeded sample, one at a time and in batches
    audit = tier.audit
    idx = _seeded_subset(split, audit.samples_b1, seed)
    b1_exec, unsupported, uncalled = [], {}, set()
    for i in idx.tolist():
        res = executed_macs(model, _images(split, torch.tensor([i]), px, device))
        b1_exec.append(res.macs)
        for k, v in res.unsupported_ops.items():
            unsupported[k] = unsupported.get(k, 0) + v
        uncalled.update(res.uncalled_modules)
    useful_b1 = useful[idx].double()
    bidx = _seeded_subset(split, audit.batches * audit.batch_size, seed + 1)
    bn_exec, bn_useful = 0, 0.0
    for j in range(audit.batches):
        rows = bidx[j * audit.batch_size:(j + 1) * audit.batch_size]
        bn_exec += executed_macs(model, _images(split, rows, px, device)).macs
        bn_useful += useful[rows].sum().item()
    exec_b1 = torch.tensor(b1_exec, dtype=torch.float64)
    ratio_b1 = exec_b1.sum().item() / useful_b1.sum().item()
    ratio_bn = bn_exec / bn_useful

    # latency, interleaved with the dense model
    lat = tier.latency
    lidx = _seeded_subset(split, lat.samples_b1, seed + 2)
    b1_inputs = [_images(split, torch.tensor([i]), px, device) for i in lidx.tolist()]
    nidx = _seeded_subset(split, lat.batches * lat.batch_size, seed + 3)
    bn_inputs = [_images(split, nidx[j * lat.batch_size:(j + 1) * lat.batch_size], px, device)
                 for j in range(lat.batches)]
    b1 = interleaved_latency(model, dense_ref, b1_inputs, lat.warmup, device)
    bn = interleaved_latency(model, dense_ref, bn_inputs, lat.warmup, device)
    for r, timed in ((b1, lidx), (bn, nidx)):
        # ideal speedup over exactly the timed samples
        r["ideal_speedup"] = round(dense_macs / useful[timed].mean().item(), 4)
        r["efficiency"] = round(r["speedup"] / r["ideal_speedup"], 4)

    return {
        **model.extra_metrics(ev.trace, ev.labels, ev.logits.argmax(-1),
                              lambda: (x for _, x, _ in eval_batches(split, px, tier.eval_batch_size, device))),
        "top1": round(ev.top1, 3),
        "top1_ci95": [round(100 * lo, 3), round(100 * hi, 3)],
        "top1_ci_method": "percentile bootstrap over eval samples, 2000 resamples",
        "n_eval": len(ev.ids),
        "useful_gmacs": distribution(useful, 1e-9, digits=6),
        "dense_gmacs": round(dense_macs / 1e9, 6),
        "useful_fraction_of_dense": round(useful.mean().item() / dense_macs, 4),
        "executed_gmacs": {"batch1_per_sample": distribution(exec_b1, 1e-9, digits=6),
                           "batchN_per_sample_mean": round(bn_exec / (audit.batches * audit.batch_size) / 1e9, 6),
                           "batch_size": audit.batch_size, "audit_samples_b1": len(idx),
                           "audit_samples_bN": audit.batches * audit.batch_size},
        "executed_over_useful": {"batch1": round(ratio_b1, 4), "batchN": round(ratio_bn, 4)},
        "flag_executed_exceeds_useful": ratio_b1 > 1 + MASKED_COMPUTE_TOLERANCE,
        "fvcore_unsupported_ops": unsupported,
        "fvcore_uncalled_modules": sorted(uncalled),
        "params": count_parameters(model),
        "latency": {"batch1": b1, "batchN": bn, "threads": torch.get_num_threads(),
                    "speedup": "total dense time / total method time over the same inputs",
                    "ideal_speedup": "dense GMACs / mean useful GMACs of the timed samples",
                    "efficiency": "speedup / ideal_speedup"},
        "unit": "gmacs = 1e9 multiply-adds (fvcore convention); FLOPs = 2 x MACs",
    }


def _print_summary(record: dict, path: Path) -> None:
    m = record["metrics"]
    k = record["method"]["knob"]
    knob = f" {k['name']}={k['value']}" if k["value"] is not None else ""
    lat = m["latency"]
    print(f"{record['method']['name']}{knob} on {record['task']['name']} ({record['budget']['name']}): "
          f"top-1 {m['top1']:.2f}% [95% CI {m['top1_ci95'][0]:.2f}-{m['top1_ci95'][1]:.2f}], "
          f"useful {m['useful_gmacs']['mean']:.4f} GMACs ({m['useful_fraction_of_dense']:.1%} of dense), "
          f"executed/useful b1 {m['executed_over_useful']['batch1']:.3f}, "
          f"speedup b1 {lat['batch1']['speedup']:.2f}x b{lat['batchN']['batch_size']} "
          f"{lat['batchN']['speedup']:.2f}x (ideal b1 {lat['batch1']['ideal_speedup']:.2f}x)\n  record: {path}")
