"""``ccbench run``: one method on one task under one budget tier, start to end.

data -> shared backbone (pretrained if missing) -> method fine-tuned under the tier's budget ->
knob chosen on the calibration split -> eval split: predictions + traces -> useful MACs (trace x
cost table), executed MACs (fvcore), latency vs dense (interleaved) -> one record per knob value.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import __version__, catalog
from .backbones import count_parameters
from .cost import CostTable, dense_macs_per_sample, executed_macs, useful_macs
from .errors import UserError, check_seed
from .evaluate import Evaluation, evaluate_inputs
from .image_data import cache_root
from .latency import interleaved_latency
from .messages import say
from .provenance import content_hash, git_state, hardware
from .record_schema import NO_KNOB
from .records import finalize, write_record
from .safefile import load_tensors, save_tensors
from .specs import BudgetSpec, TaskSpec
from .stats import distribution
from .trace import declared_padding_macs
from .train import train
from .workload import make_workload

MASKED_COMPUTE_TOLERANCE = 0.02  # executed > useful by more than this fraction is flagged
DEFAULT_MAX_COMPUTE = 0.6        # knob chosen on calibration: best accuracy at <= this share of dense


def parse_knob(text: str | None, knob: dict) -> list[float] | None:
    """``"threshold=0.9,0.99"`` (or ``"0.9,0.99"``) -> ``[0.9, 0.99]``, each value checked against the
    knob's declared domain (``knob``: the method's ``METADATA["knob"]``) before any work is done.

    >>> knob = {"name": "r", "integer": True, "minimum": 0}
    >>> parse_knob("r=0,2", knob)   # integers stay integers (record values, table labels)
    [0, 2]
    >>> parse_knob("r=0.5", knob)
    Traceback (most recent call last):
    ...
    ccbench.errors.UserError: --knob r=0.5: r takes an integer >= 0
    """
    if text is None:
        return None
    from .method_meta import KnobMetadata

    name, _, values = text.rpartition("=")
    if knob["name"] == NO_KNOB:
        raise UserError(f"this method has no knob; drop --knob {text}")
    if name and name != knob["name"]:
        raise UserError(f"this method's knob is {knob['name']!r}, not {name!r} (use --knob {knob['name']}=...)")
    items = [v.strip() for v in values.split(",")]
    if not all(items):
        raise UserError(f"--knob {text} has an empty value; e.g. --knob {knob['name']}={knob.get('default')}")
    domain = KnobMetadata.model_validate({"default": None, "direction": "none",
                                          **{k: v for k, v in knob.items() if k not in ("default", "sweep")}})
    parsed = []
    for item in items:
        try:
            parsed.append(domain.check(_number(item)))
        except ValueError:
            raise UserError(f"--knob {knob['name']}={item}: {knob['name']} takes {domain.domain()}") from None
    return parsed


def _number(text: str) -> int | float:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5 (ValueError otherwise)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


@dataclass
class CalibrationPoint:
    """One knob value measured on the calibration split: main score (top-1 % for images; the task's
    main GLUE score for text, kept in the ``top1`` field) and useful share of dense."""

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


def _seeded_subset(split, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(len(split), generator=g)[:n]


def _run_name(method: str, budget: BudgetSpec, task: TaskSpec, seed: int, work, config: dict) -> str:
    """Cache name of a trained model: everything it was trained from and how (the backbone, the
    training data's hash, the method config, the recipe and the modality's training settings, e.g.
    frozen word embeddings)."""
    ident = [config, work.recipe.model_dump(), work.train_settings, work.splits["train"].data_hash]
    return f"{budget.name}-{task.name}-{method}-s{seed}-{work.sha256[:12]}-{content_hash(ident)[:10]}"


def _save_trained(model, consumed: dict, path: Path) -> None:
    """Cache a trained model: its ``state_dict`` as safetensors, ``consumed`` (the training budget
    spent) as JSON in the header; written atomically."""
    save_tensors(model.state_dict(), {"consumed": consumed}, path)


def _load_trained(model, path: Path) -> dict:
    """Load the cached weights at ``path`` into ``model`` (never unpickles); returns ``consumed``."""
    fix = f"delete {path} and re-run to train it again"
    state, meta = load_tensors(path, fix)
    if not isinstance(meta.get("consumed"), dict):
        raise UserError(f"{path} has no 'consumed' budget in its header; {fix}")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(f"{path} does not fit this model ({str(err).splitlines()[0]}); {fix}") from None
    return meta["consumed"]


def _fine_tune_or_load(model, method: str, meta: dict, source: str | None, trained_path: Path, run_name: str,
                       tier: BudgetSpec, task_spec: TaskSpec, work, seed: int, device: str,
                       resume: bool, progress: bool, dense_macs: float) -> dict:
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
                calib = work.splits["calibration"]
                model.to(device).prepare(work.inputs(calib, torch.arange(min(64, len(calib))), device))
            recipe = work.recipe
            say(f"fine-tuning {method} for {recipe.samples} samples (budget {tier.name})")

            def loss_fn(m, x, y):
                out = m(x)
                return m.loss(out, y, recipe.label_smoothing), out.logits

            state_path = cache_root() / "train_state" / f"{run_name}.pt"
            result = train(model, loss_fn, recipe, work.train_data(work.splits["train"]), None, seed,
                           state_path=state_path, resume=resume, device=device, desc=f"finetune {method}",
                           progress=progress)
            consumed = {"samples": result.samples, "steps": result.steps,
                        "train_wall_s": round(result.wall_s, 1),
                        "est_train_gmacs": round(3 * result.samples * dense_macs / 1e9, 1),
                        "label": "fine-tuned; est_train_gmacs = 3 x samples x dense forward GMACs "
                                 "(text: of a sample of the task's maximum length)"}
            _save_trained(model, consumed, trained_path)
    return consumed


def evaluate_split(model, work, split, batch_size: int, device: str, progress: bool = False) -> Evaluation:
    """``model``'s logits, labels, ids and trace over every sample of ``split``, in order."""
    return evaluate_inputs(model, work.batches(split, batch_size, device), split.labels, split.ids,
                           -(-len(split) // batch_size), progress)


def _fine_tuned_backbone(method: str, work, tier: BudgetSpec, task_spec: TaskSpec, seed: int):
    """The backbone of ``method``'s fine-tuned model on this task (default config), and its run name:
    the starting point of a method that transforms a fine-tuned model (``starts_from``)."""
    model = catalog.methods().get(method).build(work.new_backbone())
    name = _run_name(method, tier, task_spec, seed, work, model.method_config())
    path = cache_root() / "runs" / f"{name}.safetensors"
    if not path.exists():
        raise UserError(f"this method starts from {method!r}'s fine-tuned model, which is not in the cache yet: "
                        f"run `ccbench run --method {method} --task {task_spec.name} --budget {tier.name}` first")
    _load_trained(model, path)
    say(f"starting from {method}'s fine-tuned model {path.name}")
    return model.backbone, name


def _calibrate_knob(model, knob_meta: dict, work, table: CostTable, batch_size: int, device: str,
                    max_compute: float, seed: int) -> tuple[list[CalibrationPoint], list, str]:
    """Sweep the knob on the calibration split; return the sweep, the chosen value (as a one-item
    list) and how it was chosen."""
    points = []
    calib = work.splits["calibration"]
    for v in model.calibration_sweep(knob_meta["sweep"]) or [knob_meta["default"]]:
        model.set_knob(v)
        ev = evaluate_split(model, work, calib, batch_size, device)
        frac = useful_macs(table, ev.trace).sum().item() / dense_macs_per_sample(table, ev.trace).sum().item()
        score = work.scores(ev.logits, ev.labels, seed)["main_score"]["value"]
        points.append(CalibrationPoint(v, round(score, 3), round(frac, 4)))
    best, met = choose_knob(points, max_compute)
    chosen_by = (f"calibration: best calibration score at <= {max_compute:.0%} of dense useful MACs"
                 if met else f"calibration: no value reached <= {max_compute:.0%} of dense; cheapest taken")
    say(f"knob {knob_meta['name']}={best.knob} ({chosen_by}; calibration score {best.top1:.1f}, "
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
    if task_spec.shift is not None and task_spec.shift.eval_only:
        raise UserError(f"task {task_spec.name!r} is evaluation-only (a shift target): measure a trained run on it "
                        f"with `ccbench shift <record id> --to {task_spec.name}`")
    if task_spec.modality not in meta["modalities"]:
        raise UserError(f"method {method!r} does not apply to {task_spec.modality} tasks "
                        f"(it supports: {', '.join(meta['modalities'])})")
    if tier.device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"budget {budget!r} needs a CUDA GPU and none is visible; use --budget cpu")
    knob_values = parse_knob(knob, meta["knob"])
    seed = tier.seeds[0] if seed is None else check_seed(seed)
    device = tier.device
    if tier.threads:
        torch.set_num_threads(tier.threads)
    torch.manual_seed(seed)

    work = make_workload(task_spec, tier, data_dir, seed, backbone_path, progress)

    # -- one trained model per knob value when the knob needs retraining, else one for all --
    knob_meta = meta["knob"]
    config = dict(method_config or {})
    if knob_meta.get("needs_retraining") and knob_meta["name"] != NO_KNOB:
        values = knob_values if knob_values is not None else [knob_meta["default"]]
        paths = []
        for value in values:
            paths += _train_and_measure(method, meta, {**config, knob_meta["name"]: value}, [value], "user"
                                        if knob_values is not None else "default (the knob needs retraining)",
                                        work, tier, task_spec, seed, device, resume, progress, max_compute,
                                        results_dir, train_only, t_start, code_state)
        return paths
    return _train_and_measure(method, meta, config, knob_values, "user" if knob_values is not None else None,
                              work, tier, task_spec, seed, device, resume, progress, max_compute, results_dir,
                              train_only, t_start, code_state)


def build_for_run(method: str, meta: dict, config: dict, work, tier: BudgetSpec, task_spec: TaskSpec, seed: int):
    """``method``'s untrained model with ``config`` on the workload's backbone (or on the fine-tuned
    backbone it ``starts_from``), and where its trained weights live: returns ``(model, source, run_name,
    trained_path, start_run)`` (``source``: the method whose checkpoint it evaluates, or None)."""
    methods = catalog.methods()
    starts_from = meta.get("starts_from", {}).get(work.modality)
    backbone, start_run = (_fine_tuned_backbone(starts_from, work, tier, task_spec, seed) if starts_from
                           else (work.new_backbone(), None))
    try:
        model = methods.get(method).build(backbone, **config)
    except ValueError as err:  # a knob value that needs retraining, out of range for this backbone
        if not config:
            raise
        settings = ", ".join(f"{k}={v}" for k, v in config.items())
        raise UserError(f"{method} cannot be built with {settings}: {err}") from None
    source = meta.get("evaluates_checkpoint_of")
    trainer_config = (methods.get(source).build(work.new_backbone(), **config).method_config()
                      if source else model.method_config())
    if start_run:
        trainer_config = {**trainer_config, "starts_from": start_run}
    run_name = _run_name(source or method, tier, task_spec, seed, work, trainer_config)
    return model, source, run_name, cache_root() / "runs" / f"{run_name}.safetensors", start_run


def _check_knob_values(model, knob_meta: dict, values: list | None) -> None:
    """Apply each user-given knob value to the untrained model once, so that a value the model
    refuses (beyond what the declared domain says, e.g. more blocks than the backbone has) fails
    before any training rather than after it."""
    if not values or knob_meta["name"] == NO_KNOB:
        return
    initial = model.knob
    for value in values:
        try:
            model.set_knob(value)
        except ValueError as err:
            raise UserError(f"--knob {knob_meta['name']}={value}: {err}") from None
    model.set_knob(initial)


def _train_and_measure(method, meta, config, knob_values, chosen_by, work, tier, task_spec, seed, device, resume,
                       progress, max_compute, results_dir, train_only, t_start, code_state) -> list[Path]:
    """Build ``method`` with ``config``, give it its trained weights, then measure each knob value
    (``None``: chosen on the calibration split) and write one record per value."""
    methods = catalog.methods()
    table = work.table
    dense_macs = table.dense_macs()
    model, source, run_name, trained_path, start_run = build_for_run(method, meta, config, work, tier, task_spec, seed)
    _check_knob_values(model, meta["knob"], knob_values)
    consumed = _fine_tune_or_load(model, method, meta, source, trained_path, run_name, tier, task_spec,
                                  work, seed, device, resume, progress, dense_macs)
    if train_only:
        say(f"trained model at {trained_path} (--train-only: nothing measured)")
        return []
    model.to(device).eval()
    table = table.with_units(model.cost_units())

    # -- knob: chosen on the calibration split unless given --
    calibration = []
    if knob_values is not None:
        chosen_by = chosen_by or "user"
    elif meta["knob"]["name"] != NO_KNOB:
        calibration, knob_values, chosen_by = _calibrate_knob(model, meta["knob"], work, table, tier.eval_batch_size,
                                                              device, max_compute, seed)
    else:
        knob_values, chosen_by = [None], "none"
    knob_meta = meta["knob"]

    dense_ref = methods.get("dense").build(work.new_backbone()).to(device).eval()
    eval_split = work.splits["eval"]
    paths = []
    for value in knob_values:
        if value is not None:
            model.set_knob(value)
        say(f"evaluating on {task_spec.eval_split} ({len(eval_split)} samples)")
        ev = evaluate_split(model, work, eval_split, tier.eval_batch_size, device, progress)
        metrics = _metrics(model, dense_ref, ev, work, table, tier, seed, device)
        record = finalize({
            "ccbench_version": __version__,
            "git": code_state,
            "task": {"name": task_spec.name, "version": task_spec.version, "modality": task_spec.modality,
                     "data_hash": eval_split.data_hash, "eval_split": task_spec.eval_split, "n_eval": len(eval_split),
                     "train_data_hash": work.splits["train"].data_hash,
                     "main_score": task_spec.main_score, "calibration": task_spec.calibration.model_dump()},
            "method": {"name": method, "family": meta["family"], "paper": meta["paper"],
                       "config": model.method_config(), "execution": model.execution,
                       "knob": {"name": knob_meta["name"], "value": value, "direction": knob_meta["direction"],
                                "chosen_by": chosen_by},
                       "starts_from": start_run,
                       "calibration_sweep": [vars(p) for p in calibration]},
            "budget": {"name": tier.name, "version": tier.version, "finetune": work.recipe.model_dump(),
                       "consumed": consumed},
            "seed": seed,
            "backbone": work.backbone_record,
            "metrics": metrics,
            "hardware": hardware(device),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "wall_s": round(time.time() - t_start, 1),
        })
        preds = ev.logits[:, 0] if ev.logits.shape[-1] == 1 else ev.logits.argmax(-1)
        out = write_record(record, ev.ids, ev.labels, preds, ev.trace, results_dir)
        paths.append(out)
        _print_summary(record, out)
    return paths


def _declared_padding(model, inputs: torch.Tensor, table: CostTable) -> float:
    """MACs the method declares it executed on padding for this call (``padding/*`` trace fields)."""
    with torch.no_grad():
        trace = model(inputs).trace
    return float(declared_padding_macs(trace, table.units).sum())


def _metrics(model, dense_ref, ev: Evaluation, work, table: CostTable, tier: BudgetSpec, seed: int,
             device: str) -> dict:
    split = work.splits["eval"]
    useful = useful_macs(table, ev.trace)
    dense = dense_macs_per_sample(table, ev.trace)

    # executed MACs: fvcore on a seeded sample, one at a time and in (length-grouped) batches
    audit = tier.audit
    idx = _seeded_subset(split, audit.samples_b1, seed)
    b1_exec, unsupported, uncalled = [], {}, set()
    b1_pad = 0.0
    for i in idx.tolist():
        x = work.inputs(split, torch.tensor([i]), device)
        res = executed_macs(model, x)
        b1_exec.append(res.macs)
        b1_pad += _declared_padding(model, x, table)
        for k, v in res.unsupported_ops.items():
            unsupported[k] = unsupported.get(k, 0) + v
        uncalled.update(res.uncalled_modules)
    useful_b1 = useful[idx].double()
    bidx = _seeded_subset(split, audit.batches * audit.batch_size, seed + 1)
    bn_exec, bn_pad = 0, 0.0
    for x in work.grouped(split, bidx, audit.batch_size, device):
        bn_exec += executed_macs(model, x).macs
        bn_pad += _declared_padding(model, x, table)
    bn_useful = useful[bidx].sum().item()
    exec_b1 = torch.tensor(b1_exec, dtype=torch.float64)
    ratio_b1 = exec_b1.sum().item() / useful_b1.sum().item()
    ratio_bn = bn_exec / bn_useful
    # declared padding (grouped MoE execution) is executed work the method owns up to, not masking
    exact_b1 = exec_b1.sum().item() / (useful_b1.sum().item() + b1_pad)
    exact_bn = bn_exec / (bn_useful + bn_pad)

    # latency, interleaved with the dense model
    lat = tier.latency
    lidx = _seeded_subset(split, lat.samples_b1, seed + 2)
    b1_inputs = [work.inputs(split, torch.tensor([i]), device) for i in lidx.tolist()]
    nidx = _seeded_subset(split, lat.batches * lat.batch_size, seed + 3)
    bn_inputs = work.grouped(split, nidx, lat.batch_size, device)
    b1 = interleaved_latency(model, dense_ref, b1_inputs, lat.warmup, device)
    bn = interleaved_latency(model, dense_ref, bn_inputs, lat.warmup, device)
    for r, timed in ((b1, lidx), (bn, nidx)):
        # ideal speedup over exactly the timed samples
        r["ideal_speedup"] = round(dense[timed].sum().item() / useful[timed].sum().item(), 4)
        r["efficiency"] = round(r["speedup"] / r["ideal_speedup"], 4)

    preds = ev.logits[:, 0] if ev.logits.shape[-1] == 1 else ev.logits.argmax(-1)
    per_token = {}
    if "input_tokens" in ev.trace:
        tokens = ev.trace["input_tokens"].double()
        per_token = {"input_tokens": distribution(tokens, digits=2),
                     "useful_mmacs_per_input_token": round(useful.sum().item() / tokens.sum().item() / 1e6, 4),
                     "dense_mmacs_per_input_token": round(dense.sum().item() / tokens.sum().item() / 1e6, 4)}
    return {
        **model.extra_metrics(ev.trace, ev.labels, preds,
                              lambda: work.batches(split, tier.eval_batch_size, device)),
        **work.scores(ev.logits, ev.labels, seed),
        "top1_ci_method": "percentile bootstrap over eval samples (2000 resamples; main score of a text task: 1000)",
        "n_eval": len(ev.ids),
        "useful_gmacs": distribution(useful, 1e-9, digits=6),
        "dense_gmacs": round(dense.mean().item() / 1e9, 6),
        "useful_fraction_of_dense": round(useful.sum().item() / dense.sum().item(), 4),
        **per_token,
        "executed_gmacs": {"batch1_per_sample": distribution(exec_b1, 1e-9, digits=6),
                           "batchN_per_sample_mean": round(bn_exec / (audit.batches * audit.batch_size) / 1e9, 6),
                           "batch_size": audit.batch_size, "audit_samples_b1": len(idx),
                           "audit_samples_bN": audit.batches * audit.batch_size,
                           "batchN_grouping": "text: sorted by length before cutting batches (dynamic padding)"},
        "executed_over_useful": {"batch1": round(ratio_b1, 4), "batchN": round(ratio_bn, 4)},
        "declared_padding_gmacs": {"batch1_per_sample_mean": round(b1_pad / len(idx) / 1e9, 6),
                                   "batchN_per_sample_mean": round(bn_pad / (audit.batches * audit.batch_size) / 1e9, 6)},
        "executed_over_useful_plus_padding": {"batch1": round(exact_b1, 4), "batchN": round(exact_bn, 4)},
        "flag_executed_exceeds_useful": exact_b1 > 1 + MASKED_COMPUTE_TOLERANCE,
        "fvcore_unsupported_ops": unsupported,
        "fvcore_uncalled_modules": sorted(uncalled),
        "params": count_parameters(model),
        "latency": {"batch1": b1, "batchN": bn, "threads": torch.get_num_threads(),
                    "speedup": "total dense time / total method time over the same inputs",
                    "ideal_speedup": "dense GMACs / useful GMACs of the timed samples (each at its own length)",
                    "efficiency": "speedup / ideal_speedup"},
        "unit": "gmacs = 1e9 multiply-adds (fvcore convention); FLOPs = 2 x MACs",
    }


def _print_summary(record: dict, path: Path) -> None:
    m = record["metrics"]
    k = record["method"]["knob"]
    knob = f" {k['name']}={k['value']}" if k["value"] is not None else ""
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
