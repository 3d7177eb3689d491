"""``ccbench shift``: a trained run (by record id) evaluated on a shifted split without adaptation (issue 8).

For each condition of the target (``ccbench.data.shift_data``) against the reference (images: the ``clean``
condition, the same images through the same path; text: the source task's eval split) it records

* the score and its drop (reference - condition, in points);
* **compute under shift**: useful GMACs (mean, p90) and their change, the share of dense, the exit
  histogram (depth family) and the per-block keep ratio (token family);
* **routing shift** (width family): per MoE layer, the Jensen-Shannon divergence in bits between the
  expert load on reference and condition, and the chance-corrected NMI between expert and domain on a
  50/50 mix of the two (each sample weighted equally, so each domain weighs half; per pick beside it);
  the samples file keeps every split's expert ids (``<split>.expert_ids``, int8) so both recompute
  from the record (``ccbench.measurement.routing.routing_shift``);
* **calibration transfer**: the knob was chosen (or given) on source data; does it land at the same
  share of dense compute on the target?

One shift record per (run record, target), under ``results/<budget>/<target>/<method>/``, with
``kind: shift`` and the source record's id and backbone hash (lineage). A source model the cache lacks is
trained again from its record's recipe (``source.trained_again``; reference and condition scores are then both
the copy's own).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ccbench.common import catalog
from ccbench.common.errors import UserError
from ccbench.common.messages import say
from ccbench.common.provenance import git_state
from ccbench.data.shift_data import CLEAN, shift_conditions
from ccbench.measurement.analyses import family_analyses
from ccbench.measurement.evaluate import Evaluation, evaluate_split
from ccbench.measurement.measure import ComputeStats, compute_summary
from ccbench.reporting.records import commit_record
from ccbench.training.distributed import stamp_for_commit
from ccbench.training.run_context import RunContext

from .from_record import (
    RecordModel,
    load_record_model,
    method_fields,
    source_fields,
    trained_again,
    verify_record_model,
)

SAME_COMPUTE_TOLERANCE = 0.02  # |target - source| share of dense within this: the knob "lands at the same compute"


def _split_fields(rm: RecordModel, ev: Evaluation, table) -> dict:
    """Compute summary and the family's analyses of one evaluated split (reference or condition)."""
    analyses = family_analyses(rm.meta["family"])
    return {**compute_summary(table, ev.trace), **analyses.of_split(rm.model, ev.trace, table)}


def _condition_metrics(rm: RecordModel, name: str, ev: Evaluation, ref_ev: Evaluation, ref: dict, table,
                       seed: int, source_share: float) -> dict:
    """A condition's row: score and its drop, compute and its change against the reference ``ref``, the
    family's analyses (against ``ref_ev`` where they compare), calibration transfer (``source_share``: the
    model's useful share of dense on its source's eval split)."""
    scores = rm.work.scores(ev.logits, ev.labels, seed)
    summary = compute_summary(table, ev.trace)
    analyses = family_analyses(rm.meta["family"])
    knob = rm.record["method"]["knob"]
    return {"condition": name, "n": len(ev.ids), "main_score": scores["main_score"],
            "score_drop": round(ref["main_score"]["value"] - scores["main_score"]["value"], 3), **summary,
            "useful_gmacs_change": {
                "mean_ratio": round(summary["useful_gmacs"]["mean"] / ref["useful_gmacs"]["mean"], 4),
                "p90_ratio": round(summary["useful_gmacs"]["p90"] / ref["useful_gmacs"]["p90"], 4)},
            "fraction_of_dense_change": round(summary["useful_fraction_of_dense"] - ref["useful_fraction_of_dense"], 4),
            **analyses.of_split(rm.model, ev.trace, table),
            **analyses.under_shift(rm.model, ev.trace, ref_ev.trace, seed),
            "calibration_transfer": {
                "knob": knob["name"], "value": knob["value"], "chosen_by": knob["chosen_by"],
                "source_fraction_of_dense": source_share,
                "target_fraction_of_dense": summary["useful_fraction_of_dense"],
                "same_compute": abs(summary["useful_fraction_of_dense"] - source_share) <= SAME_COMPUTE_TOLERANCE}}


def shift_run(record_id: str, target: str, data_dir: str | None = None, results_dir=None,
              progress: bool = True, accept_other_cpu_copy: bool = False) -> Path:
    """Evaluate the run ``record_id`` on the shift target ``target`` and write the shift record
    (``accept_other_cpu_copy``: see :func:`~ccbench.drivers.from_record.verify_record_model`)."""
    started, code_state = time.time(), git_state()
    tgt = catalog.tasks().get(target)
    if tgt.shift is None:
        shift_targets = [n for n in catalog.tasks().names() if catalog.tasks().get(n).shift is not None]
        raise UserError(f"task {target!r} is not a shift target; shift targets: {', '.join(shift_targets)}")
    rm = load_record_model(record_id, data_dir, results_dir, progress, train_missing=True)
    src = rm.task
    if tgt.modality != src.modality or tgt.classes != src.classes:
        raise UserError(f"{target!r} does not share {src.name!r}'s classes ({len(src.classes)} {src.modality} classes): "
                        f"`ccbench shift` evaluates without adaptation; a new label set is `ccbench transfer`")
    work, tier, seed = rm.work, rm.tier, rm.record["seed"]
    ctx = RunContext(tgt, tier, seed, work, results_dir, progress, started=started, code_state=code_state)
    table = work.table.with_units(rm.model.cost_units())
    src_ev, agreement = verify_record_model(rm, progress, allow_retrained=True,
                                            accept_other_cpu_copy=accept_other_cpu_copy)
    source_share = (compute_summary(table, src_ev.trace)["useful_fraction_of_dense"] if trained_again(agreement)
                    else rm.record["metrics"]["useful_fraction_of_dense"])   # a copy: its own compute

    conditions = shift_conditions(tgt, getattr(work, "px", None), data_dir, progress)
    if tgt.modality == "text":
        work.set_max_length(tgt.text.max_length)
    evals = {}
    for name, split in conditions.items():
        say(f"evaluating {name} ({len(split)} samples)")
        evals[name] = evaluate_split(rm.model, work, split, tier.eval_batch_size, ctx.device, progress)
    if CLEAN in evals:
        ref_name, ref_ev = f"{target}/{CLEAN}", evals.pop(CLEAN)
    else:
        ref_name, ref_ev = f"{src.name}/{src.eval_split}", src_ev
    reference = {"name": ref_name, "n": len(ref_ev.ids),
                 "main_score": work.scores(ref_ev.logits, ref_ev.labels, seed)["main_score"],
                 **_split_fields(rm, ref_ev, table)}
    rows = [_condition_metrics(rm, name, ev, ref_ev, reference, table, seed, source_share)
            for name, ev in evals.items()]
    record = ctx.record({
        "task": {"name": tgt.name, "version": tgt.version, "modality": tgt.modality,
                 "shift": tgt.shift.model_dump(), "conditions": list(evals),
                 "data_hashes": {k: v.data_hash for k, v in conditions.items()}},
        "source": source_fields(rm, agreement),
        "method": method_fields(rm),
        "budget": {"name": tier.name, "version": tier.version},
        "seed": seed,
        "reference": reference,
        "conditions": rows,
        "summary": _summary(rows),
    }, kind="shift")
    out = _write(record, evals, ref_ev, results_dir, table)
    _print(record, out)
    return out


def _summary(rows: list[dict]) -> dict:
    """Means over conditions of the score drop and compute change, per severity when conditions are
    ``<corruption>/<severity>``."""
    def mean(key, subset):
        return round(float(np.mean([key(r) for r in subset])), 4)

    groups = {}
    for r in rows:
        sev = r["condition"].rsplit("/", 1)[1] if "/" in r["condition"] else "all"
        groups.setdefault(sev, []).append(r)
    return {sev: {"conditions": len(g), "score_drop_mean": mean(lambda r: r["score_drop"], g),
                  "useful_gmacs_mean_ratio": mean(lambda r: r["useful_gmacs_change"]["mean_ratio"], g),
                  "fraction_of_dense_change": mean(lambda r: r["fraction_of_dense_change"], g)}
            for sev, g in sorted(groups.items())}


def _write(record: dict, evals: dict, ref_ev, results_dir, table) -> Path:
    """The per-condition predictions and per-sample compute (useful and dense GMACs under ``table``, float32,
    so the change in compute under shift gets a paired interval) beside the record, then the record
    (``commit_record``)."""
    arrays = {}
    for name, ev in [("reference", ref_ev), *evals.items()]:
        arrays[f"{name}.ids"] = np.asarray(ev.ids)
        arrays[f"{name}.label"] = ev.labels.numpy()
        arrays[f"{name}.pred"] = ev.predictions.numpy()
        compute = ComputeStats.of(table, ev.trace)
        arrays[f"{name}.useful_gmacs"] = (compute.useful.double() / 1e9).numpy().astype(np.float32)
        arrays[f"{name}.dense_gmacs"] = (compute.dense.double() / 1e9).numpy().astype(np.float32)
        if "exit_block" in ev.trace:
            arrays[f"{name}.exit_block"] = ev.trace["exit_block"].numpy().astype(np.int16)
        if "expert_ids" in ev.trace:   # the routing trace, compactly: JS and domain NMI recompute from it
            arrays[f"{name}.expert_ids"] = _compact_ids(ev.trace["expert_ids"].numpy())
    return commit_record(stamp_for_commit(record), arrays, results_dir, prefix="shift-")


def _compact_ids(ids: np.ndarray) -> np.ndarray:
    """Expert ids ``[S, L, N, K]`` (-1 dropped, -2 padding) as int8 (int16 past 127 experts), no weights."""
    return ids.astype(np.int8 if ids.max(initial=0) < 128 else np.int16)


def _print(record: dict, path: Path) -> None:
    ref = record["reference"]
    print(f"{record['method']['name']} ({record['source']['task']} -> {record['task']['name']}): reference "
          f"{ref['name']} {ref['main_score']['value']:.2f} at {ref['useful_fraction_of_dense']:.1%} of dense")
    for sev, s in record["summary"].items():
        print(f"  {sev:>4}: drop {s['score_drop_mean']:+.2f} points, useful GMACs x{s['useful_gmacs_mean_ratio']:.3f}, "
              f"share of dense {s['fraction_of_dense_change']:+.4f}")
    print(f"  record: {path}")
