"""``ccbench run``: one method on one task under one budget tier, start to end.

data -> shared backbone (pretrained if missing) -> method fine-tuned under the tier's budget (or found in
the trained-model store) -> knob chosen on the calibration split -> eval split: predictions + traces ->
useful MACs (trace x cost table), executed MACs (fvcore), latency vs dense (interleaved) -> one record
per knob value.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from ccbench.common import catalog
from ccbench.common.errors import UserError, check_seed
from ccbench.common.messages import say
from ccbench.common.method_meta import constant_statistics, method_version
from ccbench.common.provenance import git_state, method_provenance
from ccbench.common.specs import BudgetSpec, TaskSpec
from ccbench.data.image_data import cache_root
from ccbench.measurement.evaluate import evaluate_split
from ccbench.measurement.measure import run_metrics
from ccbench.reporting.record_schema import NO_KNOB
from ccbench.reporting.records import write_record
from ccbench.training.distributed import stamp_for_commit
from ccbench.training.grid import GridPoint, calibrate_grid, domain_step, grid_entries, values_of
from ccbench.training.knobs import (
    CalibrationPoint,
    calibrate_knob,
    calibration_point,
    check_knob_values,
    has_knob,
    knob_label,
    knob_settings,
    parse_knob,
)
from ccbench.training.model_store import (
    BuiltModel,
    MissingTrainedModel,
    build_for_run,
    load_trained,
    save_trained,
    training_lock,
)
from ccbench.training.run_context import RunContext
from ccbench.training.train import method_loss, train
from ccbench.training.workload import make_workload

from .source_check import check_source_model

DEFAULT_MAX_COMPUTE = 0.6        # knob chosen on calibration: best accuracy at <= this share of dense


def run_method(method: str, task: str = "imagenette", budget: str = "cpu", data_dir: str | None = None,
               seed: int | None = None, knob: str | None = None, results_dir: str | None = None,
               backbone_path: str | None = None, resume: bool = False, progress: bool = True,
               train_only: bool = False, grid: list[float] | None = None) -> list[Path]:
    """Train (if the method trains) and measure ``method`` on ``task`` under ``budget``; write one
    record per knob value and return their paths. A knob that needs retraining trains one model per
    value; ``train_only`` stops after training (the trained model is cached for a later run). ``grid``
    (targets in % of dense useful MACs, :mod:`ccbench.training.grid`) chooses the knob values on the
    calibration split instead; for a knob that needs retraining, among the ``knob`` values given (else
    the knob's sweep)."""
    started = time.time()
    code_state = git_state()
    meta = catalog.methods().metadata(method)
    task_spec: TaskSpec = catalog.tasks().get(task)
    tier: BudgetSpec = catalog.budgets().get(budget)
    if task_spec.shift is not None and task_spec.shift.eval_only:
        raise UserError(f"task {task_spec.name!r} is evaluation-only (a shift target): measure a trained run on it "
                        f"with `ccbench shift <record id> --to {task_spec.name}`")
    if task_spec.modality not in meta["modalities"]:
        raise UserError(f"method {method!r} does not apply to {task_spec.modality} tasks "
                        f"(it supports: {', '.join(meta['modalities'])})")
    if tier.device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"budget {budget!r} needs a CUDA GPU and none is visible; use --budget cpu")
    knob_values = parse_knob(knob, meta["knob"])
    if grid and not has_knob(meta["knob"]):
        raise UserError(f"method {method!r} has no knob, so no compute grid: drop --grid (dense is the 100 % point)")
    if grid and knob_values is not None and not meta["knob"].get("needs_retraining"):
        raise UserError(f"--grid chooses {meta['knob']['name']!r} on the calibration split: drop --knob")
    seed = tier.seeds[0] if seed is None else check_seed(seed)
    if tier.threads:
        torch.set_num_threads(tier.threads)
    torch.manual_seed(seed)

    work = make_workload(task_spec, tier, data_dir, seed, backbone_path, progress)
    ctx = RunContext(task_spec, tier, seed, work, results_dir, progress, resume, started, code_state)
    knob_meta, measure = meta["knob"], not train_only
    if grid and knob_meta.get("trains_per_grid_target"):
        return _per_target_grid(ctx, method, meta, grid, measure)
    if not (knob_meta.get("needs_retraining") and has_knob(knob_meta)):
        return _train_and_measure(ctx, method, meta, {}, knob_values, "user" if knob_values is not None else None,
                                  measure, grid=grid)
    if grid:
        return _retrain_grid(ctx, method, meta, grid, knob_values or list(knob_meta["sweep"]), measure)
    chosen_by = "user" if knob_values is not None else "default (the knob needs retraining)"
    paths = []
    for value in knob_values if knob_values is not None else [knob_meta["default"]]:
        paths += _train_and_measure(ctx, method, meta, knob_settings(knob_meta, value), [value], chosen_by, measure)
    return paths


def _retrain_grid(ctx: RunContext, method: str, meta: dict, targets: list[float], candidates: list,
                  measure: bool) -> list[Path]:
    """The compute grid of a knob that needs retraining: each candidate value's share of dense measured on
    the calibration split with the untrained model, the nearest per target trained and measured (its
    share measured again on the trained model before it is recorded)."""
    knob = meta["knob"]
    work = ctx.work

    def untrained(value):
        built = _build(ctx, method, meta, knob_settings(knob, value))
        model = built.model.to(ctx.device).eval()
        point = calibration_point(model, None, work, work.table.with_units(model.cost_units()),
                                  ctx.tier.eval_batch_size, ctx.device, ctx.seed)
        return dataclasses.replace(point, knob=value)

    if knob.get("value_is_share"):   # the knob is the share aimed at: train at the targets themselves
        preflight = [GridPoint(t, CalibrationPoint(t / 100, float("nan"), t / 100)) for t in targets]
    else:
        preflight, _ = calibrate_grid(untrained, candidates, targets, max_refine=0)
    paths = []
    for value in values_of(preflight):
        chosen = [g.target for g in preflight if g.point.knob == value]
        say(f"grid: {knob['name']}={value} for {', '.join(f'{t:g} %' for t in chosen)} of dense")
        paths += _train_and_measure(ctx, method, meta, knob_settings(knob, value), [value],
                                    "grid: the target share itself" if knob.get("value_is_share") else
                                    "grid: nearest candidate by the untrained model's share of dense", measure,
                                    retrained_targets=chosen)
    return paths


def _per_target_grid(ctx: RunContext, method: str, meta: dict, targets: list[float], measure: bool) -> list[Path]:
    """The compute grid of a knob whose reach is set in training (``trains_per_grid_target``): one model per
    target, built with ``compute_target`` = the target's share of dense, its knob then calibrated to that
    target on its own calibration split."""
    paths = []
    for target in targets:
        say(f"grid {target:g} %: {method} trained towards {target:g} % of dense, then its "
            f"{meta['knob']['name']} calibrated")
        paths += _train_and_measure(ctx, method, meta, {"compute_target": target / 100}, None, None, measure,
                                    grid=[target], trained_for_target=True)
    return paths


def _fine_tune_or_load(ctx: RunContext, method: str, meta: dict, built: BuiltModel) -> dict:
    """Give ``built.model`` its trained weights: another method's (``evaluates_checkpoint_of``), a cached
    fine-tuned copy, or a fresh fine-tune under the tier's budget. Returns the budget consumed."""
    model, path, work = built.model, built.path, ctx.work
    consumed = {"samples": 0, "steps": 0, "train_wall_s": 0.0, "est_train_gmacs": 0.0,
                "label": "no training (0 samples)"}
    if built.source:
        if not path.exists():
            trained = train_cached_model(ctx, built.source, built.settings)
            assert trained == path, f"{built.source} trained into {trained.name}, {method} looks for {path.name}"
        check_source_model(ctx, built.source, path)   # the model that wrote the source's records, or refused
        consumed = load_trained(model, path)
        consumed = {**consumed, "label": f"evaluates {built.source}'s fine-tuned model ({consumed['label']})"}
        say(f"evaluating {built.source}'s fine-tuned model {path.name}")
    elif meta["trains"]:
        with training_lock(path):   # a process training this very model first: wait, then reuse it
            if path.exists():
                consumed = load_trained(model, path)
                say(f"reusing the fine-tuned model {path.name} ({consumed['samples']} samples)")
            else:
                calib = work.splits["calibration"]
                model.to(ctx.device).prepare(work.inputs(calib, torch.arange(min(64, len(calib))), ctx.device))
                recipe = work.recipe
                say(f"fine-tuning {method} for {recipe.samples} samples (budget {ctx.tier.name})")
                state = cache_root() / "train_state" / f"{built.run_name}.pt"
                result = train(model, method_loss(recipe.label_smoothing), recipe, work.train_data(work.splits["train"]),
                               None, ctx.seed, state_path=state,
                               resume=ctx.resume, device=ctx.device, desc=f"finetune {method}", progress=ctx.progress)
                consumed = {"samples": result.samples, "steps": result.steps,
                            "train_wall_s": round(result.wall_s, 1),
                            "est_train_gmacs": round(3 * result.samples * work.table.dense_macs() / 1e9, 1),
                            "label": "fine-tuned; est_train_gmacs = 3 x samples x dense forward GMACs "
                                     "(text: of a sample of the task's maximum length)"}
                save_trained(model, consumed, path)
                state.unlink(missing_ok=True)   # the resume state is spent once the model is saved (~2.5x its size)
    return consumed


def train_cached_model(ctx: RunContext, source: str, config: dict) -> Path:
    """Train ``source``'s model with ``config`` (same tier, task and seed) when the store lacks it: the model
    another method evaluates or starts from, or the model of a record that a shift or transfer starts from.
    Returns where it is cached."""
    meta = catalog.methods().metadata(source)
    settings = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items())
    say(f"{source}'s fine-tuned model{f' ({settings})' if settings else ''} is not in the cache: training it first "
        f"({ctx.tier.name}, {ctx.task.name}, seed {ctx.seed})")
    built = _build(ctx, source, meta, config)
    _fine_tune_or_load(ctx, source, meta, built)
    return built.path


def _build(ctx: RunContext, method: str, meta: dict, config: dict) -> BuiltModel:
    """:func:`build_for_run`, training first the fine-tuned model it starts from when the store lacks it."""
    try:
        return build_for_run(method, meta, config, ctx.work, ctx.tier, ctx.task, ctx.seed)
    except MissingTrainedModel as missing:
        check_source_model(ctx, missing.method, train_cached_model(ctx, missing.method, missing.config), strict=False)
    return build_for_run(method, meta, config, ctx.work, ctx.tier, ctx.task, ctx.seed)


def _train_and_measure(ctx: RunContext, method: str, meta: dict, config: dict, knob_values: list | None,
                       chosen_by: str | None, measure: bool = True, grid: list[float] | None = None,
                       retrained_targets: list[float] | None = None,
                       trained_for_target: bool = False) -> list[Path]:
    """Build ``method`` with ``config``, give it its trained weights, then (when ``measure``) measure each
    knob value (``None``: chosen on the calibration split; with ``grid``, one per grid target) and write
    one record per value. ``retrained_targets``: the grid targets this retrained model serves;
    ``trained_for_target``: the model was trained towards its one ``grid`` target (said in the record's
    grid entries)."""
    work, tier, device, knob = ctx.work, ctx.tier, ctx.device, meta["knob"]
    built = _build(ctx, method, meta, config)
    model = built.model
    check_knob_values(model, knob, knob_values)
    consumed = _fine_tune_or_load(ctx, method, meta, built)
    if not measure:
        say(f"trained model at {built.path} (--train-only: nothing measured)")
        return []
    model.to(device).eval()
    table = work.table.with_units(model.cost_units())

    calibration, grid_points = [], []
    if retrained_targets:
        point = dataclasses.replace(calibration_point(model, None, work, table, tier.eval_batch_size, device,
                                                      ctx.seed), knob=knob_values[0])
        grid_points = [GridPoint(t, point) for t in retrained_targets]
    if knob_values is not None:
        chosen_by = chosen_by or "user"
    elif grid:
        grid_points, calibration = calibrate_grid(
            lambda v: calibration_point(model, v, work, table, tier.eval_batch_size, device, ctx.seed),
            model.calibration_sweep(knob["sweep"]), grid, integer=bool(knob.get("integer")), step=domain_step(knob))
        knob_values = values_of(grid_points)
        chosen_by = f"grid: calibrated to {', '.join(f'{t:g}' for t in grid)} % of dense useful MACs"
        for g in grid_points:
            say(f"grid {g.target:g} %: {knob['name']}={g.point.knob} reaches {g.reached:.1f} % on calibration"
                + (" (out of reach: nearest, marked)" if g.marked else ""))
    elif has_knob(knob):
        calibration, knob_values, chosen_by = calibrate_knob(model, knob, work, table, tier.eval_batch_size,
                                                             device, DEFAULT_MAX_COMPUTE, ctx.seed)
    else:
        knob_values, chosen_by = [None], NO_KNOB

    dense_ref = catalog.methods().get("dense").build(work.new_backbone()).to(device).eval()
    eval_split = work.splits["eval"]
    paths = []
    for value in knob_values:
        if value is not None:
            model.set_knob(value)
        say(f"evaluating on {ctx.task.eval_split} ({len(eval_split)} samples)")
        ev = evaluate_split(model, work, eval_split, tier.eval_batch_size, device, ctx.progress)
        metrics = run_metrics(model, dense_ref, ev, work, table, tier, ctx.seed, device)
        if "routing" in metrics:
            metrics["routing"]["constant_by_construction"] = constant_statistics(meta, model.knob)
        record = ctx.record({
            "task": {"name": ctx.task.name, "version": ctx.task.version, "modality": ctx.task.modality,
                     "data_hash": eval_split.data_hash, "eval_split": ctx.task.eval_split, "n_eval": len(eval_split),
                     "train_data_hash": work.splits["train"].data_hash,
                     "main_score": ctx.task.main_score, "calibration": ctx.task.calibration.model_dump()},
            "method": {"name": method, "family": meta["family"], "paper": meta["paper"],
                       "version": method_version(meta, ctx.task.modality),
                       "config": model.method_config(), "execution": model.execution,
                       "knob": {"name": knob["name"], "value": value, "direction": knob["direction"],
                                "chosen_by": chosen_by},
                       "starts_from": built.start_run,
                       "provenance": _method_provenance(method),
                       "calibration_sweep": [vars(p) for p in calibration],
                       **({"grid": [{**e, "trained_for_target": True} if trained_for_target else e
                                    for e in grid_entries(grid_points, value)]} if grid_points else {})},
            "budget": {"name": tier.name, "version": tier.version, "finetune": work.recipe.model_dump(),
                       "consumed": consumed},
            "seed": ctx.seed,
            "backbone": work.backbone_record,
            "metrics": metrics,
        })
        out = write_record(stamp_for_commit(record), ev.ids, ev.labels, ev.predictions, ev.trace, ctx.results_dir)
        paths.append(out)
        _print_summary(record, out)
    return paths


def _method_provenance(method: str) -> dict:
    """Where ``method``'s code comes from (:func:`ccbench.common.provenance.method_provenance`)."""
    entry = catalog.methods().entry(method)
    module = entry.loader.partition(":")[0] if isinstance(entry.loader, str) else ""
    return method_provenance(entry.source, module)


def _print_summary(record: dict, path: Path) -> None:
    m = record["metrics"]
    k = record["method"]["knob"]
    knob = f" {knob_label(k['name'], k['value'])}" if k["value"] is not None else ""
    lat = m["latency"]
    score = m["main_score"]
    print(f"{record['method']['name']}{knob} on {record['task']['name']} ({record['budget']['name']}): "
          f"{score['name']} {score['value']:.2f} [95% CI {score['ci95'][0]:.2f}-{score['ci95'][1]:.2f}], "
          f"useful {m['useful_gmacs']['mean']:.4f} GMACs ({m['useful_fraction_of_dense']:.1%} of dense), "
          f"executed/useful b1 {m['executed_over_useful']['batch1']:.3f}, "
          f"speedup b1 {lat['batch1']['speedup']:.2f}x b{lat['batchN']['batch_size']} "
          f"{lat['batchN']['speedup']:.2f}x (ideal b1 {lat['batch1']['ideal_speedup']:.2f}x)\n  record: {path}")
    for batch in ("batch1", "batchN"):
        warning = lat[batch].get("check", {}).get("warning")
        if warning:
            print(f"  warning ({batch}): {warning}")
