"""``ccbench transfer``: a trained run (by record id) moved to a new task under a named protocol (issue 8).

Every parameter of a method's model has a role (``ConditionalModel.parameter_roles``): ``head`` (the
classifier layers: re-initialised, seeded, on the target), ``decision`` (routers, gates, token predictors,
exit heads) or ``module`` (embeddings, blocks, experts). A protocol says which roles train:

* ``head-only``: the head; everything else frozen;
* ``router-only``: head + decision parameters; modules frozen (n/a without decision parameters);
* ``routers-frozen``: head + modules; the decision parameters are kept (n/a without them; called
  ``modules-frozen`` before issue 24, a name records keep and tables read as this one);
* ``full``: everything.

Every protocol gets the tier's fixed ``transfer`` budget (cpu: 5,000 target samples). The dense run from
the same backbone under the same protocol is the reference (a protocol dense cannot have maps to the one
that trains the same modules: ``router-only`` -> ``head-only``, ``routers-frozen`` -> ``full``); the
**transfer gain** is the method's target score minus dense's. **Module reuse** (width family): per MoE
layer, the share of target picks that go to the k experts most used on the source (k = experts per
token), next to those experts' share on the source. Latency is not measured here (``ccbench run`` does).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ccbench.common import catalog
from ccbench.common.errors import UserError, unknown_name_error
from ccbench.common.messages import say
from ccbench.common.method_meta import constant_statistics
from ccbench.common.protocols import DENSE_REFERENCE, NEEDS_DECISION, PROTOCOLS, canonical_protocol
from ccbench.common.provenance import content_hash, git_state
from ccbench.data.image_data import cache_root
from ccbench.measurement.analyses import family_analyses
from ccbench.measurement.evaluate import evaluate_split
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
    verify_record_model,
)


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


def _dense_reference(results_dir, budget: str, target: str, backbone_sha: str, protocol: str) -> dict | None:
    """The dense transfer record from the same backbone to ``target`` under ``protocol``'s reference."""
    want = DENSE_REFERENCE[protocol]
    for _, r in load_records(results_dir, kind="transfer"):
        if (r["method"]["name"] == "dense" and r["budget"]["name"] == budget and r["task"]["name"] == target
                and r["source"]["backbone_sha256"] == backbone_sha and canonical_protocol(r["protocol"]) == want):
            return {"record_id": r["id"], "protocol": want, "score": r["metrics"]["main_score"]["value"]}
    return None


def transfer_run(record_id: str, target: str, protocol: str, data_dir: str | None = None, results_dir=None,
                 progress: bool = True) -> Path:
    """Transfer the run ``record_id`` to task ``target`` under ``protocol``; write the transfer record."""
    started, code_state = time.time(), git_state()
    _check_protocol(protocol)
    tgt = catalog.tasks().get(target)
    rm = load_record_model(record_id, data_dir, results_dir, progress)
    src, tier, seed, device = rm.task, rm.tier, rm.record["seed"], rm.tier.device
    if tier.transfer is None:
        raise UserError(f"budget {tier.name!r} has no transfer budget")
    if tgt.modality != src.modality:
        raise UserError(f"{target!r} is a {tgt.modality} task and the source run is on {src.modality}")
    if tgt.shift is not None and tgt.shift.eval_only:
        raise UserError(f"{target!r} is evaluation-only; transfer needs a task with a train split")
    seen = sorted(set(src.classes) & set(tgt.classes)) if (src.subset_of or src.name) == (tgt.subset_of or tgt.name) else []
    if seen or src.name == tgt.name:
        raise UserError(f"the source run on {src.name!r} was trained on {len(seen)} of {target!r}'s classes "
                        f"({', '.join(seen[:3])}...): it cannot be a transfer source for it (for Imagenette, "
                        f"transfer from imagenette-a runs to imagenette-b)")
    model, meta = rm.model, rm.meta
    check_protocol_applies(model.parameter_roles(), protocol)  # before any work
    _, agreement = verify_record_model(rm, progress)

    twork = make_workload(tgt, tier, data_dir, seed, record_backbone_path(rm.record), progress)
    ctx = RunContext(tgt, tier, seed, twork, results_dir, progress, started=started, code_state=code_state)
    reinit_heads(model, len(tgt.classes), seed)
    counts = apply_protocol(model, protocol)
    recipe = tier.transfer
    run_name = (f"transfer-{tier.name}-{rm.record['id'][:12]}-{tgt.name}-{protocol}-s{seed}-"
                f"{content_hash([recipe.model_dump(), twork.splits['train'].data_hash])[:8]}")
    say(f"transfer {meta['family']}/{rm.record['method']['name']} {src.name} -> {tgt.name} ({protocol}): "
        f"{sum(c['trainable'] for c in counts.values()):,} trainable parameters, {recipe.samples} samples")
    result = train(model, method_loss(recipe.label_smoothing), recipe, twork.train_data(twork.splits["train"]), None,
                   seed, state_path=cache_root() / "train_state" / f"{run_name}.pt", resume=True, device=device,
                   desc=f"transfer {protocol}", progress=progress)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    consumed = {"samples": result.samples, "steps": result.steps, "train_wall_s": round(result.wall_s, 1)}
    saved = trained_path(run_name)
    save_trained(model, consumed, saved)

    ev = evaluate_split(model, twork, twork.splits["eval"], tier.eval_batch_size, device, progress)
    table = twork.table.with_units(model.cost_units())
    metrics = {**twork.scores(ev.logits, ev.labels, seed), **compute_summary(table, ev.trace),
               **model.extra_metrics(ev.trace, ev.labels, ev.predictions,
                                     lambda: twork.batches(twork.splits["eval"], tier.eval_batch_size, device)),
               **family_analyses(meta["family"]).after_transfer(model, ev.trace, lambda: load_samples(rm.record_path))}
    if "routing" in metrics:
        metrics["routing"]["constant_by_construction"] = constant_statistics(meta, model.knob)
    reference = _dense_reference(results_dir, tier.name, tgt.name, rm.record["backbone"]["sha256"], protocol)
    if reference:
        reference["transfer_gain"] = round(metrics["main_score"]["value"] - reference["score"], 3)
    record = ctx.record({
        "task": {"name": tgt.name, "version": tgt.version, "modality": tgt.modality,
                 "data_hash": twork.splits["eval"].data_hash, "eval_split": tgt.eval_split, "n_eval": len(ev.ids),
                 "train_data_hash": twork.splits["train"].data_hash, "main_score": tgt.main_score},
        "source": source_fields(rm, agreement),
        "method": method_fields(rm, paper=True),
        "protocol": protocol,
        "trained_model": saved.name,
        "trainable": counts,
        "budget": {"name": tier.name, "version": tier.version, "transfer": recipe.model_dump(),
                   "consumed": consumed},
        "seed": seed,
        "metrics": metrics,
        "dense_reference": reference,
    }, kind="transfer")
    path = write_record(stamp_for_commit(record), ev.ids, ev.labels, ev.predictions, ev.trace, results_dir)
    gain = f", gain over dense {reference['transfer_gain']:+.2f}" if reference else " (no dense reference yet)"
    print(f"{record['method']['name']} {src.name} -> {tgt.name} ({protocol}): {metrics['main_score']['name']} "
          f"{metrics['main_score']['value']:.2f}{gain}, {metrics['useful_fraction_of_dense']:.1%} of dense compute\n"
          f"  record: {path}")
    return path
