"""``ccbench transfer``: a trained run (by record id) moved to a new task under a named protocol (issue 8).

Every parameter of a method's model has a role (``ConditionalModel.parameter_roles``): ``head`` (the
classifier layers: re-initialised, seeded, on the target), ``decision`` (routers, gates, token predictors,
exit heads) or ``module`` (embeddings, blocks, experts). A protocol says which roles train:

* ``head-only``: the head; everything else frozen;
* ``router-only``: head + decision parameters; modules frozen (n/a without decision parameters);
* ``routers-frozen``: head + modules; the decision parameters are kept (n/a without them; called
  ``modules-frozen`` before issue 24, a name records keep and tables read as this one);
* ``full``: everything.

Every protocol gets the tier's fixed ``transfer`` budget (cpu: 5,000 target samples per model). The dense
transfer from the same source task and backbone, on the same eval set and seed, is the reference under the
same protocol (a protocol dense cannot have maps to the one that trains the same modules: ``router-only`` ->
``head-only``, ``routers-frozen`` -> ``full``; :func:`ccbench.common.protocols.dense_reference_key`); the
**transfer gain** is the method's target score minus dense's.

**Eval set** (issue 25): a target is scored on its eval split, unless its spec declares ``transfer_eval``
(the Amazon domains): then it is *cross-fitted* (:mod:`ccbench.drivers.transfer_plan`): k models, each
transferred from the source on k-1 folds of the split under the full budget, each predicting its held-out
fold, so all N examples (2,000 reviews, not dev's 300) are predicted once and pair by example across methods
and seeds. The record says which (``task.eval_set``: scheme, split, folds, seed, n, fold sizes; ``data_hash``
is the split's), keeps each example's fold in its samples file (``fold``), each model in
``trained_models``, per-fold scores and the method's own metrics in ``metrics.folds``; top-level metrics
pool the folds' predictions and traces (a method's extra metrics that need another pass of one model over
the inputs, such as early exits' per-exit accuracy, are per fold only). ``budget.consumed``: each model's
samples and steps, ``models``, and the training wall time of all of them.

**Module reuse** (width family): per MoE layer, the share of target picks that go to the k experts most used on
the source (k = experts per token), next to those experts' share on the source. Latency is not measured here
(``ccbench run`` does).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ccbench.common import catalog
from ccbench.common.errors import UserError, unknown_name_error
from ccbench.common.messages import say
from ccbench.common.method_meta import constant_statistics
from ccbench.common.protocols import NEEDS_DECISION, PROTOCOLS, canonical_protocol, dense_reference_key
from ccbench.common.provenance import content_hash, git_state
from ccbench.common.specs import BudgetSpec, TaskSpec
from ccbench.data.image_data import cache_root
from ccbench.measurement.analyses import family_analyses
from ccbench.measurement.evaluate import Evaluation, evaluate_split, stitch
from ccbench.measurement.measure import compute_summary
from ccbench.reporting.records import load_records, load_samples, write_record
from ccbench.training.distributed import stamp_for_commit
from ccbench.training.model_store import save_trained, trained_path
from ccbench.training.run_context import RunContext
from ccbench.training.train import method_loss, train
from ccbench.training.workload import make_workload

from .from_record import (
    load_record_model,
    method_fields,
    record_backbone_path,
    source_fields,
    trained_again,
    verify_record_model,
)
from .transfer_plan import Fold, transfer_plan


def apply_protocol(model: torch.nn.Module, protocol: str) -> dict[str, dict[str, int]]:
    """Set ``requires_grad`` by role for ``protocol``; returns ``{role: {"params", "trainable"}}``
    (parameter counts). Raises when the protocol needs decision parameters the method does not have."""
    _check_protocol(protocol)
    roles = model.parameter_roles()
    check_protocol_applies(roles, protocol)
    train_roles = PROTOCOLS[protocol]
    counts: dict[str, dict[str, int]] = {}
    for name, p in model.named_parameters():
        role = roles[name]
        # frozen word embeddings (a text tier setting) stay frozen under every protocol
        frozen_by_tier = name.endswith("word_embeddings.weight")
        p.requires_grad_(role in train_roles and not frozen_by_tier)
        c = counts.setdefault(role, {"params": 0, "trainable": 0})
        c["params"] += p.numel()
        c["trainable"] += p.numel() if p.requires_grad else 0
    return counts


def _check_protocol(protocol: str) -> None:
    """Raise unless ``protocol`` is a current protocol name (an old name gets the new one)."""
    if canonical_protocol(protocol) != protocol:
        raise UserError(f"protocol {protocol!r} is now called {canonical_protocol(protocol)!r} "
                        f"(head + modules train, routers stay frozen): use --protocol {canonical_protocol(protocol)}")
    if protocol not in PROTOCOLS:
        raise unknown_name_error("transfer protocol", protocol, PROTOCOLS)


def check_protocol_applies(roles: dict[str, str], protocol: str) -> None:
    """Raise when ``protocol`` needs decision parameters and ``roles`` (``parameter_roles()``) has none."""
    if protocol in NEEDS_DECISION and "decision" not in roles.values():
        raise UserError(f"protocol {protocol!r} is n/a for this method: it has no separate router, gate, predictor "
                        f"or exit parameters (use head-only or full)")


def reinit_heads(model: torch.nn.Module, num_classes: int, seed: int) -> None:
    """Re-initialise every classifier head (PyTorch's default ``nn.Linear`` init, seeded)."""
    torch.manual_seed(seed)
    for head in model.classifier_heads():
        if head.out_features != num_classes:
            raise UserError(f"the source model has {head.out_features} outputs and the target {num_classes} classes; "
                            f"transfer between label sets of different sizes is not supported yet")
        head.reset_parameters()


def _dense_reference(results_dir, key: tuple) -> dict | None:
    """The dense transfer record whose :func:`dense_reference_key` is ``key`` (same tier, target, source task
    and backbone, eval set and seed, under the reference protocol)."""
    for _, r in load_records(results_dir, kind="transfer"):
        if r["method"]["name"] == "dense" and dense_reference_key(r, canonical_protocol(r["protocol"])) == key:
            return {"record_id": r["id"], "protocol": key[-1], "score": r["metrics"]["main_score"]["value"]}
    return None


@dataclass
class FoldResult:
    """One fold's transferred model, its evaluation on the fold, the budget it consumed, its cache name and
    the parameter counts per role (:func:`apply_protocol`)."""

    model: torch.nn.Module
    ev: Evaluation
    consumed: dict
    saved: str
    counts: dict


def _transfer_fold(model: torch.nn.Module, fold: Fold, rm, twork, protocol: str, run_name: str,
                   progress: bool) -> FoldResult:
    """Re-initialise ``model``'s heads, train the roles ``protocol`` names on ``fold.train`` under the tier's
    transfer budget (resumable under ``run_name``), cache the model and evaluate it on ``fold.eval``."""
    tier, seed = rm.tier, rm.record["seed"]
    reinit_heads(model, len(twork.task.classes), seed)
    counts = apply_protocol(model, protocol)
    recipe = tier.transfer_recipe(twork.modality)
    state = cache_root() / "train_state" / f"{run_name}.pt"
    result = train(model, method_loss(recipe.label_smoothing, transfer=True), recipe, twork.train_data(fold.train),
                   None, seed, state_path=state, resume=True, device=tier.device, desc=f"transfer {protocol}",
                   progress=progress)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    consumed = {"samples": result.samples, "steps": result.steps, "train_wall_s": round(result.wall_s, 1)}
    saved = trained_path(run_name)
    save_trained(model, consumed, saved)
    state.unlink(missing_ok=True)   # the resume state is spent once the model is saved
    ev = evaluate_split(model, twork, fold.eval, tier.eval_batch_size, tier.device, progress)
    return FoldResult(model, ev, consumed, saved.name, counts)


def _fold_metrics(res: FoldResult, k: int, fold: Fold, twork, seed: int) -> dict:
    """One cross-fitted fold's row: its size, its model's score on it and the method's own metrics on it."""
    extra = res.model.extra_metrics(res.ev.trace, res.ev.labels, res.ev.predictions,
                                    lambda: twork.batches(fold.eval, twork.tier.eval_batch_size, twork.tier.device))
    return {"fold": k, "n": len(res.ev.ids), "train_n": len(fold.train),
            "main_score": twork.scores(res.ev.logits, res.ev.labels, seed)["main_score"], **extra,
            "consumed": res.consumed}


class _SecondPass(Exception):
    """A method's extra metrics asked for another pass over the inputs (not possible across fold models)."""


def _no_second_pass():
    raise _SecondPass


def _pooled_extra(model, ev: Evaluation) -> dict:
    """The method's extra metrics over every fold's trace together (they are functions of the trace and
    the model's structure, which the fold models share); ``{}`` for a method whose metrics need another
    pass of one model over the inputs (early exits' per-exit accuracy: recorded per fold only)."""
    try:
        return model.extra_metrics(ev.trace, ev.labels, ev.predictions, _no_second_pass)
    except _SecondPass:
        return {}


def _check_transfer_applies(src: TaskSpec, tier: BudgetSpec, model: torch.nn.Module, tgt: TaskSpec,
                            protocol: str) -> None:
    """Raise unless a run on ``src`` (tier ``tier``, its model ``model``) can transfer to ``tgt`` under
    ``protocol``: checked before a source model the cache lacks is trained again."""
    if tier.transfer_recipe(tgt.modality) is None:
        raise UserError(f"budget {tier.name!r} has no transfer budget")
    if tgt.modality != src.modality:
        raise UserError(f"{tgt.name!r} is a {tgt.modality} task and the source run is on {src.modality}")
    if tgt.shift is not None and tgt.shift.eval_only:
        raise UserError(f"{tgt.name!r} is evaluation-only; transfer needs a task with a train split")
    seen = sorted(set(src.classes) & set(tgt.classes)) if (src.subset_of or src.name) == (tgt.subset_of or tgt.name) else []
    if seen or src.name == tgt.name:
        raise UserError(f"the source run on {src.name!r} was trained on {len(seen)} of {tgt.name!r}'s classes "
                        f"({', '.join(seen[:3])}...): it cannot be a transfer source for it (for Imagenette, "
                        f"transfer from imagenette-a runs to imagenette-b)")
    check_protocol_applies(model.parameter_roles(), protocol)


def transfer_run(record_id: str, target: str, protocol: str, data_dir: str | None = None, results_dir=None,
                 progress: bool = True, accept_other_cpu_copy: bool = False) -> Path:
    """Transfer the run ``record_id`` to task ``target`` under ``protocol``; write the transfer record
    (``accept_other_cpu_copy``: see :func:`~ccbench.drivers.from_record.verify_record_model`)."""
    started, code_state = time.time(), git_state()
    _check_protocol(protocol)
    tgt = catalog.tasks().get(target)
    rm = load_record_model(record_id, data_dir, results_dir, progress, train_missing=True,
                           check=lambda src, tier, model: _check_transfer_applies(src, tier, model, tgt, protocol))
    src, tier, seed = rm.task, rm.tier, rm.record["seed"]
    meta = rm.meta
    src_ev, agreement = verify_record_model(rm, progress, allow_retrained=True,
                                            accept_other_cpu_copy=accept_other_cpu_copy)
    # the source's per-sample arrays: the record's, or a copy's trained again (its own picks, not the original's)
    source_samples = ((lambda: {f"trace.{k}": v.numpy() for k, v in src_ev.trace.items()}) if trained_again(agreement)
                      else (lambda: load_samples(rm.record_path)))

    twork = make_workload(tgt, tier, data_dir, seed, record_backbone_path(rm.record), progress)
    ctx = RunContext(tgt, tier, seed, twork, results_dir, progress, started=started, code_state=code_state)
    plan = transfer_plan(tgt, twork, data_dir, check=not tier.eval_limit)  # smoke: tiny test data
    recipe = tier.transfer_recipe(tgt.modality)
    ident = ([recipe.model_dump(), plan.train_data_hash] + ([plan.eval_set] if plan.cross_fitted else [])
             + ([{"task_version": tgt.version}] if tgt.version > 1 else []))   # a version changes which examples train
    run_name = f"transfer-{tier.name}-{rm.record['id'][:12]}-{tgt.name}-{protocol}-s{seed}-{content_hash(ident)[:8]}"
    say(f"transfer {meta['family']}/{rm.record['method']['name']} {src.name} -> {tgt.name} ({protocol}): "
        f"{recipe.samples} samples per model, {len(plan.folds)} model(s), eval set {plan.eval_set}")
    if plan.cross_fitted:  # each fold's model starts from a copy of the source model
        results = [_transfer_fold(copy.deepcopy(rm.model), fold, rm, twork, protocol, f"{run_name}-fold{k}", progress)
                   for k, fold in enumerate(plan.folds)]
        ev = stitch([r.ev for r in results], [f.positions for f in plan.folds], plan.ids, plan.labels)
    else:
        results = [_transfer_fold(rm.model, plan.folds[0], rm, twork, protocol, run_name, progress)]
        ev = results[0].ev
    model, counts = results[0].model, results[0].counts  # every fold's model has the same structure and roles

    table = twork.table.with_units(model.cost_units())
    metrics = {**twork.scores(ev.logits, ev.labels, seed), **compute_summary(table, ev.trace),
               **family_analyses(meta["family"]).after_transfer(model, ev.trace, source_samples)}
    if plan.cross_fitted:
        metrics.update(_pooled_extra(model, ev))
        metrics["folds"] = [_fold_metrics(r, k, f, twork, seed) for k, (r, f) in enumerate(zip(results, plan.folds))]
    else:
        metrics.update(model.extra_metrics(ev.trace, ev.labels, ev.predictions,
                                           lambda: twork.batches(plan.folds[0].eval, tier.eval_batch_size, tier.device)))
    if "routing" in metrics:
        metrics["routing"]["constant_by_construction"] = constant_statistics(meta, model.knob)
    consumed = dict(results[0].consumed)
    if plan.cross_fitted:  # samples and steps: each model's (all the same); wall time: all folds together
        consumed = {"samples": min(r.consumed["samples"] for r in results),
                    "steps": min(r.consumed["steps"] for r in results),
                    "train_wall_s": round(sum(r.consumed["train_wall_s"] for r in results), 1),
                    "models": len(results)}
    body = {
        "task": {"name": tgt.name, "version": tgt.version, "modality": tgt.modality,
                 "data_hash": plan.data_hash, "eval_split": plan.eval_set["split"], "n_eval": len(ev.ids),
                 "train_data_hash": plan.train_data_hash, "main_score": tgt.main_score, "eval_set": plan.eval_set},
        "source": source_fields(rm, agreement),
        "method": method_fields(rm, paper=True),
        "protocol": protocol,
        **({"trained_models": [r.saved for r in results]} if plan.cross_fitted else {"trained_model": results[0].saved}),
        "trainable": counts,
        "budget": {"name": tier.name, "version": tier.version, "transfer": recipe.model_dump(), "consumed": consumed},
        "seed": seed,
        "metrics": metrics,
    }
    reference = _dense_reference(results_dir, dense_reference_key(body))
    if reference:
        reference["transfer_gain"] = round(metrics["main_score"]["value"] - reference["score"], 3)
    record = ctx.record({**body, "dense_reference": reference}, kind="transfer")
    extra = {"fold": plan.fold} if plan.cross_fitted else None
    path = write_record(stamp_for_commit(record), ev.ids, ev.labels, ev.predictions, ev.trace, results_dir, extra)
    gain = f", gain over dense {reference['transfer_gain']:+.2f}" if reference else " (no dense reference yet)"
    where = (f"{len(plan.folds)}-fold cross-fit over {len(ev.ids)} {tgt.name}/{plan.eval_set['split']}"
             if plan.cross_fitted else f"{len(ev.ids)} {tgt.name}/{plan.eval_set['split']}")
    print(f"{record['method']['name']} {src.name} -> {tgt.name} ({protocol}, {where}): {metrics['main_score']['name']} "
          f"{metrics['main_score']['value']:.2f}{gain}, {metrics['useful_fraction_of_dense']:.1%} of dense compute\n"
          f"  record: {path}")
    return path
